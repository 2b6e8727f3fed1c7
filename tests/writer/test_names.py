"""Pure parts of the packed layout: layout keys, the names cache, the quality codes' order."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from admin.migrate import MIGRATIONS
from common.schema import Channel, Frame, Quality
from writer.names import NameIds, layout_of
from writer.pg_copy import QUALITY_CODES

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _frame(device: str, *chans: tuple[str, str], session: str | None = None, producer: str = "p@b/1") -> Frame:
    return Frame("obd", device, NOW, NOW, 0, tuple(Channel(n, 1.0, u) for n, u in chans), session, producer, 1)


def test_layout_depends_on_device_names_and_units_in_order() -> None:
    a = _frame("d1", ("rpm", "rpm"), ("afr", ""))
    assert layout_of(a) == ("obd", "d1", ("rpm", "afr"), ("rpm", ""))
    assert layout_of(a) == layout_of(_frame("d1", ("rpm", "rpm"), ("afr", "")))
    assert layout_of(a) != layout_of(_frame("d1", ("afr", ""), ("rpm", "rpm")))  # the arrays' order
    assert layout_of(a) != layout_of(_frame("d1", ("rpm", "rpm"), ("afr", "lambda")))
    assert layout_of(a) != layout_of(_frame("d2", ("rpm", "rpm"), ("afr", "")))


def test_only_unknown_names_are_looked_up() -> None:
    frames = [_frame("d1", ("rpm", "rpm"), session="s1"), _frame("d2", ("rpm", "rpm"), producer="p@b/2")]
    cache = NameIds(layouts={layout_of(frames[0]): (1, b"")}, producers={"p@b/1": 1})
    layouts, producers, sessions = cache.missing(frames, [layout_of(f) for f in frames])
    assert layouts == {layout_of(frames[1])} and producers == {"p@b/2"} and sessions == {"s1"}


def test_quality_codes_follow_the_order_of_the_view() -> None:
    """The view (migration 004) names code i by the i-th element of one array literal."""
    text = (MIGRATIONS / "004_packed_readings.sql").read_text()
    literals = set(re.findall(r"ARRAY\[('[a-z_]+'(?:, '[a-z_]+')*)\]", text))
    assert literals == {", ".join(f"'{q.value}'" for q in Quality)}
    assert [QUALITY_CODES[q] for q in Quality] == list(range(len(Quality)))
