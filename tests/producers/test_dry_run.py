"""``telemetry-produce --test`` logic without a device: the run loop's checks and the printing (pure parts)."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime

from common.errors import ParseError
from common.schema import Channel, Frame, Quality
from common.settings import DEFAULT_RANGES
from producers.dry_run import check_frame, dry_run, json_lines, table
from producers.validate import RangeValidator

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def frame(*channels: Channel, device: str = "bench") -> Frame:
    return Frame("simulate", device, NOW, NOW, 0, channels)


def test_check_frame_reports_what_the_run_loop_would_do() -> None:
    v = RangeValidator(DEFAULT_RANGES)
    assert check_frame(frame(Channel("rpm", 900.0, "rpm")), v)["result"] == "ok"
    flagged = check_frame(frame(Channel("rpm", 25_000.0, "rpm"), Channel("afr", math.nan, "afr")), v)
    assert flagged["result"] == "flagged"
    assert flagged["changes"] == {"rpm": "good->error", "afr": "good->error (value -> null)"}
    assert flagged["flags"] == {"out_of_range": 1, "non_finite": 1}
    rejected = check_frame(frame(Channel("x", 1.0), device="d" * 300), v)
    assert rejected["result"] == "rejected" and rejected["reason"].startswith("schema:")


class Scripted:
    """A source returning prepared batches (synthetic)."""

    source = "simulate"

    def __init__(self, batches: list[Sequence[Frame | ParseError]]) -> None:
        self.batches = batches

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    @property
    def exhausted(self) -> bool:
        return not self.batches

    def read(self, timeout: float) -> Sequence[Frame | ParseError]:
        return self.batches.pop(0)


def test_dry_run_counts_and_stops_at_count() -> None:
    out, notes = io.StringIO(), []
    batches: list[Sequence[Frame | ParseError]] = [
        [ParseError("bad checksum", "checksum"), frame(Channel("rpm", 900.0, "rpm"))],
        [frame(Channel("rpm", 100.0, "rpm")), frame(Channel("rpm", 1.0, "rpm")), ParseError("late", "parse")],
    ]
    code, result = dry_run(Scripted(batches), RangeValidator(DEFAULT_RANGES), 2, 5.0, json_lines(out), notes.append)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert code == 0 and result.frames == 2 and result.flagged == 1 and dict(result.rejected) == {"checksum": 1}
    assert [r["result"] for r in records] == ["rejected", "ok", "flagged"]  # stops at 2 frames
    assert notes[-1] == "2 frames (1 flagged), 1 rejected {'checksum': 1}"
    code, result = dry_run(Scripted([[]]), RangeValidator({}), 1, 5.0, json_lines(io.StringIO()), notes.append)
    assert code == 1 and result.frames == 0  # the input ended before one frame


def test_table_shows_hostile_names_escaped() -> None:
    out = io.StringIO()
    emit = table(out)
    emit(
        check_frame(frame(Channel("vin\x1b[2J", "WP0\x07", "", Quality.GOOD), device="dev\x1b]0;x"), RangeValidator({}))
    )
    text = out.getvalue()
    assert "\x1b" not in text and "\x07" not in text
    assert "dev\\x1b]0;x" in text and "vin\\x1b[2J" in text and "WP0\\x07" in text
