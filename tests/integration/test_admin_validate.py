"""``telemetry-admin validate`` as an operator runs it, against real servers.

PostgreSQL roles are made on a private cluster (roles are cluster-wide: never on the shared
server). Redis ACL users come from deploy/redis/users.acl rendered on a private redis-server
(the ``acl_redis`` fixture). Each case checks the exit code and the line that names the problem.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import conninfo, sql
from redis import Redis
from redis.exceptions import ResponseError

from admin.migrate import migrate
from common.settings import Settings
from tests.conftest import REPO, env_for
from tests.integration.servers import PgServer
from tests.integration.test_least_privilege import user_env
from tests.integration.test_redis_acl import acl_redis

pytestmark = pytest.mark.integration
__all__ = ["acl_redis"]


def validate(env: dict[str, str], *args: str) -> tuple[int, dict[str, str]]:
    """Exit code and {check name: its line} (the last line is the summary)."""
    proc = subprocess.run(
        [sys.executable, "-m", "admin.cli", "validate", *args],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stdout.splitlines()
    checks = {line[6:28].strip(): line for line in lines[:-1]}
    assert lines[-1].endswith(f"exit {proc.returncode}"), proc.stdout
    return proc.returncode, checks


def writer_login(server: PgServer, schema: str, role: str) -> str:
    """A DSN of a new login role on the private cluster that is only a member of telemetry_writer."""
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE telemetry_writer").format(sql.Identifier(role)))
    return conninfo.make_conninfo(server.dsn, user=role)


def test_writer_role_without_copy_rights_is_caught(
    settings: Settings, redis: Redis, pg_server_factory: Callable[..., PgServer]
) -> None:
    server = pg_server_factory()
    schema = settings.postgres.schema_name
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        migrate(conn, schema)  # creates the telemetry_writer group role and its grants
    env = env_for(settings)
    env["TELEMETRY_POSTGRES__DSN"] = writer_login(server, schema, "w_ok")
    code, checks = validate(env, "--role", "writer")
    assert code == 0, checks
    assert checks["postgres writer"].startswith("ok") and checks["postgres copy"].startswith("ok")
    assert checks["schema"].startswith("skip")  # the writer cannot read schema_migrations (by design)
    assert "as w_ok" in checks["postgres"]

    packed = sql.SQL("{}.readings_packed").format(sql.Identifier(schema))
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("REVOKE INSERT ON {} FROM telemetry_writer").format(packed))
    code, checks = validate(env, "--role", "writer")
    assert code == 3, checks
    assert (
        checks["postgres writer"].startswith("FAIL")
        and "missing: INSERT on readings_packed" in checks["postgres writer"]
    )
    assert checks["postgres copy"].startswith("FAIL") and "permission denied" in checks["postgres copy"]
    assert checks["redis writer"].startswith("ok")  # the other checks still run and pass
    with psycopg.connect(server.dsn) as conn:  # the probe COPY was rolled back: nothing written
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(packed)).fetchone() == (0,)


def test_owner_sees_an_unmigrated_schema(settings: Settings, redis: Redis) -> None:
    env = env_for(settings)
    code, checks = validate(env, "--role", "admin")
    assert code == 0, checks
    assert "migrations applied" in checks["schema"]
    env["TELEMETRY_POSTGRES__SCHEMA_NAME"] = "no_such_schema_x"
    code, checks = validate(env, "--role", "writer")
    assert code == 3 and "run telemetry-admin migrate" in checks["schema"]
    assert "postgres writer" not in checks  # one line for an unmigrated schema, not one per table


def test_missing_spool_directory_and_device(settings: Settings, redis: Redis, tmp_path: Path) -> None:
    env = env_for(settings)
    env["TELEMETRY_PRODUCER__SPOOL_DIR"] = str(tmp_path / "spool")
    env["TELEMETRY_GPS_NMEA__URL"] = str(tmp_path / "gps0")
    code, checks = validate(env, "--role", "producer", "--source", "gps_nmea")
    assert code == 3
    assert checks["spool"].startswith("FAIL") and "does not exist" in checks["spool"]
    assert checks["device"].startswith("FAIL") and "gps0 does not exist" in checks["device"]
    assert checks["redis producer"].startswith("ok")
    (tmp_path / "spool").mkdir()
    (tmp_path / "gps0").write_bytes(b"")  # any readable, writable file stands for the tty here
    code, checks = validate(env, "--role", "producer", "--source", "gps_nmea")
    assert code == 0, checks
    assert list((tmp_path / "spool").iterdir()) == []  # the write probe left nothing behind
    env["TELEMETRY_PRODUCER__SPOOL_MAX_MB"] = str(10**12)  # more than any disk here
    code, checks = validate(env, "--role", "producer")
    assert code == 3 and "MiB free < TELEMETRY_PRODUCER__SPOOL_MAX_MB" in checks["spool"]


def test_config_errors_exit_2(settings: Settings, redis: Redis, tmp_path: Path) -> None:
    env = env_for(settings)
    bad = tmp_path / "scales.json"
    bad.write_text('{"scales": [{"device": "s1"}]}')  # no url, no format
    env["TELEMETRY_SCALES__CONFIG"] = str(bad)
    code, checks = validate(env, "--role", "producer")
    assert code == 2 and checks["scales config"].startswith("FAIL"), checks
    env["TELEMETRY_SCALES__CONFIG"] = str(REPO / "deploy" / "scales.json")
    code, checks = validate(env, "--role", "producer")
    assert code == 0 and checks["scales config"].startswith("ok"), checks
    env["TELEMETRY_WRITER__BATCH_MAX_ROWS"] = "many"
    proc = subprocess.run(
        [sys.executable, "-m", "admin.cli", "validate"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "TELEMETRY_WRITER__BATCH_MAX_ROWS" in proc.stderr


def test_redis_acl_users_get_the_right_verdicts(settings: Settings, acl_redis: Any, tmp_path: Path) -> None:
    server, _pw, folder = acl_redis
    ns = settings.redis.namespace
    pg = {"TELEMETRY_POSTGRES__DSN": settings.postgres.dsn, "TELEMETRY_POSTGRES__SCHEMA_NAME": ns}
    code, checks = validate(user_env(server, folder, "producer", ns, **pg), "--role", "producer")
    assert code == 0 and "XADD allowed on critical, high, normal, low, bulk" in checks["redis producer"]
    code, checks = validate(user_env(server, folder, "producer", ns, **pg), "--role", "importer")
    assert code == 3 and checks["redis importer"].startswith("ok") and checks["rq queue"].startswith("FAIL")
    code, checks = validate(user_env(server, folder, "importer", ns, **pg), "--role", "importer")
    assert code == 0 and checks["rq queue"].startswith("ok"), checks
    code, checks = validate(user_env(server, folder, "admin", ns, **pg), "--role", "admin")
    assert checks["redis admin"].startswith("ok"), checks
    code, checks = validate(user_env(server, folder, "importer", ns, **pg), "--role", "producer")
    assert code == 3 and "XADD refused on critical, high, normal, low" in checks["redis producer"]
    code, checks = validate(user_env(server, folder, "writer", ns, **pg), "--role", "writer")
    assert checks["redis writer"].startswith("ok"), checks
    code, checks = validate(user_env(server, folder, "producer", ns, **pg), "--role", "writer")
    assert code == 3 and "MULTI refused" in checks["redis writer"]
    admin = Redis.from_url(server.url, username="admin", password=_pw["admin"])
    names = settings.redis.names
    for key in (*names.streams, names.deadletter):  # no probe created a stream (MKSTREAM was DISCARDed)
        with pytest.raises(ResponseError, match="no such key"):
            admin.xinfo_stream(key)
