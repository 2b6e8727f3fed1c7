"""The PostgreSQL dashboard's SQL (deploy/grafana/sql), executed against pipeline data.

A real NMEA capture (ublox-neo-m9n-nmea) decoded by the producer's NmeaDecoder, its fix times
moved to the last minutes (one constant offset: the writer keeps a retention window), published
with a session ("run-7") and committed by a real writer, a run over it made with
``telemetry-admin run start|stop``; a second device's channel stops (stale).
Each SQL file runs as a login role that is only a member of telemetry_reader (migration 008),
with Grafana's macros expanded as Grafana does ($__timeFilter, multi-value $variables quoted).
The dashboard JSON must carry each file's text verbatim.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import conninfo, sql
from redis import Redis

from admin.data_dashboard import DASHBOARD, PANELS, VARIABLES, build, sql_text
from common.publish import Publisher, new_producer_id
from common.schema import Channel, Frame
from common.settings import Settings
from tests.conftest import REPO, env_for
from tests.helpers import count_readings, pg_query, running_writer, wait_for
from tests.integration.test_gps_nmea import expected_frames
from tests.producers.gps_captures import replay_bytes

pytestmark = pytest.mark.integration


def expand(text: str, conn: psycopg.Connection[Any], start: dt.datetime, end: dt.datetime, **values: list[str]) -> str:
    """Grafana's macros: ``$__timeFilter(col)`` and multi-value ``$name`` (quoted, comma-separated)."""

    def lit(v: object) -> str:
        return sql.Literal(v).as_string(conn)

    text = re.sub(r"\$__timeFilter\((\w+)\)", lambda m: f"{m.group(1)} BETWEEN {lit(start)} AND {lit(end)}", text)
    for name, vals in values.items():
        text = text.replace(f"${name}", ", ".join(lit(v) for v in vals))
    assert "$" not in text, text
    return text


@pytest.fixture
def reader_dsn(settings: Settings) -> Iterator[str]:
    role = f"r_{settings.postgres.schema_name}"
    with psycopg.connect(settings.postgres.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE telemetry_reader").format(sql.Identifier(role)))
    yield conninfo.make_conninfo(settings.postgres.dsn, user=role)
    with psycopg.connect(settings.postgres.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_dashboard_json_carries_the_sql_files() -> None:
    on_disk = json.loads(DASHBOARD.read_text())
    assert on_disk == build(), "run: python -m admin.data_dashboard"
    queries = [t["rawSql"] for p in on_disk["panels"] for t in p["targets"]]
    assert queries == [sql_text(f) for f, *_ in PANELS]
    assert [v["query"] for v in on_disk["templating"]["list"]] == [sql_text(f) for _, f in VARIABLES]
    provisioning = (DASHBOARD.parent.parent / "provisioning" / "datasources" / "postgres.yml").read_text()
    assert "uid: telemetry-pg" in provisioning and "$__file{/run/secrets/pg_grafana_password}" in provisioning


def test_every_dashboard_query_on_pipeline_data(
    settings: Settings, redis: Redis, shared_data: Path, reader_dsn: str
) -> None:
    frames = expected_frames(replay_bytes(shared_data, "ublox-neo-m9n-nmea"), "neo")
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    shift = now - dt.timedelta(minutes=5) - frames[0].observed_at
    frames = [replace(f, observed_at=f.observed_at + shift, received_at=now, session="run-7") for f in frames]
    other = [Frame("simulate", "pump-1", now, now, 0, (Channel("pressure", 2.5, "bar"),))]
    pub = Publisher(redis, settings.redis.names, new_producer_id("dash"))
    pub.stamp(frames + other)
    pub.send()
    rows = sum(len(f.channels) for f in frames) + 1
    with running_writer(settings):
        wait_for(lambda: count_readings(settings) == rows, 30, what="pipeline data committed")
    pg_query(settings, "INSERT INTO staleness_rules VALUES (1, 'simulate', '%', 0.001, NULL, 0) RETURNING 1")  # stale
    for verb in (["start", "--name", "drive", "--device", "neo", "--at", frames[0].observed_at.isoformat()],
                 ["stop", "drive", "--at", frames[-1].observed_at.isoformat()]):  # fmt: skip
        proc = subprocess.run([sys.executable, "-m", "admin.cli", "run", *verb], env=env_for(settings), cwd=REPO,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert proc.returncode == 0, proc.stderr

    fixes = [f for f in frames if {"latitude", "longitude"} <= {c.name for c in f.channels if c.value is not None}]
    start, end = now - dt.timedelta(hours=1), now + dt.timedelta(minutes=1)
    devices = ["neo", "pump-1"]
    with psycopg.connect(reader_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(settings.postgres.schema_name)))

        def run(file: str, **values: list[str]) -> list[tuple[Any, ...]]:
            return conn.execute(expand(sql_text(file), conn, start, end, **values)).fetchall()  # type: ignore[arg-type]

        assert [r[0] for r in run("devices.sql")] == devices
        assert {"latitude", "longitude", "pressure"} <= {r[0] for r in run("channels.sql", device=devices)}

        state = {(r[0], r[1]): r for r in run("current_state.sql", device=devices)}
        last = frames[-1]
        lat = next(c.value for c in last.channels if c.name == "latitude")
        assert state[("neo", "latitude")][2] == str(lat) and state[("neo", "latitude")][7] == last.observed_at
        assert state[("pump-1", "pressure")][5] == "STALE" and state[("pump-1", "pressure")][2] == "2.5"
        assert state[("neo", "latitude")][5] == "fresh"  # no rule matches neo: never stale

        series = run("channels_over_time.sql", device=["neo"], channel=["latitude"])
        want = [(f.observed_at, c.value) for f in frames for c in f.channels if c.name == "latitude"]
        want = [w for w in want if w[1] is not None]
        assert [(r[0], r[2]) for r in series] == want and {r[1] for r in series} == {"neo latitude"}

        track = run("gps_track.sql", device=devices)
        assert len(track) == len(fixes) > 50
        first = {c.name: c.value for c in fixes[0].channels}
        assert track[0] == (fixes[0].observed_at, "neo", first["latitude"], first["longitude"])

        runs = run("recent_runs.sql")
        assert runs == [
            ("drive", "run", "neo", frames[0].observed_at, frames[-1].observed_at, "closed", "manual",
             (frames[-1].observed_at - frames[0].observed_at).total_seconds()),
        ]  # fmt: skip


def test_the_deployed_grafana_role_reads_and_cannot_write(pg_server_factory: Any, tmp_path: Path) -> None:
    """deploy/postgres/10-roles.sh with a grafana password file, then migrate: the datasource's login
    (password checked, search_path set) runs the dashboard SQL and is refused everything else."""
    import os
    import secrets
    import subprocess

    from admin.migrate import migrate

    server = pg_server_factory(host_auth="scram-sha-256")
    pw = {role: f"{role}'pw\\ " + secrets.token_hex(6) for role in ("owner", "writer", "grafana")}
    env = {**os.environ, "PGHOST": str(server.root), "PGPORT": str(server.port), "POSTGRES_USER": "postgres"}
    for role, value in pw.items():
        (tmp_path / role).write_text(value + "\n")
        (tmp_path / role).chmod(0o644)
        env[f"PG_{role.upper()}_PASSWORD_FILE"] = str(tmp_path / role)
    script = REPO / "deploy" / "postgres" / "10-roles.sh"
    run = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    base = {"host": "127.0.0.1", "port": server.port, "dbname": "telemetry"}
    owner = conninfo.make_conninfo(**base, user="telemetry_owner", password=pw["owner"])
    with psycopg.connect(owner, autocommit=True) as conn:
        migrate(conn, "telemetry")
    grafana = conninfo.make_conninfo(**base, user="telemetry_grafana", password=pw["grafana"])
    now = dt.datetime.now(dt.UTC)
    with psycopg.connect(grafana, autocommit=True) as conn:
        assert conn.execute("SHOW search_path").fetchone() == ("telemetry",)
        for file, *_ in PANELS:
            conn.execute(expand(sql_text(file), conn, now, now, device=["x"], channel=["y"])).fetchall()  # type: ignore[arg-type]
        for denied in ("INSERT INTO current_state (source, device, channel, observed_at, unit, quality)"
                       " VALUES ('a', 'b', 'c', now(), '', 'good')", "SELECT 1 FROM readings_packed",
                       "SELECT 1 FROM staleness_rules", "DELETE FROM current_state"):  # fmt: skip
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(denied)  # type: ignore[arg-type]
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(conninfo.make_conninfo(**base, user="telemetry_grafana", password="wrong")).close()
