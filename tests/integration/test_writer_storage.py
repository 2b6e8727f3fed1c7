"""The storage side of issue 11 on real PostgreSQL and Redis: read-only server, paused replica,
idempotency key reuse, retention against clock jumps, partition upkeep off the commit path,
and current_state against frames from the future."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import conninfo, sql
from psycopg.pq import TransactionStatus
from redis import Redis

from admin.migrate import migrate
from common.publish import Publisher, new_producer_id
from common.schema import Priority
from common.settings import Settings
from tests.conftest import settings_for
from tests.helpers import count_readings, pg_query, running_writer, wait_for
from tests.integration.pipeline import frame, publish
from writer import deadletter
from writer.partitions import ensure_partitions, maintain
from writer.pg import connect_pg
from writer.pg_copy import write_frames

pytestmark = pytest.mark.integration


@pytest.fixture
def own_database(pg_dsn: str, namespace: str) -> Iterator[str]:
    """DSN of a database created for this test (so it may be made read-only), dropped afterwards."""
    name = f"db_{namespace}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield conninfo.make_conninfo(pg_dsn, dbname=name)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _set_read_only(dsn: str, on: bool) -> None:
    """Make the test's own database read-only for new sessions, or lift it (from another database)."""
    name = conninfo.conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(conninfo.make_conninfo(dsn, dbname="postgres"), autocommit=True) as conn:
        if on:
            stmt = sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on")
        else:
            stmt = sql.SQL("ALTER DATABASE {} RESET default_transaction_read_only")
        conn.execute(stmt.format(sql.Identifier(str(name))))


def test_read_only_database_keeps_good_frames_pending_then_commits_them(
    redis_url: str, own_database: str, namespace: str, redis: Redis
) -> None:
    """Point 6: SQLSTATE 25006 (a standby after failover) is retried, never dead-lettered."""
    settings = settings_for(redis_url, own_database, namespace, "telemetry")
    with connect_pg(settings.postgres) as conn:
        migrate(conn, "telemetry")
    with connect_pg(settings.postgres) as conn:
        # Every partition the writer wants exists, so the refusal hits the commit itself.
        w = settings.writer
        maintain(conn, frame("d", 0).observed_at.date(), w.retention_days, w.partitions_ahead_days)
    _set_read_only(own_database, True)
    publish(settings, redis, [frame("dev", i, x=float(i)) for i in range(20)])
    names = settings.redis.names
    with running_writer(settings) as live:
        wait_for(lambda: live.pg_errors >= 3 or live.dead_letters, 60, what="refused commits")
        assert not live.dead_letters, "good frames were dead-lettered by a read-only server"
        assert redis.xlen(names.deadletter) == 0
        assert sum(redis.xpending(k, names.group)["pending"] for k in names.streams) == 20
        _set_read_only(own_database, False)
        wait_for(lambda: live.frames == 20, 60, what="commits once read-only is lifted")
        assert not live.dead_letters
    assert count_readings(settings) == 20
    assert sum(redis.xpending(k, names.group)["pending"] for k in names.streams) == 0


def test_a_paused_replica_holding_ledger_locks_does_not_block_the_others(settings: Settings, redis: Redis) -> None:
    """Point 8: a replica stopped inside its transaction (SIGSTOP, VM pause) loses its session
    to idle_in_transaction_session_timeout, so the replica that claimed its entries commits."""
    publisher = Publisher(redis, settings.redis.names, new_producer_id("paused"))
    publisher.stamp([replace(frame("alarm", i, x=float(i)), priority=Priority.CRITICAL) for i in range(21)])
    stamped = list(publisher.pending)
    publisher.send()
    with connect_pg(settings.postgres) as conn:
        today = stamped[0].observed_at.date()
        ensure_partitions(conn, today, today)
    paused = connect_pg(settings.postgres, autocommit=False)  # the writer's own session setup
    try:
        write_frames(paused, stamped)  # keys inserted and rows copied; the transaction stays open
        assert paused.info.transaction_status == TransactionStatus.INTRANS
        t0 = time.monotonic()
        with running_writer(settings) as live:
            wait_for(lambda: live.frames == 21, 30, what="critical frames committed past the paused replica")
            took = time.monotonic() - t0
        with pytest.raises(psycopg.Error, match="idle-in-transaction timeout"):
            paused.execute("SELECT 1")  # the server ended the paused session
    finally:
        paused.close()
    assert count_readings(settings) == 21
    print(f"21 critical frames committed {took:.1f} s after a replica paused inside its transaction")


def test_a_reused_key_with_other_content_is_dead_lettered_never_stored_twice(settings: Settings, redis: Redis) -> None:
    """Point 2: the same (producer, seq) with another observed_at was stored twice."""
    names = settings.redis.names
    now = datetime.now(UTC)
    first = Publisher(redis, names, "reuse@box/1")
    first.stamp([frame("dev", 1, observed_at=now, x=1.0)])
    original = list(first.pending)
    first.send()
    again = Publisher(redis, names, "reuse@box/1")  # the same producer id, restarted at seq 1
    again.stamp([frame("dev", 1, observed_at=now - timedelta(hours=1), x=2.0)])
    again.send()
    resend = Publisher(redis, names, "reuse@box/1")  # and an honest re-send of the original
    resend.pending = list(original)
    resend.send()
    with running_writer(settings) as live:
        wait_for(lambda: live.frames + live.duplicates + sum(live.dead_letters.values()) == 3, 30)
        assert (live.frames, live.duplicates, dict(live.dead_letters)) == (1, 1, {"KeyReuseError": 1})
    assert pg_query(settings, "SELECT seq, value FROM readings") == [(1, 1.0)]
    assert pg_query(settings, "SELECT count(*) FROM frame_keys") == [(1,)]
    [(_, dead)] = deadletter.list_dead(redis, names)
    assert dead["error_class"] == "KeyReuseError" and dead["error"].startswith("key reuse: ")
    assert sum(redis.xpending(k, names.group)["pending"] for k in names.streams) == 0


def test_inside_one_batch_the_second_frame_of_a_key_is_never_silently_dropped(settings: Settings) -> None:
    """Point 2: inside one batch the second frame was marked committed but never written."""
    now = datetime.now(UTC)
    a = replace(frame("dev", 1, observed_at=now, x=1.0), producer="p@b/1", seq=7)
    b = replace(a, observed_at=now - timedelta(minutes=5), channels=a.channels)
    with connect_pg(settings.postgres) as conn:
        ensure_partitions(conn, now.date() - timedelta(days=1), now.date())
        result = write_frames(conn, [a, b, a])
    assert (result.frames, result.duplicates, result.reused) == (1, 1, [1])
    assert pg_query(settings, "SELECT count(*) FROM frame_keys") == [(1,)]
    assert pg_query(settings, "SELECT observed_at FROM readings") == [(a.observed_at,)]


def test_migration_003_upgrades_an_existing_ledger(pg_dsn: str, namespace: str) -> None:
    """The ledger of a database at 002 is carried over: old keys stay duplicates."""
    schema = namespace
    now = datetime.now(UTC)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        try:
            assert migrate(conn, schema, upto=2) == [1, 2]
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            conn.execute("SELECT ensure_partitions(%s, %s)", [now.date() - timedelta(days=1), now.date()])
            for at in (now, now - timedelta(days=1)):  # the old bug: one key under two timestamps
                conn.execute("INSERT INTO frame_keys VALUES ('old@box/1', 5, %s)", [at])
            assert migrate(conn, schema, upto=3) == [3]  # 004 changes readings, not the ledger
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            rows = conn.execute("SELECT producer, seq, day, digest FROM frame_keys").fetchall()
            assert rows == [("old@box/1", 5, (now - timedelta(days=1)).date(), None)]
            assert conn.execute(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = 'frame_keys'::regclass"
            ).fetchone() == (0,)
            assert migrate(conn, schema)[0] == 4  # today's writer writes the packed layout (and 005+)
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            old = replace(frame("dev", 5, observed_at=now), producer="old@box/1", seq=5)
            result = write_frames(conn, [old])
            assert (result.frames, result.duplicates, result.reused) == (0, 1, [])
        finally:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def test_one_frame_from_the_future_does_not_freeze_current_state(settings: Settings, redis: Redis) -> None:
    """Point 11: a frame 2 days ahead froze current_state for 2 days."""
    now = datetime.now(UTC)
    with running_writer(settings) as live:
        publish(settings, redis, [frame("dev", 1, observed_at=now + timedelta(days=2), x=99.0)], name="ahead")
        wait_for(lambda: live.frames == 1, 30)
        publish(settings, redis, [frame("dev", 2, observed_at=now, x=1.0)], name="right")
        wait_for(lambda: live.frames == 2, 30)
    assert pg_query(settings, "SELECT value FROM current_state WHERE device = 'dev'") == [(1.0,)]
    assert count_readings(settings) == 2, "the frame from the future is stored all the same"


def test_a_current_state_row_already_frozen_in_the_future_is_replaced(settings: Settings) -> None:
    """Point 11: a row written before the horizon existed (or by a writer whose clock was ahead)."""
    now = datetime.now(UTC)
    with connect_pg(settings.postgres) as conn:
        ensure_partitions(conn, now.date(), now.date())
        conn.execute(
            "INSERT INTO current_state (source, device, channel, observed_at, value, unit, quality)"
            " VALUES ('simulate', 'dev', 'x', %s, 99, '', 'good')",
            [now + timedelta(days=2)],
        )
        f = replace(frame("dev", 1, observed_at=now, x=1.0), producer="p@b/1", seq=1)
        write_frames(conn, [f], state_horizon=now + timedelta(minutes=5))
    assert pg_query(settings, "SELECT value, observed_at FROM current_state") == [(1.0, now)]


def test_a_recent_day_without_a_partition_yet_is_created_not_dead_lettered(settings: Settings, redis: Redis) -> None:
    """Upkeep runs on its own thread: a frame from 8 days ago may arrive before its first pass has
    created that day. The lane creates partitions inside the retention window itself; a frame
    outside it (40 days ago, retention 30) is still dead-lettered (SQLSTATE 23514)."""
    now = datetime.now(UTC)
    recent, old = now - timedelta(days=8), now - timedelta(days=40)
    assert pg_query(settings, "SELECT to_regclass(%s)", [f"readings_p{recent:%Y%m%d}"]) == [(None,)]
    publish(settings, redis, [frame("dev", 1, recent, x=1.0), frame("dev", 2, old, x=2.0)])
    with running_writer(settings, upkeep_interval_s=3600) as live:
        wait_for(lambda: live.frames == 1 and sum(live.dead_letters.values()) == 1, 30, what="1 + 1 dead letter")
    assert dict(live.dead_letters) == {"sqlstate:23514": 1}
    assert pg_query(settings, "SELECT value FROM readings") == [(1.0,)]
