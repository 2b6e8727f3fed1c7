"""The run detector through a PostgreSQL outage (a private cluster, stopped and started): it reconnects,
re-reads what it had not committed, and the run ends up with exactly the boundaries the rule gives."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

import psycopg
import pytest
from redis import Redis

from runs.detector import run_detector
from tests.helpers import wait_for
from tests.integration.conftest import PrivatePg, pg_server_factory, private_pg  # noqa: F401
from tests.integration.pipeline import publish
from tests.runs.test_detector_restart import COAST, PULL, RULE, T0, _frames

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _runs(pg: PrivatePg) -> list[tuple[object, ...]]:
    try:
        with psycopg.connect(pg.settings.postgres.dsn, autocommit=True) as conn:
            conn.execute(f"SET search_path TO {pg.settings.postgres.schema_name}")
            return conn.execute("SELECT name, status, started_at, ended_at FROM runs").fetchall()
    except psycopg.OperationalError:
        return []


def test_postgres_outage_mid_run(private_pg: PrivatePg, redis: Redis, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    caplog.set_level(logging.WARNING, logger="runs.detector")
    s = private_pg.settings
    s = s.model_copy(update={"runs": s.runs.model_validate({"rules": [RULE], "block_ms": 50})})
    stop = threading.Event()
    result: dict[str, object] = {}
    thread = threading.Thread(target=lambda: result.update(stats=run_detector(s, stop, "outage")), daemon=True)
    thread.start()
    try:
        publish(s, redis, _frames(PULL))
        wait_for(lambda: [r for r in _runs(private_pg) if r[1] == "open"], 20, what="the run opened")
        # the coast-down arrives while PostgreSQL is down: the batch that ends the run cannot commit
        private_pg.server.stop()
        try:
            publish(s, redis, _frames(COAST, first=len(PULL)))
            wait_for(lambda: "OperationalError" in caplog.text, 20, what="the detector meeting the outage")
            time.sleep(1)
        finally:
            private_pg.server.start()
        rows = wait_for(lambda: [r for r in _runs(private_pg) if r[1] == "closed"], 30, what="the run closed")
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert rows == [("pull", "closed", T0 + timedelta(seconds=2), T0 + timedelta(seconds=5))]
    assert len(_runs(private_pg)) == 1
    assert redis.xpending(s.redis.names.streams[2], "runs")["pending"] == 0
