"""Retention and partition upkeep on real PostgreSQL: partitions exist from the retention
horizon to PARTITIONS_AHEAD_DAYS ahead; expired ones are dropped in bounded passes that a clock
jump cannot fool (issue 11, point 1); upkeep runs off the commit path, clamped to the minimum
retention, with a short lock_timeout, and copes with any documented retention (point 7)."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from prometheus_client import generate_latest
from psycopg import sql
from redis import Redis

from admin.cli import main as admin_main
from common.schema import Frame
from common.settings import Settings
from tests.conftest import settings_for
from tests.helpers import ShiftedClock, count_readings, pg_query, running_writer, wait_for
from tests.integration.pipeline import frame, publish
from writer.metrics import WriterTelemetry
from writer.partitions import ensure_partitions, list_partitions, maintain, partition_days
from writer.pg import connect_pg
from writer.retention import accept_clock
from writer.stats import WriterStats
from writer.upkeep import PartitionUpkeep

pytestmark = pytest.mark.integration

TODAY = datetime.now(UTC).date()


def _conn(settings: Settings) -> psycopg.Connection[tuple[object, ...]]:
    conn = psycopg.connect(settings.postgres.dsn, autocommit=True)
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(settings.postgres.schema_name)))
    return conn


def _days(names: list[str], table: str = "readings") -> set[date]:
    prefix = table + "_p"
    return {datetime.strptime(n[len(prefix) :], "%Y%m%d").date() for n in names if n.startswith(prefix)}


def _one_frame_per_day(settings: Settings, redis: Redis, days: range) -> list[Frame]:
    """Publish one frame observed on each day ``TODAY - d``, and commit them with a writer.

    At the start of the day, not at noon: a frame of today observed later than now is in the future,
    which current_state ignores, and retention dates the newest data from current_state (a morning
    run then saw the newest data three days back and planned a cutoff three days early)."""
    start = datetime.combine(TODAY, datetime.min.time(), UTC) + timedelta(seconds=1)
    frames = [frame("dev", d, observed_at=start - timedelta(days=d), x=float(d)) for d in days]
    with _conn(settings) as conn:
        ensure_partitions(conn, TODAY - timedelta(days=max(days)), TODAY)
    publish(settings, redis, frames)
    with running_writer(settings) as live:
        wait_for(lambda: live.frames == len(frames), 30, what="frames of the past days committed")
    return frames


def _upkeep(settings: Settings, clock: ShiftedClock, stats: WriterStats | None = None) -> PartitionUpkeep:
    return PartitionUpkeep(settings, stats or WriterStats(), clock, lambda: connect_pg(settings.postgres))


def test_maintain_creates_partitions_from_the_horizon_to_ahead(settings: Settings) -> None:
    with _conn(settings) as conn:
        maintain(conn, TODAY, retention_days=30, ahead_days=3)
        days = _days(list_partitions(conn))
    assert days == {TODAY + timedelta(days=d) for d in range(-30, 4)}


def test_a_pass_drops_only_what_is_past_retention_and_the_ledger_goes_with_it(settings: Settings, redis: Redis) -> None:
    _one_frame_per_day(settings, redis, range(0, 40, 3))  # days 0, 3 ... 39 ago
    upkeep = _upkeep(settings, ShiftedClock())
    report = upkeep.step()
    assert report.plan is not None and report.plan.cutoff == TODAY - timedelta(days=30)
    while upkeep.step().dropped:  # a bounded number of days per pass
        pass
    with _conn(settings) as conn:
        assert min(partition_days(conn)) == TODAY - timedelta(days=30)
    kept = {int(r[0]) for r in pg_query(settings, "SELECT value FROM readings")}
    assert kept == set(range(0, 31, 3)), "readings older than 30 days dropped, the rest kept"
    ledger_days = {r[0] for r in pg_query(settings, "SELECT day FROM frame_keys")}
    assert min(ledger_days) >= TODAY - timedelta(days=30), "ledger keys pruned with their day"
    assert len(ledger_days) == len(kept)


def test_a_forward_clock_jump_drops_nothing_and_is_refused_with_a_metric(settings: Settings, redis: Redis) -> None:
    """Point 1: writer and PostgreSQL 40 days ahead; before, 68 partitions went (200 rows -> 0)."""
    _one_frame_per_day(settings, redis, range(0, 25))
    clock, stats = ShiftedClock(), WriterStats()
    upkeep = _upkeep(settings, clock, stats)
    upkeep.step()  # a normal pass: records when it ran
    clock.offset = timedelta(days=40)
    report = upkeep.step()
    assert report.plan is not None and report.plan.refusal is not None
    assert "clock moved" in report.plan.refusal and report.dropped == []
    assert count_readings(settings) == 25
    assert stats.retention_refusals == 1 and stats.retention_refused
    telemetry = WriterTelemetry(settings, stats=stats)
    text = generate_latest(telemetry.registry).decode()
    assert "telemetry_writer_retention_refusals_total 1.0" in text
    assert "telemetry_writer_retention_refused 1.0" in text
    telemetry.close()
    # Still refused on the next pass; after an operator accepts the clock, the newest-data
    # guard keeps everything newer than (newest data - retention) anyway.
    assert upkeep.step().dropped == [] and stats.retention_refusals == 2
    with _conn(settings) as conn:
        accept_clock(conn)
    report = upkeep.step()
    assert report.plan is not None and report.plan.refusal is None
    assert report.plan.cutoff == TODAY - timedelta(days=30)
    assert count_readings(settings) == 25
    assert not stats.retention_refused


def test_a_running_writer_whose_clock_jumps_keeps_all_data(settings: Settings, redis: Redis) -> None:
    """Point 1 end to end: the writer itself runs 40 days ahead (no pass recorded before)."""
    _one_frame_per_day(settings, redis, range(0, 25))
    with running_writer(settings, clock=ShiftedClock(timedelta(days=40)), upkeep_interval_s=3600) as live:
        wait_for(lambda: live.retention_passes >= 1, 60, what="a retention pass")
        publish(settings, redis, [frame("dev", 100, x=100.0)])
        wait_for(lambda: live.frames == 1, 30, what="a frame committed meanwhile")
    assert count_readings(settings) == 26
    with _conn(settings) as conn:
        assert min(partition_days(conn)) <= TODAY - timedelta(days=24)


def test_a_pass_drops_a_bounded_number_of_days(settings: Settings, redis: Redis) -> None:
    _one_frame_per_day(settings, redis, range(0, 2))
    with _conn(settings) as conn:
        ensure_partitions(conn, TODAY - timedelta(days=49), TODAY - timedelta(days=40))  # 10 expired days
    s = settings_for(
        settings.redis.url, settings.postgres.dsn, settings.redis.namespace, settings.postgres.schema_name,
        retention_max_days_per_pass=3,
    )  # fmt: skip
    upkeep = _upkeep(s, ShiftedClock())
    assert [len(upkeep.step().dropped) for _ in range(5)] == [3, 3, 3, 1, 0]
    with _conn(settings) as conn:
        assert min(partition_days(conn)) == TODAY - timedelta(days=30)


def test_min_retention_above_retention_days_is_clamped_and_ingest_goes_on(settings: Settings, redis: Redis) -> None:
    """Point 7: the floor the README advises once stopped every commit (0 of 10)."""
    with _conn(settings) as conn:
        conn.execute("UPDATE retention_policy SET min_retention_days = 60")
        ensure_partitions(conn, TODAY - timedelta(days=70), TODAY - timedelta(days=40))
    publish(settings, redis, [frame("dev", i, x=float(i)) for i in range(10)])
    with running_writer(settings) as live:
        wait_for(lambda: live.frames == 10, 30, what="10 frames committed")
        wait_for(lambda: live.retention_passes >= 1, 30, what="a retention pass")
    upkeep = _upkeep(settings, ShiftedClock())
    while upkeep.step().dropped:
        pass
    with _conn(settings) as conn:
        days = partition_days(conn)
    assert min(days) == TODAY - timedelta(days=60), "clamped to the floor: nothing newer than 60 days dropped"


def test_a_long_query_on_readings_does_not_stop_commits_while_upkeep_wants_to_drop(
    settings: Settings, redis: Redis
) -> None:
    """Point 7: a dashboard query holding readings made inserts queue behind the DROP."""
    old = TODAY - timedelta(days=45)
    with _conn(settings) as conn:
        maintain(conn, TODAY, settings.writer.retention_days, settings.writer.partitions_ahead_days)
        ensure_partitions(conn, old, old)
        conn.execute("INSERT INTO current_state VALUES ('s', 'd', 'c', now(), 1, NULL, '', 'good', NULL)")
    dashboard = _conn(settings)
    try:
        dashboard.execute("BEGIN")
        dashboard.execute("SELECT count(*) FROM readings")  # holds ACCESS SHARE until it ends
        failed: list[BaseException] = []

        def upkeep() -> None:
            try:
                _upkeep(settings, ShiftedClock()).step()
            except psycopg.Error as exc:
                failed.append(exc)

        t = threading.Thread(target=upkeep)
        t.start()
        # this pass, not the writer's own upkeep, must be the one holding the retention lock
        # (one pass per schema at a time): wait until its DROP waits for the lock (or gave up)
        wait_for(lambda: failed or not t.is_alive() or _lock_waits(settings) > 0, 30, what="the DROP waiting")
        publish(settings, redis, [frame("dev", i, x=float(i)) for i in range(10)])
        with running_writer(settings) as live:
            wait_for(lambda: live.frames == 10, 20, what="commits while the long query runs")
        t.join(30)
        assert failed and isinstance(failed[0], psycopg.errors.LockNotAvailable), failed
    finally:
        dashboard.close()
    with _conn(settings) as conn:
        assert old in partition_days(conn), "the DROP gave up instead of queueing; the next pass retries"


def _lock_waits(settings: Settings) -> int:
    """Lock requests on this test schema's tables that are waiting (not granted)."""
    rows = pg_query(
        settings,
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
        " WHERE NOT l.granted AND c.relnamespace = current_schema()::regnamespace",
    )
    return int(rows[0][0])


def test_migrate_handles_a_retention_of_1100_days(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point 7: RETENTION_DAYS=1100 made `telemetry-admin migrate` fail with out of shared memory."""
    monkeypatch.setenv("TELEMETRY_POSTGRES__DSN", settings.postgres.dsn)
    monkeypatch.setenv("TELEMETRY_POSTGRES__SCHEMA_NAME", settings.postgres.schema_name)
    monkeypatch.setenv("TELEMETRY_WRITER__RETENTION_DAYS", "1100")
    assert admin_main(["migrate"]) == 0
    with _conn(settings) as conn:
        days = partition_days(conn)
    assert len(days) == 1100 + 1 + settings.writer.partitions_ahead_days
