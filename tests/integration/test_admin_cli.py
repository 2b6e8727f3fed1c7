"""telemetry-admin as an operator runs it: migrate twice, streams, dead letters, partitions."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from redis import Redis

from common.schema import Priority
from common.settings import Settings
from tests.conftest import REPO, env_for
from tests.helpers import pg_query, running_writer, wait_for

pytestmark = pytest.mark.integration


def admin(settings: Settings, *args: str, ok: bool = True) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "admin.cli", *args],
        env=env_for(settings),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc.stdout + proc.stderr


def test_migrate_is_idempotent(settings: Settings) -> None:
    out = admin(settings, "migrate")
    assert "applied nothing (up to date)" in out
    assert "applied nothing (up to date)" in admin(settings, "migrate")
    from admin.migrate import migration_files

    assert pg_query(settings, "SELECT count(*) FROM schema_migrations")[0][0] == len(migration_files()) >= 2
    # the retention the writer role may act within (migration 006), from TELEMETRY_WRITER__RETENTION_DAYS
    assert pg_query(settings, "SELECT retention_days FROM retention_policy") == [(settings.writer.retention_days,)]


def test_streams_and_deadletter_commands(settings: Settings, redis: Redis) -> None:
    names = settings.redis.names
    redis.xadd(names.stream(Priority.NORMAL), {"not": "a frame"})
    with running_writer(settings) as live:
        wait_for(lambda: sum(live.dead_letters.values()) == 1, 30)
    status = json.loads(admin(settings, "streams", "--json"))
    assert status["deadletter"] == 1
    normal = next(s for s in status["streams"] if s["stream"] == names.stream(Priority.NORMAL))
    assert normal["pending"] == 0 and normal["consumers"] == []  # a cleanly stopped replica leaves the group
    listing = admin(settings, "deadletter", "list")
    did = listing.split()[0]
    assert "DecodeError: missing field 'v'" in listing
    shown = json.loads(admin(settings, "deadletter", "show", did))
    assert shown["orig.not"] == "a frame" and shown["stream"] == names.stream(Priority.NORMAL)
    assert "replayed 1" in admin(settings, "deadletter", "replay", did)
    assert redis.xlen(names.deadletter) == 0
    assert "needs IDs or --all" in admin(settings, "deadletter", "purge", ok=False)
    redis.xadd(names.deadletter, {"stream": names.stream(Priority.LOW)})
    assert "purged 1" in admin(settings, "deadletter", "purge", "--all")


def test_partitions_create_and_bad_input(settings: Settings) -> None:
    two = admin(settings, "partitions", "create", "2019-04-07", "2019-04-08")
    assert two.startswith("2019-04-07..2019-04-08 (2 days): 2 new partitions"), two  # readings only
    one = admin(settings, "partitions", "create", "2019-04-07")
    assert one.startswith("2019-04-07 (1 day): 0 new partitions"), one
    out = admin(settings, "partitions", "create", "2019-04-08", "2019-04-07", ok=False)
    assert "LAST_DAY must be on or after FIRST_DAY" in out


def test_bad_config_names_the_variable(settings: Settings) -> None:
    env = env_for(settings)
    env["TELEMETRY_WRITER__BATCH_MAX_ROWS"] = "many"
    proc = subprocess.run(
        [sys.executable, "-m", "admin.cli", "streams"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "TELEMETRY_WRITER__BATCH_MAX_ROWS" in proc.stderr


def one_line_error(settings: Settings, *args: str, env: dict[str, str] | None = None) -> str:
    """Run a command that must fail with exactly one line on stderr and no traceback; return it."""
    full_env = env_for(settings)
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "admin.cli", *args],
        env=full_env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("telemetry-admin: "), lines
    return lines[0]


def test_operator_mistakes_get_one_clear_line(settings: Settings, redis: Redis) -> None:
    """Issue 10.7: a traceback or a KeyError repr used to be printed for each of these."""
    assert "no import job no-such-job" in one_line_error(settings, "import-status", "no-such-job")
    assert one_line_error(settings, "deadletter", "replay", "1-0") == "telemetry-admin: no dead letter 1-0"
    wrong_role = {"TELEMETRY_POSTGRES__DSN": settings.postgres.dsn.replace("postgres@", "no_such_role_x@")}
    line = one_line_error(settings, "migrate", env=wrong_role)
    assert 'role "no_such_role_x" does not exist' in line and "TELEMETRY_POSTGRES__DSN" in line
    line = one_line_error(settings, "streams", env={"TELEMETRY_REDIS__URL": "redis://127.0.0.1:1/0"})
    assert "Redis" in line and "TELEMETRY_REDIS__URL" in line
