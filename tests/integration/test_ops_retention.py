"""Retention: daily partitions past TELEMETRY_WRITER__RETENTION_DAYS are dropped and
PARTITIONS_AHEAD_DAYS of future ones exist, both through writer.partitions and through the
writer itself (which runs the same maintenance when it connects and every 10 minutes)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from psycopg import sql
from redis import Redis

from common.publish import Publisher
from common.schema import Channel, Frame, Quality
from common.settings import Settings
from tests.helpers import count_readings, running_writer, wait_for
from writer.partitions import ensure_partitions, list_partitions, maintain, partition_name

pytestmark = pytest.mark.integration


def _conn(settings: Settings) -> psycopg.Connection[tuple[object, ...]]:
    conn = psycopg.connect(settings.postgres.dsn, autocommit=True)
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(settings.postgres.schema_name)))
    return conn


def _days(names: list[str], table: str = "readings") -> set[date]:
    prefix = table + "_p"
    return {datetime.strptime(n[len(prefix) :], "%Y%m%d").date() for n in names if n.startswith(prefix)}


def test_maintain_drops_past_retention_and_creates_ahead(settings: Settings) -> None:
    today = datetime.now(UTC).date()
    with _conn(settings) as conn:
        ensure_partitions(conn, today - timedelta(days=45), today - timedelta(days=40))  # an old box's backlog
        maintain(conn, today, retention_days=30, ahead_days=3, drop=True)
        days = _days(list_partitions(conn))
        frame_key_days = _days(list_partitions(conn), "frame_keys")
    assert min(days) == today - timedelta(days=30), "nothing older than the retention horizon"
    assert max(days) == today + timedelta(days=3), "three days ahead, so midnight never stalls ingest"
    assert days == {today + timedelta(days=d) for d in range(-30, 4)}
    assert frame_key_days == days, "the idempotency ledger is dropped with its readings"


def test_the_writer_applies_retention_when_it_connects(settings: Settings, redis: Redis) -> None:
    today = datetime.now(UTC).date()
    old = today - timedelta(days=settings.writer.retention_days + 5)
    with _conn(settings) as conn:
        ensure_partitions(conn, old, old)
        assert partition_name("readings", old) in list_partitions(conn)
    now = datetime.now(UTC)
    pub = Publisher(redis, settings.redis.names, "simulate@retention/1")
    pub.stamp([Frame("simulate", "sim-0", now, now, 1, (Channel("rpm", 900.0, "rpm", Quality.GOOD),))])
    pub.send()
    with running_writer(settings):
        wait_for(lambda: count_readings(settings) == 1, 20, what="one reading committed")
    with _conn(settings) as conn:
        days = _days(list_partitions(conn))
    assert old not in days
    assert today + timedelta(days=settings.writer.partitions_ahead_days) in days
