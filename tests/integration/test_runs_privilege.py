"""Least privilege of the run detector's credentials, used as the detector and as an attacker would.

Redis: the ACL user ``runs`` of deploy/redis/users.acl, rendered by render-acl.sh, on a private
redis-server (``acl_redis``). PostgreSQL: the login role ``telemetry_run_detector`` that
deploy/postgres/10-roles.sh creates and migration 011 grants to, on a private cluster checking passwords
(``deployed_roles``; roles are cluster-wide, so never on the shared server). ``telemetry-runs``
runs as a real process with exactly these two credentials, as docker-compose.yml runs it.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from redis.exceptions import NoPermissionError, ResponseError

from admin.migrate import grant_roles, migrate
from common.publish import Publisher, new_producer_id
from common.redis_client import connect_redis
from common.schema import Channel, Frame, Priority
from common.settings import Settings
from common.streams import RUNS_GROUP, WRITER_GROUP
from tests.conftest import REPO
from tests.helpers import running_writer, wait_for
from tests.integration.pipeline import stop_process
from tests.integration.test_least_privilege import as_user, deployed_roles, user_env
from tests.integration.test_redis_acl import acl_redis, client

pytestmark = pytest.mark.integration

__all__ = ["acl_redis", "deployed_roles"]

RULE = {"name": "pull", "channel": "rpm", "start_above": 2000, "start_for_s": 1, "stop_below": 1500, "stop_for_s": 1}


def pull(t0: datetime) -> list[Frame]:
    """SYNTHETIC: rpm 900 x3, 3000 x6, 1000 x6 at 2 Hz on device "dyno"."""
    values = [900.0] * 3 + [3000.0] * 6 + [1000.0] * 6
    return [Frame("simulate", "dyno", t0 + timedelta(seconds=i / 2), t0, i, (Channel("rpm", v, "rpm"),))
            for i, v in enumerate(values)]  # fmt: skip


def pg_as(settings: Settings, dsn: str) -> Settings:
    return settings.model_copy(
        update={"postgres": settings.postgres.model_copy(update={"dsn": dsn, "schema_name": "telemetry"})}
    )


def test_the_detector_runs_end_to_end_with_only_its_credentials(
    settings: Settings, acl_redis: Any, deployed_roles: dict[str, Any]
) -> None:
    """A pull published by the producer user opens and closes a run; the summary follows the writer."""
    server, pw, folder = acl_redis
    names = settings.redis.names
    pg_dsn = psycopg.conninfo.conninfo_to_dict(deployed_roles["runs"])
    pg_dsn.pop("password")  # from the file, as compose passes it
    env = user_env(
        server, folder, "runs", names.namespace,
        TELEMETRY_POSTGRES__DSN=psycopg.conninfo.make_conninfo(**pg_dsn),  # type: ignore[arg-type]
        TELEMETRY_POSTGRES__PASSWORD_FILE=str(deployed_roles["files"]["runs"]),
        TELEMETRY_POSTGRES__SCHEMA_NAME="telemetry",
        TELEMETRY_RUNS__RULES=json.dumps([RULE]),
        TELEMETRY_RUNS__BLOCK_MS="100",
        TELEMETRY_LOG_LEVEL="DEBUG",
    )  # fmt: skip
    producer = as_user(settings, server.url, "producer", pw["producer"])
    writer = pg_as(as_user(settings, server.url, "writer", pw["writer"]), deployed_roles["writer"])
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    detector = subprocess.Popen([sys.executable, "-m", "runs"], env=env, cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)  # fmt: skip
    logs = ""

    def rows() -> list[tuple[Any, ...]]:
        with psycopg.connect(deployed_roles["owner"], autocommit=True) as conn:
            conn.execute("SET search_path TO telemetry")
            return conn.execute("SELECT status, origin, started_at, ended_at, summary FROM runs").fetchall()

    try:
        admin = client(server, "admin", pw["admin"])
        normal = names.stream(Priority.NORMAL)

        def has_group() -> bool:
            assert detector.poll() is None, detector.communicate()[0][-3000:]
            try:
                return any(g["name"] == RUNS_GROUP.encode() for g in admin.xinfo_groups(normal))
            except ResponseError:  # no stream yet
                return False

        wait_for(has_group, 30, what="the runs group created by the detector")
        publisher = Publisher(connect_redis(producer.redis), names, new_producer_id("dyno"))
        publisher.stamp(pull(t0))
        assert publisher.send() == 15
        wait_for(lambda: [r[0] for r in rows()] == ["closed"], 30, what="a run opened and closed by the detector")
        ((_, origin, started, ended, summary),) = rows()
        assert (origin, started, ended) == ("detector", t0 + timedelta(seconds=1.5), t0 + timedelta(seconds=4.5))
        assert summary is None  # the writer group has not acknowledged the closing frame yet
        with running_writer(writer) as live:  # the writer's own credentials, on the same cluster
            wait_for(lambda: live.frames == 15, 30, what="frames committed by the writer role")
            wait_for(lambda: rows()[0][4] is not None, 30, what="the summary, read through the readings view")
        summary = rows()[0][4]
        assert summary["channels"][0]["count"] == 6 and summary["channels"][0]["max"] == 3000.0
        groups = {g["name"]: g for g in admin.xinfo_groups(normal)}
        assert groups[RUNS_GROUP.encode()]["pending"] == 0  # everything it read was acked
    finally:
        logs = stop_process(detector, signal.SIGTERM)
    assert detector.returncode == 0, logs[-3000:]
    assert "NOPERM" not in logs and "InsufficientPrivilege" not in logs and "Traceback" not in logs, logs[-3000:]
    assert not [v for v in (pw["runs"], deployed_roles["passwords"]["runs"]) if v in logs]


def test_stolen_runs_redis_credential_cannot_write_delete_or_read_dead_letters(
    settings: Settings, acl_redis: Any
) -> None:
    server, pw, _ = acl_redis
    names = settings.redis.names
    normal, dead = names.stream(Priority.NORMAL), names.deadletter
    producer = client(server, "producer", pw["producer"])
    writer = client(server, "writer", pw["writer"])
    admin = client(server, "admin", pw["admin"])
    first = producer.xadd(normal, {"v": "1"})
    writer.xgroup_create(normal, WRITER_GROUP, id="0")
    admin.xadd(dead, {"stream": normal, "error": "kept"})
    thief = client(server, "runs", pw["runs"])
    # What the detector does is allowed (and only on the priority streams).
    thief.xgroup_create(normal, RUNS_GROUP, id="0")
    assert thief.xreadgroup(RUNS_GROUP, "c", {normal: ">"})
    assert thief.xautoclaim(normal, RUNS_GROUP, "c", 0, "0-0")[1]
    assert thief.xpending(normal, WRITER_GROUP)["pending"] == 0 and len(thief.xinfo_groups(normal)) == 2
    assert thief.xack(normal, RUNS_GROUP, first) == 1
    other = f"{{{names.namespace}}}:other"
    forbidden = [
        ("XADD", normal, "*", "v", "forged"),
        ("XADD", names.stream(Priority.CRITICAL), "*", "v", "forged"),
        ("XTRIM", normal, "MAXLEN", "0"),
        ("XDEL", normal, first),
        ("DEL", normal),
        ("UNLINK", normal),
        ("RENAME", normal, other),
        ("XSETID", normal, "99999999999999-0"),
        ("XGROUP", "DESTROY", normal, WRITER_GROUP),
        ("XGROUP", "SETID", normal, WRITER_GROUP, "$"),
        ("XGROUP", "DELCONSUMER", normal, WRITER_GROUP, "w"),
        ("XCLAIM", normal, WRITER_GROUP, "c", "0", first),
        ("XRANGE", dead, "-", "+"),
        ("XREVRANGE", dead, "+", "-"),
        ("XREAD", "STREAMS", dead, "0"),
        ("XLEN", dead),
        ("XINFO", "STREAM", dead),
        ("XGROUP", "CREATE", dead, "audit", "0"),
        ("XREADGROUP", "GROUP", "audit", "c", "STREAMS", dead, ">"),
        ("XADD", dead, "*", "f", "v"),
        ("XTRIM", dead, "MAXLEN", "0"),
        ("DEL", dead),
        ("ZRANGEBYLEX", names.deadletter_index, "-", "+"),
        ("XGROUP", "CREATE", other, "audit", "0", "MKSTREAM"),
        ("XRANGE", normal, "-", "+"),  # not used by the detector: reads go through its group only
        ("XINFO", "STREAM", normal),
        ("SET", other, "1"),
        ("GET", "rq:queues"),
        ("KEYS", "*"),
        ("SCAN", "0"),
        ("FLUSHALL",),
        ("CONFIG", "GET", "*"),
        ("ACL", "LIST"),
        ("EVAL", "return redis.call('XADD', KEYS[1], '*', 'a', 'b')", "1", normal),
        ("MULTI",),
        ("CLIENT", "KILL", "TYPE", "normal"),
        ("SUBSCRIBE", "x"),
        ("SHUTDOWN", "NOSAVE"),
    ]
    for command in forbidden:
        with pytest.raises(NoPermissionError):
            thief.execute_command(*command)
    assert admin.xlen(normal) == 1 and admin.xlen(dead) == 1  # nothing written, trimmed or deleted
    assert {g["name"] for g in admin.xinfo_groups(normal)} == {WRITER_GROUP.encode(), RUNS_GROUP.encode()}
    writer_group = next(g for g in admin.xinfo_groups(normal) if g["name"] == WRITER_GROUP.encode())
    assert writer_group["last-delivered-id"] == b"0-0"  # SETID refused: the writer's position is unchanged
    # Documented limitation (users.acl, README): ACLs cannot filter a group name, so the runs user can
    # take entries through the writer's group and ack them unwritten. The writer's sequence-gap
    # metric (producer_progress) counts frames lost that way.
    assert thief.xreadgroup(WRITER_GROUP, "thief", {normal: ">"})
    assert thief.xack(normal, WRITER_GROUP, first) == 1


PG_DENIED = [
    "INSERT INTO readings_packed (observed_at, received_at, seq, device_id, producer_id, series, num_values)"
    " VALUES (now(), now(), 1, 1, 1, '{1}', '{1.0}')",
    "DELETE FROM readings_packed",
    "UPDATE readings_packed SET seq = 0",
    "TRUNCATE readings_packed",
    "SELECT count(*) FROM readings_packed",
    "INSERT INTO readings (observed_at, device, channel) VALUES (now(), 'x', 'y')",
    "DELETE FROM readings",
    "UPDATE readings SET value = 0",
    "DROP TABLE runs",
    "DROP TABLE readings_packed",
    "DROP VIEW readings",
    "ALTER TABLE runs ADD COLUMN x int",
    "ALTER TABLE readings_packed ADD COLUMN x int",
    "TRUNCATE runs",
    "DELETE FROM runs",
    "DELETE FROM run_detector_state",
    "DELETE FROM run_detector_position",
    "UPDATE producer_progress SET frames = max_seq",
    "INSERT INTO producer_progress (producer, source, frames, max_seq) VALUES ('p/2', 'obd', 5, 5)",
    "DELETE FROM producer_progress",
    "SELECT * FROM producer_progress",
    "DELETE FROM frame_keys",
    "SELECT * FROM series",
    "SELECT * FROM devices",
    "SELECT * FROM schema_migrations",
    "UPDATE retention_policy SET min_retention_days = 1",
    "CREATE TABLE evil (x int)",
    "CREATE TEMP TABLE evil (x int)",
    "CREATE SCHEMA evil",
    "SELECT ensure_partitions(current_date, current_date + 1)",
    "SELECT drop_partitions_before(current_date - 1)",
    "SELECT * FROM other.secret",
    "UPDATE runs SET name = 'renamed'",
    "UPDATE runs SET devices = '{x}', started_at = now()",
    "UPDATE runs SET origin = 'manual'",
    "INSERT INTO run_marks (run_id, at, label) VALUES (1, now(), 'x')",
    "DELETE FROM run_marks",
    "SELECT * FROM run_marks",
    "SET ROLE telemetry_runs",
    "SET ROLE telemetry_owner",
    "SET ROLE telemetry_writer",
]


def test_stolen_runs_pg_credential_can_only_read_readings_and_write_runs(deployed_roles: dict[str, Any]) -> None:
    with psycopg.connect(deployed_roles["owner"], autocommit=True) as conn:
        conn.execute("CREATE SCHEMA other")  # another deployment's data in the same database
        conn.execute("CREATE TABLE other.secret AS SELECT 'x' AS v")
        conn.execute("SET search_path TO telemetry")
        conn.execute("INSERT INTO producer_progress (producer, source, frames, max_seq) VALUES ('p/1', 'obd', 7, 10)")
    with psycopg.connect(deployed_roles["runs"], autocommit=True) as conn:
        conn.execute("SET search_path TO telemetry")
        assert conn.execute("SELECT current_user").fetchone() == ("telemetry_run_detector",)
        assert conn.execute("SELECT count(*) FROM readings").fetchone() == (0,)  # what it needs
        assert conn.execute("SELECT pg_try_advisory_lock(1)").fetchone() == (True,)
        for statement in PG_DENIED:
            with pytest.raises(psycopg.Error) as err:
                conn.execute(statement)
            assert err.value.sqlstate in ("42501", "55000", "42809"), (statement, err.value.sqlstate, str(err.value))
    with psycopg.connect(deployed_roles["owner"], autocommit=True) as conn:
        conn.execute("SET search_path TO telemetry")
        assert conn.execute("SELECT frames, max_seq FROM producer_progress").fetchall() == [(7, 10)]
    dsn = psycopg.conninfo.conninfo_to_dict(deployed_roles["runs"])
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(**{**dsn, "password": "wrong"}, connect_timeout=5).close()  # type: ignore[arg-type]


def test_without_a_runs_password_the_role_exists_without_login_and_migrate_still_works(
    pg_server_factory: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """10-roles.sh on a box without pg_runs_password: telemetry_run_detector is NOLOGIN, so the
    migration (as the owner, who cannot create roles) still grants to it, and nobody logs in as it.
    On a cluster initialised before the role existed, migrate goes on without its grants (the writer
    keeps writing), says how to create it, and the next migrate after that grants them."""
    server = pg_server_factory(host_auth="scram-sha-256")
    pw = {"owner": secrets.token_hex(8), "writer": secrets.token_hex(8)}
    for role, value in pw.items():
        (tmp_path / f"pg_{role}_password").write_text(value)
        (tmp_path / f"pg_{role}_password").chmod(0o644)
    env = {**os.environ, "PGHOST": str(server.root), "PGPORT": str(server.port), "POSTGRES_USER": "postgres",
           "PG_OWNER_PASSWORD_FILE": str(tmp_path / "pg_owner_password"),
           "PG_WRITER_PASSWORD_FILE": str(tmp_path / "pg_writer_password"),
           "PG_RUNS_PASSWORD_FILE": str(tmp_path / "absent")}  # fmt: skip
    script = ["bash", str(REPO / "deploy" / "postgres" / "10-roles.sh")]
    run = subprocess.run(script, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "telemetry_run_detector created without LOGIN" in run.stderr
    owner = psycopg.conninfo.make_conninfo(host="127.0.0.1", port=server.port, dbname="telemetry",
                                           user="telemetry_owner", password=pw["owner"])  # fmt: skip
    with psycopg.connect(owner, autocommit=True) as conn:
        assert migrate(conn, "telemetry")
        conn.execute("SET search_path TO telemetry")
        assert conn.execute(
            "SELECT has_table_privilege('telemetry_run_detector', 'runs', 'INSERT'),"
            " has_table_privilege('telemetry_run_detector', 'run_marks', 'INSERT'),"
            " rolcanlogin FROM pg_roles WHERE rolname = 'telemetry_run_detector'"
        ).fetchone() == (True, False, False)
        conn.execute("CREATE SCHEMA old")  # a second deployment migrated after the role was dropped
    superuser = psycopg.conninfo.make_conninfo(host=str(server.root), port=server.port, dbname="telemetry",
                                               user="postgres")  # fmt: skip
    with psycopg.connect(superuser, autocommit=True) as conn:
        conn.execute("DROP OWNED BY telemetry_run_detector")
        conn.execute("DROP ROLE telemetry_run_detector")
    with psycopg.connect(owner, autocommit=True) as conn:
        with caplog.at_level(logging.WARNING, logger="admin.migrate"):
            assert migrate(conn, "old")  # every numbered migration applied: nothing stops the writer
        warned = [m for m in caplog.messages if "telemetry_run_detector does not exist" in m]
        assert warned and "10-roles.sh" in warned[0]
        assert grant_roles_in(conn, "old")["telemetry_run_detector"] is False
    with psycopg.connect(superuser, autocommit=True) as conn:
        conn.execute("CREATE ROLE telemetry_run_detector NOLOGIN")
    with psycopg.connect(owner, autocommit=True) as conn:
        assert migrate(conn, "old") == []  # nothing numbered left; the role's rights granted again
        conn.execute("SET search_path TO old")
        assert conn.execute(
            "SELECT has_table_privilege('telemetry_run_detector', 'runs', 'INSERT'),"
            " has_table_privilege('telemetry_run_detector', 'run_marks', 'INSERT')"
        ).fetchone() == (True, False)


def grant_roles_in(conn: psycopg.Connection[Any], schema: str) -> dict[str, bool]:
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
        return grant_roles(conn)
