"""PostgreSQL least privilege for runs: a login role that is only a member of telemetry_runs (migration
009) runs the detector and the run verbs, and can neither read readings_packed nor change readings."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import conninfo, sql
from redis import Redis

from common.schema import Channel, Frame
from common.settings import Settings
from runs.detector import Detector
from tests.conftest import settings_for
from tests.helpers import count_readings, running_writer, wait_for
from tests.integration.pipeline import publish
from tests.integration.test_admin_cli import admin
from writer.pg import connect_pg

pytestmark = pytest.mark.integration
RULE = {"name": "pull", "channel": "rpm", "start_above": 2000, "start_for_s": 1, "stop_below": 1500, "stop_for_s": 1}


@pytest.fixture
def runs_settings(settings: Settings) -> Iterator[Settings]:
    role = f"r_{settings.postgres.schema_name}"
    with psycopg.connect(settings.postgres.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE telemetry_runs").format(sql.Identifier(role)))
    dsn = conninfo.make_conninfo(settings.postgres.dsn, user=role)
    s = settings_for(settings.redis.url, dsn, settings.redis.namespace, settings.postgres.schema_name)
    yield s.model_copy(update={"runs": s.runs.model_validate({"rules": [RULE], "block_ms": 10})})
    with psycopg.connect(settings.postgres.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_runs_role_detects_and_summarises_and_can_do_nothing_else(
    settings: Settings, runs_settings: Settings, redis: Redis
) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    values = [900.0] * 3 + [3000.0] * 6 + [1000.0] * 6
    frames = [Frame("simulate", "dyno", t0 + timedelta(seconds=i / 2), t0, i, (Channel("rpm", v, "rpm"),))
              for i, v in enumerate(values)]  # fmt: skip
    with running_writer(settings):
        publish(settings, redis, frames)
        wait_for(lambda: count_readings(settings) == len(values), 30)
    with connect_pg(runs_settings.postgres) as conn:
        assert str(conn.execute("SELECT current_user").fetchone()[0]).startswith("r_")  # type: ignore[index]
        det = Detector(redis, conn, runs_settings.redis.names, runs_settings, "role-test")
        assert det.prepare(__import__("threading").Event())
        while det.once():
            pass
        wait_for(lambda: det.summarise_ready() or det.stats["runs_summarised"], 10, what="a summary")
        summary = conn.execute("SELECT summary FROM runs").fetchone()[0]  # type: ignore[index]
        assert summary["channels"][0]["count"] == 6 and summary["channels"][0]["max"] == 3000.0
        for statement in ("SELECT count(*) FROM readings_packed", "DELETE FROM runs", "DELETE FROM readings_packed",
                          "INSERT INTO readings_packed SELECT * FROM readings_packed", "DROP TABLE runs",
                          "UPDATE series SET channel = 'x'"):  # fmt: skip
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                conn.execute(statement)
    # the operator verbs work as this role too
    out = admin(runs_settings, "run", "start", "--name", "manual", "--device", "dyno", "--at", t0.isoformat())
    assert "'manual' started" in out
    assert "stopped after" in admin(
        runs_settings, "run", "stop", "manual", "--at", (t0 + timedelta(seconds=9)).isoformat()
    )
    assert "peak" not in admin(runs_settings, "run", "show", "manual")  # no power/torque: not a dyno run
