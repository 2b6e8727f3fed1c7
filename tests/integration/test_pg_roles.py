"""PostgreSQL least privilege: the writer role ingests end to end and can do nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import conninfo, sql
from redis import Redis

from common.settings import Settings
from tests.conftest import settings_for
from tests.helpers import count_readings, running_writer, wait_for
from tests.integration.pipeline import frame, publish

pytestmark = pytest.mark.integration


@pytest.fixture
def writer_settings(settings: Settings) -> Iterator[Settings]:
    """Settings whose PostgreSQL user is a fresh login role that is only a member of telemetry_writer."""
    role = f"w_{settings.postgres.schema_name}"
    with psycopg.connect(settings.postgres.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE telemetry_writer").format(sql.Identifier(role)))
    dsn = conninfo.make_conninfo(settings.postgres.dsn, user=role)
    yield settings_for(settings.redis.url, dsn, settings.redis.namespace, settings.postgres.schema_name)
    with psycopg.connect(settings.postgres.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_writer_role_ingests_and_maintains_partitions(
    settings: Settings, writer_settings: Settings, redis: Redis
) -> None:
    s = writer_settings
    with psycopg.connect(s.postgres.dsn) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0].startswith("w_")  # type: ignore[index]
    soon = datetime.now(UTC) + timedelta(days=2)  # needs the partitions the writer creates ahead
    publish(s, redis, [frame("dev", i) for i in range(50)] + [frame("dev", 50, observed_at=soon)])
    with running_writer(s) as live:
        wait_for(lambda: live.frames == 51, 30, what="frames committed by the writer role")
        assert not live.dead_letters
    assert count_readings(settings) == 51  # counted as the owner: the writer role cannot read readings


DENIED = [
    # readings is a view over readings_packed since migration 004: both are checked.
    "DELETE FROM readings_packed",
    "UPDATE readings_packed SET seq = 0",
    "TRUNCATE readings_packed",
    "SELECT count(*) FROM readings_packed",
    "SELECT count(*) FROM readings",
    "DROP TABLE readings_packed",
    "ALTER TABLE readings_packed ADD COLUMN x int",
    "SELECT * FROM series",
    "DELETE FROM devices",
    "UPDATE producers SET producer = 'x'",
    "INSERT INTO sessions (session) VALUES ('x')",
    "CREATE TABLE evil (x int)",
    "DELETE FROM frame_keys",
    "DELETE FROM retention_state",
    "DELETE FROM producer_progress",
    "SELECT * FROM schema_migrations",
    "UPDATE retention_policy SET min_retention_days = 1",
    "CREATE TABLE readings_p20990101 PARTITION OF readings_packed"
    " FOR VALUES FROM ('2099-01-01 00:00:00+00') TO ('2099-01-02 00:00:00+00')",
    "SELECT drop_partitions_before(current_date + 1)",
    "SELECT ensure_partitions('2000-01-01', '2099-01-01')",
]


@pytest.mark.parametrize("statement", DENIED)
def test_writer_role_cannot(writer_settings: Settings, statement: str) -> None:
    with psycopg.connect(writer_settings.postgres.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(writer_settings.postgres.schema_name)))
        with pytest.raises(psycopg.Error) as err:
            conn.execute(statement)
        assert err.value.sqlstate in ("42501", "P0001"), (statement, err.value.sqlstate, str(err.value))


VIEW_DENIED = [
    "DELETE FROM readings",
    "UPDATE readings SET value = 0",
    "TRUNCATE readings",
    "DROP TABLE readings",
    "DROP VIEW readings",
    "ALTER TABLE readings ADD COLUMN x int",
]


@pytest.mark.parametrize("statement", VIEW_DENIED)
def test_writer_role_cannot_change_the_readings_view(writer_settings: Settings, statement: str) -> None:
    """Refused for want of privilege, or because the view is not a table (42809) nor updatable (55000)."""
    with psycopg.connect(writer_settings.postgres.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(writer_settings.postgres.schema_name)))
        with pytest.raises(psycopg.Error) as err:
            conn.execute(statement)
        assert err.value.sqlstate in ("42501", "42809", "55000"), (statement, err.value.sqlstate, str(err.value))


def test_retention_floor_is_set_by_the_owner(settings: Settings) -> None:
    with psycopg.connect(settings.postgres.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(settings.postgres.schema_name)))
        conn.execute("UPDATE retention_policy SET min_retention_days = 30")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT drop_partitions_before(current_date - 10)")
        assert conn.execute("SELECT drop_partitions_before(current_date - 30)").fetchone() == ([],)


def test_writer_role_runs_partition_upkeep_and_retention(writer_settings: Settings) -> None:
    from common.clock import SystemClock
    from writer.pg import connect_pg
    from writer.stats import WriterStats
    from writer.upkeep import PartitionUpkeep

    s = writer_settings
    report = PartitionUpkeep(s, WriterStats(), SystemClock(), lambda: connect_pg(s.postgres)).step()
    assert report.ran and report.plan is not None and report.plan.refusal is None
