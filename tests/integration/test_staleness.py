"""Staleness end to end: a simulated device (synthetic frames) stops and resumes while a real writer
commits into PostgreSQL; ``current_state_status`` (migration 008), the writer's
``telemetry_stale_channels`` metric and the status view follow.

Each channel's check is made right after a fresh arrival (rpm's last_seen_at moved) or waited
for, so the outcome does not depend on how fast this machine is: the timeout (2 s) only has to
be longer than one query.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from prometheus_client import generate_latest
from redis import Redis
from rich.console import Console

from admin.status import LazyPg, add_rates, render, sample
from common.errors import ParseError
from common.schema import Channel, Frame, Quality
from common.settings import Settings, StalenessSettings
from tests.helpers import pg_query, running_producer, running_writer, wait_for
from writer.metrics import WriterTelemetry
from writer.pg import connect_pg
from writer.staleness import store_rules

pytestmark = pytest.mark.integration


class Device:
    """A synthetic device: rpm (good) and afr (no_data, null) in every frame; temp only in the
    first frame, or in every frame once ``with_temp`` is set; nothing while ``running`` is clear."""

    source = "simulate"
    device = "stale-dev"
    exhausted = False

    def __init__(self) -> None:
        self.running = threading.Event()
        self.running.set()
        self.with_temp = False
        self.n = 0

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def read(self, timeout: float) -> Sequence[Frame | ParseError]:
        time.sleep(min(timeout, 0.05))
        if not self.running.is_set():
            return []
        self.n += 1
        now = datetime.now(UTC)
        channels = [Channel("rpm", 1000.0 + self.n, "rpm"), Channel("afr", None, "afr", Quality.NO_DATA)]
        if self.with_temp or self.n == 1:
            channels.append(Channel("temp", 20.5, "degC"))
        return [Frame("simulate", self.device, now, now, self.n, tuple(channels))]


def store(settings: Settings, rules: StalenessSettings) -> int:
    """What ``telemetry-admin migrate`` does with TELEMETRY_STALENESS__RULES (as the owner)."""
    schema = psycopg.sql.Identifier(settings.postgres.schema_name)
    with psycopg.connect(settings.postgres.dsn, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("SET search_path TO {}").format(schema))
        return store_rules(conn, rules)


def status(settings: Settings) -> dict[str, dict[str, Any]]:
    rows = pg_query(
        settings,
        "SELECT channel, stale, last_seen_at, last_good_at, observed_at, quality, stale_after_s, interval_s"
        " FROM current_state_status WHERE device = 'stale-dev'",
    )
    keys = ("stale", "last_seen_at", "last_good_at", "observed_at", "quality", "stale_after_s", "interval_s")
    return {r[0]: dict(zip(keys, r[1:], strict=True)) for r in rows}


def after_fresh_arrival(settings: Settings) -> dict[str, dict[str, Any]]:
    """The status read just after rpm arrived again (so an arriving channel cannot have timed out)."""
    before = status(settings).get("rpm", {}).get("last_seen_at")
    wait_for(lambda: status(settings).get("rpm", {}).get("last_seen_at") != before, 30, what="a new rpm arrival")
    return status(settings)


def stale_metric(settings: Settings) -> float | None:
    wtel = WriterTelemetry(settings)
    try:
        text = generate_latest(wtel.registry).decode()
    finally:
        wtel.close()
    for line in text.splitlines():
        if line.startswith("telemetry_stale_channels{") and 'device="stale-dev"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def test_a_device_stops_and_resumes(settings: Settings, redis: Redis) -> None:
    rules = StalenessSettings.model_validate({"rules": [{"source": "simulate", "timeout": 2}]})
    assert store(settings, rules) == 1
    dev = Device()
    with running_writer(settings), running_producer(dev, redis, settings, "stale-test", read_timeout=0.05):
        wait_for(lambda: "temp" in status(settings), 30, what="first frame committed")
        # temp came once and is absent since: stale; rpm and the no_data afr keep arriving: not stale.
        wait_for(lambda: status(settings)["temp"]["stale"], 30, what="temp stale")
        now = after_fresh_arrival(settings)
        assert now["temp"]["stale"] and not now["rpm"]["stale"] and not now["afr"]["stale"]
        assert now["afr"]["quality"] == "no_data" and now["afr"]["last_good_at"] is None  # arrives, never good
        assert now["rpm"]["last_good_at"] == now["rpm"]["observed_at"]
        assert now["temp"]["stale_after_s"] == 2.0
        assert stale_metric(settings) == 1

        dev.running.clear()  # the device stops
        wait_for(lambda: all(r["stale"] for r in status(settings).values()), 30, what="every channel stale")
        stopped = status(settings)
        assert stopped["rpm"]["last_good_at"] == stopped["rpm"]["observed_at"]  # time of its last good value
        assert stale_metric(settings) == 3
        pg = LazyPg(lambda: connect_pg(settings.postgres))
        data = add_rates(None, sample(redis, settings.redis.names, pg))
        assert pg.conn is not None
        pg.conn.close()
        console = Console(record=True, width=220, file=io.StringIO())
        console.print(render(data))
        text = console.export_text()
        assert "stale channels" in text and "STALE channel" in text
        assert {r["channel"] for r in data["producers"]["stale"]} == {"rpm", "afr", "temp"}

        dev.with_temp = True
        dev.running.set()  # it resumes, temp included
        wait_for(lambda: not any(r["stale"] for r in status(settings).values()), 30, what="stale cleared")
        assert stale_metric(settings) == 0


def test_auto_timeout_is_a_multiple_of_the_observed_interval(settings: Settings, redis: Redis) -> None:
    rules = StalenessSettings.model_validate({"rules": [{"timeout": "auto"}], "auto_factor": 4, "auto_min_s": 0.001})
    store(settings, rules)
    dev = Device()
    with running_writer(settings), running_producer(dev, redis, settings, "auto-test", read_timeout=0.05):
        wait_for(lambda: status(settings).get("rpm", {}).get("interval_s") is not None, 30, what="two arrivals")
    now = status(settings)
    assert now["rpm"]["stale_after_s"] == pytest.approx(4 * now["rpm"]["interval_s"])
    assert now["temp"]["interval_s"] is None and now["temp"]["stale_after_s"] is None  # seen once: never stale


def test_migrate_stores_the_rules_from_the_settings(settings: Settings) -> None:
    import json
    import subprocess
    import sys

    from tests.conftest import REPO, env_for

    env = env_for(settings)
    rules = [{"source": "obd", "channel": "vin", "timeout": "never"}, {"source": "gps_*", "timeout": 5}, {}]
    env["TELEMETRY_STALENESS__RULES"] = json.dumps(rules)
    env["TELEMETRY_STALENESS__AUTO_FACTOR"] = "2.5"
    proc = subprocess.run(
        [sys.executable, "-m", "admin.cli", "migrate"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert pg_query(settings, "SELECT * FROM staleness_rules ORDER BY position") == [
        (1, "obd", "vin", None, None, 5.0),
        (2, "gps\\_%", "%", 5.0, None, 5.0),
        (3, "%", "%", None, 2.5, 5.0),
    ]
