"""The storage side of issue 11 on real PostgreSQL and Redis: read-only server, paused replica,
idempotency key reuse, retention against clock jumps, partition upkeep off the commit path,
and current_state against frames from the future."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import psycopg
import pytest
from psycopg import conninfo, sql
from psycopg.pq import TransactionStatus
from redis import Redis

from common.publish import Publisher, new_producer_id
from common.schema import Priority
from common.settings import Settings
from tests.conftest import settings_for
from tests.helpers import count_readings, running_writer, wait_for
from tests.integration.pipeline import frame, publish
from writer.migrate import migrate
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
