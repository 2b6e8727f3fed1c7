"""The spine on real Redis and real PostgreSQL: exactly once, crash recovery, claims, poison."""

from __future__ import annotations

import signal
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis

from common.publish import Publisher, new_producer_id
from common.schema import Priority
from common.settings import Settings
from tests.conftest import settings_for
from tests.helpers import count_readings, pg_query, running_writer, wait_for
from tests.integration.conftest import PrivatePg
from tests.integration.pipeline import frame, produce_simulated, publish, start_writer, stop_process
from writer import deadletter

pytestmark = pytest.mark.integration


def assert_exactly_once(settings: Settings, frames: int, channels: int) -> None:
    total, distinct = pg_query(settings, "SELECT count(*), count(DISTINCT (producer, seq, channel)) FROM readings")[0]
    assert total == distinct == frames * channels, (total, distinct, frames * channels)
    keys, distinct_keys = pg_query(settings, "SELECT count(*), count(DISTINCT (producer, seq)) FROM frame_keys")[0]
    assert keys == distinct_keys == frames
    gaps = pg_query(settings, "SELECT coalesce(sum(max_seq - frames), 0) FROM producer_progress")[0][0]
    assert gaps == 0


@pytest.mark.slow
def test_100k_frames_from_several_producers_land_exactly_once(settings: Settings, redis: Redis) -> None:
    producers = [
        threading.Thread(target=produce_simulated, args=(settings, redis, 25_000, 5, 4, f"p{i}")) for i in range(4)
    ]
    with running_writer(settings) as live:
        for t in producers:
            t.start()
        for t in producers:
            t.join(120)
        wait_for(lambda: live.frames >= 100_000, 120, what="100k frames committed")
    assert_exactly_once(settings, 100_000, 4)
    # current_state holds the last values: device p0-000's last frame is number 25000/5 - 1 = 4999.
    from producers.simulate import simulated_value

    rows = pg_query(settings, "SELECT channel, value FROM current_state WHERE device = 'p0-000' ORDER BY channel")
    expected = {
        "afr": simulated_value(1, 4999),
        "map": simulated_value(2, 4999),
        "rpm": simulated_value(0, 4999),
        "tps": simulated_value(3, 4999),
    }
    assert dict(rows) == expected
    assert pg_query(settings, "SELECT count(*) FROM current_state")[0][0] == 4 * 5 * 4


def test_kill_9_between_commit_and_ack_leaves_no_duplicate(settings: Settings, redis: Redis) -> None:
    produce_simulated(settings, redis, 5_000, devices=2, channels=3)
    # Deterministic: batches of at most 300 rows (100 frames), so 5,000 frames take 50 commits
    # whatever the machine's speed; the writer SIGKILLs itself right after its 2nd, before XACK.
    proc = start_writer(
        settings, "crashy", {"TELEMETRY_FAULT_KILL_AT": "after_commit:2", "TELEMETRY_WRITER__BATCH_MAX_ROWS": "300"}
    )
    out = stop_process(proc, signal.SIGKILL, wait_first=60)
    assert proc.returncode == -signal.SIGKILL and "killed by fault injection" in out, out
    committed = count_readings(settings)
    assert 0 < committed < 15_000
    pending = sum(redis.xpending(k, "writer")["pending"] for k in settings.redis.names.streams)
    assert pending > 0, "the killed writer should have left committed-but-unacked entries"
    with running_writer(settings, consumer="survivor") as live:
        wait_for(lambda: count_readings(settings) >= 15_000, 60, what="all rows")
        wait_for(lambda: live.duplicates > 0, 30, what="redelivered frames recognised as duplicates")
        wait_for(lambda: sum(redis.xpending(k, "writer")["pending"] for k in settings.redis.names.streams) == 0, 30)
    assert_exactly_once(settings, 5_000, 3)


def test_pending_entries_of_a_dead_replica_are_claimed(settings: Settings, redis: Redis) -> None:
    produce_simulated(settings, redis, 2_000, devices=2, channels=2)
    # The first replica reads a batch and dies before committing anything.
    proc = start_writer(settings, "doomed", {"TELEMETRY_FAULT_KILL_AT": "after_read:1"})
    out = stop_process(proc, signal.SIGKILL, wait_first=60)
    assert proc.returncode == -signal.SIGKILL and "killed by fault injection" in out, out
    assert count_readings(settings) == 0
    doomed_pending = redis.xpending(settings.redis.names.stream(Priority.NORMAL), "writer")["pending"]
    assert doomed_pending > 0
    with running_writer(settings, consumer="rescuer") as live:
        wait_for(lambda: count_readings(settings) >= 4_000, 60, what="claimed and committed")
        assert live.claimed >= doomed_pending
    assert_exactly_once(settings, 2_000, 2)


def test_poison_rows_are_isolated_dead_lettered_and_replayed_after_a_fix(settings: Settings, redis: Redis) -> None:
    names = settings.redis.names
    # 3 frames from a device whose clock runs 20 days ahead: no partition exists that far
    # ahead, so PostgreSQL rejects them (SQLSTATE 23514); the other 997 must commit exactly once.
    old = datetime.now(UTC) + timedelta(days=20)
    frames = [frame("dev", i, old if i in (10, 500, 998) else None, x=float(i)) for i in range(1000)]
    with running_writer(settings) as live:
        publish(settings, redis, frames)
        wait_for(lambda: sum(live.dead_letters.values()) == 3 and live.frames == 997, 60, what="997 + 3")
    assert count_readings(settings) == 997
    assert_exactly_once_keys = pg_query(settings, "SELECT count(DISTINCT seq) FROM readings")[0][0]
    assert assert_exactly_once_keys == 997
    dead = deadletter.list_dead(redis, names)
    assert len(dead) == 3
    for _, summary in dead:
        assert summary["error_class"] == "sqlstate:23514"
        assert "partition" in summary["error"]
        assert summary["stream"] == names.stream(Priority.NORMAL)
    # The fix: create the missing partition; then replay moves them in.
    from writer.partitions import ensure_partitions
    from writer.pg import connect_pg

    with connect_pg(settings.postgres) as conn:
        ensure_partitions(conn, old.date(), old.date())
    deadletter.replay(redis, names, [d for d, _ in dead])
    assert redis.xlen(names.deadletter) == 0
    with running_writer(settings) as live:
        wait_for(lambda: count_readings(settings) == 1000, 60, what="replayed frames committed")
    assert pg_query(settings, "SELECT count(*) FROM readings WHERE observed_at > now() + interval '10 days'")[0][0] == 3
    assert pg_query(settings, "SELECT count(DISTINCT seq) FROM readings")[0][0] == 1000


def test_undecodable_entries_are_dead_lettered_with_reason(settings: Settings, redis: Redis) -> None:
    names = settings.redis.names
    key = names.stream(Priority.NORMAL)
    redis.xadd(key, {"hello": "world"})  # written by hand, no schema
    redis.xadd(key, {"v": "9", "ch": "[]"})
    good = publish(settings, redis, [frame("dev", 1, x=1.0)])
    with running_writer(settings) as live:
        wait_for(lambda: live.frames == 1 and sum(live.dead_letters.values()) == 2, 30)
    reasons = sorted(s["error"] for _, s in deadletter.list_dead(redis, names))
    assert reasons == ["missing field 'v' (not a frame entry)", "unsupported schema version b'9'"]
    raw = deadletter.show_dead(redis, names, deadletter.list_dead(redis, names)[0][0])
    assert raw is not None and raw[b"orig.hello"] == b"world"  # kept byte for byte
    assert not good.pending  # sent


def test_critical_frame_is_committed_ahead_of_a_bulk_backlog(settings: Settings, redis: Redis) -> None:
    produce_simulated(settings, redis, 40_000, devices=4, channels=8, name="bulk", priority=Priority.BULK)
    bulk_rows = 40_000 * 8
    with running_writer(settings) as live:
        wait_for(lambda: live.frames > 0, 30, what="writer busy with the bulk backlog")
        publisher = Publisher(redis, settings.redis.names, new_producer_id("crit"))
        publisher.stamp([replace(frame("alarm-crit", 1, x=42.0), priority=Priority.CRITICAL)])
        publisher.send()
        wait_for(lambda: pg_query(settings, "SELECT 1 FROM readings WHERE device = 'alarm-crit'"), 30)
        bulk_done = pg_query(settings, "SELECT count(*) FROM readings WHERE device LIKE 'bulk%'")[0][0]
        assert bulk_done < bulk_rows, "the critical frame waited for the whole bulk backlog"
        wait_for(lambda: live.frames >= 40_001, 120, what="backlog drained")


def test_writer_rides_out_a_postgres_restart(private_pg: PrivatePg, redis: Redis) -> None:
    """A fast restart of PostgreSQL (a private cluster, never the machine's own) under load."""
    settings = private_pg.settings
    stop = threading.Event()
    t = threading.Thread(
        target=lambda: [produce_simulated(settings, redis, 500, 2, 2, f"r{i}") for i in range(20) if not stop.is_set()]
    )
    with running_writer(settings) as live:
        t.start()
        wait_for(lambda: live.frames > 1000, 60)
        private_pg.restart()
        t.join(120)
        wait_for(lambda: live.frames >= 10_000, 90, what="all frames after the restart")
        assert live.pg_errors > 0, "the restart was not noticed"
        assert sum(live.dead_letters.values()) == 0
    assert_exactly_once(settings, 10_000, 2)
    assert redis.xlen(settings.redis.names.deadletter) == 0


def test_settings_for_is_isolated(redis_url: str, pg_dsn: str) -> None:
    a = settings_for(redis_url, pg_dsn, "aaa", "aaa")
    b = settings_for(redis_url, pg_dsn, "bbb", "bbb")
    assert set(a.redis.names.streams).isdisjoint(b.redis.names.streams)


def test_frames_snapshot_once_per_device_and_interval(
    redis_url: str, pg_dsn: str, namespace: str, pg_schema: str, redis: Redis
) -> None:
    settings = settings_for(redis_url, pg_dsn, namespace, pg_schema, snapshot_interval_s=3600)
    publish(settings, redis, [frame(d, i, x=float(i), y=2.0) for i in range(50) for d in ("a", "b")])
    with running_writer(settings) as live:
        wait_for(lambda: live.frames == 100, 30)
    rows = pg_query(settings, "SELECT device, channels FROM frames ORDER BY device")
    assert [(d, c) for d, c in rows] == [
        ("a", {"x": [0.0, "", "good"], "y": [2.0, "", "good"]}),
        ("b", {"x": [0.0, "", "good"], "y": [2.0, "", "good"]}),
    ]
