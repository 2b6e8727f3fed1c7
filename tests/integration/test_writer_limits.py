"""Issue 11, point 4 on real Redis and PostgreSQL: BATCH_MAX_ROWS bounds every COPY even when
frames are large, entries over MAX_ENTRY_BYTES are dead-lettered by reference without being
decoded, and running out of memory while decoding never dead-letters a valid frame."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from redis import Redis

from common.schema import Priority
from common.settings import Settings
from tests.conftest import settings_for
from tests.helpers import count_readings, wait_for
from tests.integration.pipeline import frame, publish
from writer import deadletter

pytestmark = pytest.mark.integration


@contextmanager
def writer_observed(settings: Settings) -> Iterator[tuple[Any, list[tuple[str, int]]]]:
    """run_writer in a thread; yields its stats and the (operation, rows) it observed."""
    from writer.replica import LANES, run_writer
    from writer.stats import WriterStats

    seen: list[tuple[str, int]] = []
    stop, stats = threading.Event(), WriterStats()

    def target() -> None:
        run_writer(
            settings,
            stop,
            consumer="limits",
            stats=stats,
            observe=lambda op, _s, ok, rows: seen.append((op, rows)),
        )

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    wait_for(lambda: len(stats.lanes) == len(LANES) or not thread.is_alive(), 30, what="writer start")
    try:
        yield stats, seen
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive()


def test_batch_max_rows_bounds_every_copy_even_when_frames_are_large(
    redis_url: str, pg_dsn: str, namespace: str, pg_schema: str, redis: Redis
) -> None:
    s = settings_for(redis_url, pg_dsn, namespace, pg_schema, batch_max_rows=5_000)
    # 4 frames of 3,000 channels, published before the writer starts: one read gets all four.
    publish(s, redis, [frame("big", i, **{f"c{j}": float(j) for j in range(3_000)}) for i in range(4)])
    with writer_observed(s) as (live, seen):
        wait_for(lambda: live.frames == 4, 60, what="4 large frames committed")
    copies = [rows for op, rows in seen if op == "copy"]
    assert copies == [3_000] * 4, copies  # the old writer made one COPY of 12,000 rows
    assert count_readings(s) == 12_000


def test_an_entry_over_max_entry_bytes_is_dead_lettered_by_reference_without_decoding(
    settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    import writer.loop

    decoded: list[int] = []
    real_decode = writer.loop.decode_shaped

    def counting_decode(fields: dict[bytes, bytes], *args: Any) -> Any:
        decoded.append(len(fields.get(b"ch", b"")))
        return real_decode(fields, *args)

    monkeypatch.setattr(writer.loop, "decode_shaped", counting_decode)
    names = settings.redis.names
    big = {"v": "1", "src": "jsonl", "prod": "huge/1", "seq": "1", "ch": b"[" + b" " * (2 << 20) + b"]"}
    big_id = redis.xadd(names.stream(Priority.NORMAL), big)  # type: ignore[arg-type]
    publish(settings, redis, [frame("ok", 1)])
    with writer_observed(settings) as (live, _):
        wait_for(lambda: live.frames == 1 and sum(live.dead_letters.values()) == 1, 30)
    assert dict(live.dead_letters) == {"EntryTooLarge": 1}
    assert max(decoded) < 1000  # the 2 MiB entry never reached the parser
    ((did, summary),) = deadletter.list_dead(redis, names)
    assert summary["entry_id"] == big_id.decode() and summary["omitted"] == f"ch:{(2 << 20) + 2}"
    assert int(summary["size"]) > 2 << 20 and "MAX_ENTRY_BYTES" in summary["error"]
    raw = deadletter.show_dead(redis, names, did)
    assert raw is not None and raw[b"orig.prod"] == b"huge/1" and b"orig.ch" not in raw


def test_running_out_of_memory_while_decoding_never_dead_letters_the_frame(
    settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    import writer.loop

    real_decode = writer.loop.decode_shaped
    failures = {"left": 1}

    def decode_once_out_of_memory(fields: dict[bytes, bytes], *args: Any) -> Any:
        if fields.get(b"seq") == b"2" and failures["left"]:
            failures["left"] -= 1
            raise MemoryError("simulated allocation failure")  # what orjson's allocation failure now becomes
        return real_decode(fields, *args)

    monkeypatch.setattr(writer.loop, "decode_shaped", decode_once_out_of_memory)
    s = settings.model_copy(update={"writer": settings.writer.model_copy(update={"claim_idle_ms": 200})})
    publish(s, redis, [frame("dev", i) for i in range(3)])
    with writer_observed(s) as (live, _):
        wait_for(lambda: live.frames == 3, 30, what="the frame retried after the memory error")
    assert live.resource_errors == 1 and sum(live.dead_letters.values()) == 0
    assert redis.xlen(settings.redis.names.deadletter) == 0


def test_running_out_of_memory_while_reading_lets_go_and_reads_again_instead_of_crashing(
    settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    import writer.loop

    real_read = writer.loop.read_entries
    failures = {"left": 1}

    def read_then_out_of_memory(*args: Any, **kwargs: Any) -> Any:
        entries = real_read(*args, **kwargs)
        if entries and failures["left"]:  # delivered to our PEL, then the reply could not be held
            failures["left"] -= 1
            raise MemoryError("simulated: reply too large")
        return entries

    monkeypatch.setattr(writer.loop, "read_entries", read_then_out_of_memory)
    s = settings.model_copy(update={"writer": settings.writer.model_copy(update={"claim_idle_ms": 200})})
    publish(s, redis, [frame("dev", i) for i in range(50)])
    with writer_observed(s) as (live, _):
        wait_for(lambda: live.frames == 50, 30, what="frames reclaimed after the memory error")
    assert live.resource_errors == 1 and sum(live.dead_letters.values()) == 0
