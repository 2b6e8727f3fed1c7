"""The writer's drain work of issue 15 on real PostgreSQL: the ledger's two paths (every key new:
one INSERT and a count; otherwise digests and xmin asked back), digests of the entry's bytes with
the digests older writers stored still recognised, ledger days and current_state sent as binary
arrays, and the current state taken from the latest frame of each channel layout.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from common.schema import Channel, Frame, Quality, decode_shaped, encode
from common.settings import Settings
from tests.helpers import pg_query
from tests.integration.pipeline import frame
from writer.partitions import ensure_partitions
from writer.pg import connect_pg
from writer.pg_copy import BatchResult, entry_digest, frame_digest, legacy_digest, pack, write_frames

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=123456)


def _fields(f: Frame) -> dict[bytes, bytes]:
    return {k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in encode(f).items()}


def _as_read(frames: list[Frame]) -> tuple[list[Frame], list[object]]:
    """The frames as the writer's lane has them: decoded from their entries, packed with the
    entry's digest and the shape decode gave."""
    out, packed = [], []
    for f in frames:
        fields = _fields(f)
        decoded, shape, values = decode_shaped(fields)
        out.append(replace(decoded, priority=f.priority))
        packed.append(pack(decoded, entry_digest(fields), (shape, values)))
    return out, packed


def _write(conn: psycopg.Connection[tuple[object, ...]], frames: list[Frame], **kw: object) -> BatchResult:
    read, packed = _as_read(frames)
    return write_frames(conn, read, packed=packed, **kw)  # type: ignore[arg-type]


def _keyed(f: Frame, seq: int, producer: str = "p@box/1") -> Frame:
    return replace(f, producer=producer, seq=seq)


@pytest.fixture
def conn(settings: Settings) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with connect_pg(settings.postgres) as c:
        ensure_partitions(c, NOW.date() - timedelta(days=3), NOW.date() + timedelta(days=1))
        yield c


def test_every_key_new_and_some_keys_known_give_the_same_ledger(
    settings: Settings, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    first = [_keyed(frame("dev", i, observed_at=NOW, x=float(i)), i) for i in range(1, 6)]
    assert (r := _write(conn, first)).frames == 5 and (r.duplicates, r.reused) == (0, [])
    again = [*first[2:], *(_keyed(frame("dev", i, observed_at=NOW, x=float(i)), i) for i in range(6, 9))]
    r = _write(conn, again)  # three keys known (the second query), three new
    assert (r.frames, r.duplicates, r.reused) == (3, 3, [])
    keys = pg_query(settings, "SELECT seq, digest FROM frame_keys ORDER BY seq")
    assert [s for s, _ in keys] == list(range(1, 9))
    assert [d for _, d in keys] == [entry_digest(_fields(f)) for f in [*first, *again[3:]]]
    assert pg_query(settings, "SELECT frames, max_seq FROM producer_progress") == [(8, 8)]
    assert pg_query(settings, "SELECT count(*) FROM readings") == [(8,)]


def test_a_key_twice_in_a_batch_of_new_keys_is_written_once_and_reuse_is_reported(
    conn: psycopg.Connection[tuple[object, ...]],
) -> None:
    a = _keyed(frame("dev", 1, observed_at=NOW, x=1.0), 1)
    other = replace(a, channels=(Channel("x", 2.0, ""),))
    r = _write(conn, [a, _keyed(frame("dev", 2, observed_at=NOW), 2), a, other])
    assert (r.frames, r.duplicates, r.reused) == (2, 1, [3])


def test_a_key_an_older_writer_stored_is_a_duplicate_not_key_reuse(
    settings: Settings, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    """Writers before issue 15's drain work stored ``legacy_digest`` (the decoded frame re-serialised).
    A frame they committed, sent again (a spool replay, a redelivery across the upgrade), must stay
    a duplicate; other content under that key is still key reuse."""
    old = _keyed(frame("dev", 1, observed_at=NOW, x=1.0), 1)
    stored = write_frames(conn, [old], packed=[pack(old, legacy_digest(old))])  # what an old writer left
    assert stored.frames == 1 and legacy_digest(old) != frame_digest(old)
    r = _write(conn, [old, replace(old, channels=(Channel("x", 2.0, ""),))])
    assert (r.frames, r.duplicates, r.reused) == (0, 1, [1])
    assert pg_query(settings, "SELECT count(*) FROM readings") == [(1,)]


def test_ledger_days_are_the_utc_days_of_observation(
    settings: Settings, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    midnight = datetime.combine(NOW.date(), datetime.min.time(), UTC)
    times = [midnight - timedelta(microseconds=1), midnight, midnight + timedelta(hours=23, minutes=59)]
    times.append(midnight - timedelta(days=2, hours=1))
    _write(conn, [_keyed(frame("dev", i, observed_at=t), i + 1) for i, t in enumerate(times)])
    days = pg_query(settings, "SELECT day FROM frame_keys ORDER BY seq")
    assert [d for (d,) in days] == [t.date() for t in times]


def test_every_value_text_null_and_quality_reads_back_through_the_view(
    settings: Settings, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    chans = (
        Channel("rpm", 1303.75, "rpm"), Channel("vin", "WP0ZZZ", ""), Channel("gear", None, "", Quality.NO_DATA),
        Channel("afr", 19.5, "", Quality.WARN), Channel("map", None, "kPa", Quality.ERROR),
    )  # fmt: skip
    f = _keyed(Frame("obd", "elm-0", NOW, NOW, 1, chans, session="run-7"), 1)
    _write(conn, [f])
    got = pg_query(settings, "SELECT channel, value, text_value, unit, quality, session, observed_at FROM readings")
    want = [
        (c.name, None if isinstance(c.value, str) else c.value, c.value if isinstance(c.value, str) else None,
         c.unit, c.quality.value, "run-7", NOW)
        for c in chans
    ]  # fmt: skip
    assert sorted(got, key=str) == sorted(want, key=str)
    state = pg_query(
        settings, "SELECT channel, value, text_value, unit, quality, session, observed_at FROM current_state"
    )
    assert sorted(state, key=str) == sorted(want, key=str)


@pytest.mark.parametrize("seed", range(12))
def test_current_state_is_each_channels_latest_frame_whatever_the_layouts(
    settings: Settings, conn: psycopg.Connection[tuple[object, ...]], seed: int
) -> None:
    """Frames of two devices with changing channel sets, times in any order and ties: the current
    state is, per channel, the frame observed last that has it (of equal times the later one)."""
    rng = random.Random(seed)
    names = ["a", "b", "c", "d"]
    frames: list[Frame] = []
    for seq in range(1, rng.randint(3, 60)):
        chosen = names[:3] if rng.random() < 0.5 else rng.sample(names, rng.randint(1, 4))
        at = NOW - timedelta(seconds=rng.randint(0, 8))
        chans = tuple(Channel(n, float(seq * 10 + k), "u") for k, n in enumerate(chosen))
        frames.append(_keyed(Frame("simulate", rng.choice(["d1", "d2"]), at, NOW, seq, chans), seq))
    _write(conn, frames)
    want: dict[tuple[str, str], tuple[datetime, float]] = {}
    for f in frames:
        for ch in f.channels:
            prev = want.get((f.device, ch.name))
            if prev is None or prev[0] <= f.observed_at:
                want[(f.device, ch.name)] = (f.observed_at, float(ch.value))  # type: ignore[arg-type]
    got = pg_query(settings, "SELECT device, channel, observed_at, value FROM current_state")
    assert {(d, c): (t, v) for d, c, t, v in got} == want
