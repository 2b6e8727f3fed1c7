"""Pure writer logic for issue 11: size limits before parsing, batches bounded by rows, lane health,
and the shape of a dead letter kept by reference."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from common import schema
from common.errors import DecodeError
from common.schema import Channel, Frame, Priority, decode, encode
from writer.batch import Batcher
from writer.deadletter import COPY_MAX_BYTES, ORIG, dead_letter_fields, index_member
from writer.read import Entry
from writer.stats import LaneHealth, lane_checks, lanes_alive

T = datetime(2026, 1, 1, tzinfo=UTC)


def fields(channels: int, seq: int = 1) -> dict[bytes, bytes]:
    frame = Frame("simulate", "d", T, T, 0, tuple(Channel(f"c{i}", 1.0) for i in range(channels)), None, "p/1", seq)
    return {k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in encode(frame).items()}


def test_channel_count_is_bounded() -> None:
    assert len(decode(fields(50), max_channels=50).channels) == 50
    with pytest.raises(DecodeError, match="51 channels, more than MAX_CHANNELS 50"):
        decode(fields(51), max_channels=50)


def test_brackets_inside_texts_do_not_reject_a_frame_under_the_channel_limit() -> None:
    f = fields(1)
    f[b"ch"] = orjson.dumps([["note", "[[[[[[[[[[", "", "good"], ["x", 1.0, "", "good"]])
    assert len(decode(f, max_channels=2).channels) == 2


def test_allocation_failure_inside_orjson_is_a_memory_error_not_bad_data(monkeypatch: pytest.MonkeyPatch) -> None:
    def loads(_raw: bytes) -> object:  # what orjson raises when its parse buffer cannot be allocated
        raise orjson.JSONDecodeError("Not enough memory to allocate buffer for parsing", "", 0)

    monkeypatch.setattr(schema.orjson, "loads", loads)
    with pytest.raises(MemoryError):
        decode(fields(3))


def item(priority: Priority, channels: int) -> tuple[Entry, Frame]:
    f = Frame("simulate", "d", T, T, 0, tuple(Channel(f"c{i}", 1.0) for i in range(channels)), priority=priority)
    return Entry("{t}:" + priority.value, b"1-0", {}, priority), f


@pytest.mark.parametrize("priority", [Priority.NORMAL, Priority.CRITICAL])
def test_max_rows_is_a_bound_not_only_a_trigger(priority: Priority) -> None:
    b = Batcher(max_rows=100, max_age_s=60)
    assert b.fits(priority, 1_000)  # an empty batch takes any frame: frames are never split
    b.add(*item(priority, 60), now=0.0)
    assert b.fits(priority, 40) and not b.fits(priority, 41)
    b.add(*item(priority, 40), now=0.0)
    assert len(b.take(priority)) == 2 and b.fits(priority, 100) and b.rows == b.urgent_rows == 0


def test_a_lane_holding_an_entry_too_long_is_not_ready_and_a_hung_lane_not_alive() -> None:
    lanes = {"urgent": LaneHealth(beat_at=100.0), "live": LaneHealth(beat_at=100.0, held_since=90.0)}
    assert lane_checks(lanes, 100.0, stall_s=20) == {"lane_urgent_progress": True, "lane_live_progress": True}
    assert lane_checks(lanes, 111.0, stall_s=20) == {"lane_urgent_progress": True, "lane_live_progress": False}
    assert lanes_alive(lanes, 111.0, stall_s=20)
    assert not lanes_alive(lanes, 121.0, stall_s=20)  # no loop turned for 21 s: hung
    lanes["urgent"].running = False  # a lane that died
    assert not lanes_alive(lanes, 100.0, stall_s=20)


def test_a_huge_entry_is_dead_lettered_by_reference() -> None:
    f = fields(1)
    f[b"ch"] = b"x" * (COPY_MAX_BYTES + 1)
    entry = Entry("{t}:normal", b"5-1", f, Priority.NORMAL)
    dead = dead_letter_fields(entry, "EntryTooLarge", "too large", "now", "c")
    assert dead[b"size"] == str(entry.size) and dead[b"entry_id"] == b"5-1" and dead[b"stream"] == "{t}:normal"
    assert ORIG + b"ch" not in dead and dead[b"omitted"] == f"ch:{COPY_MAX_BYTES + 1}"
    assert dead[ORIG + b"prod"] == b"p/1" and dead[ORIG + b"seq"] == b"1"  # what identifies the frame is kept
    small = Entry("{t}:normal", b"5-2", fields(1), Priority.NORMAL)
    assert {k for k in dead_letter_fields(small, "E", "e", "now", "c") if k.startswith(ORIG)} == {
        ORIG + k for k in small.fields
    }


def test_index_members_sort_like_entry_ids() -> None:
    ids = [b"9-0", b"10-0", b"10-2", b"10-10", b"100-1"]
    members = [index_member(Entry("{t}:low", i, {}, Priority.LOW)) for i in ids]
    assert members == sorted(members) and members[0] == f"low:{9:020d}-{0:020d}"


def test_writer_healthz_fails_when_a_lane_stops_turning() -> None:
    import time

    from common.settings import Settings
    from writer.metrics import WriterTelemetry
    from writer.stats import WriterStats

    settings = Settings(writer={"stall_s": 5}, _env_file=None)  # type: ignore[call-arg]
    stats = WriterStats()
    telemetry = WriterTelemetry(settings, stats=stats)
    endpoints = telemetry.endpoints()
    assert endpoints.live()  # starting: no lanes yet
    stats.lanes["urgent"] = LaneHealth(beat_at=time.monotonic())
    stats.lanes["bulk"] = LaneHealth(beat_at=time.monotonic() - 6)  # hung for 6 s in one call
    assert not endpoints.live()  # the old writer's /healthz was always true
    stats.lanes["bulk"].beat_at = time.monotonic()
    assert endpoints.live()
