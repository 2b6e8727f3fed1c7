"""Least privilege on Redis (deploy/redis/users.acl) and secrets that never leak.

A private redis-server runs with the ACL file rendered by deploy/redis/render-acl.sh from
random password files. Stolen producer credentials can only XADD to the five priority streams;
the writer and producer still work end to end with their users, and their passwords appear in
no process argv, environment or log (they are passed as *_FILE paths).
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

from common.schema import Priority
from common.settings import Settings
from tests.conftest import REPO, env_for, settings_for
from tests.helpers import count_readings, wait_for
from tests.integration.pipeline import start_writer, stop_process
from writer import deadletter
from writer.deadletter import Outcome
from writer.pg import mask_dsn
from writer.read import ensure_groups, read_entries
from writer.trim import trim_acked

pytestmark = pytest.mark.integration

USERS = ("producer", "writer", "admin", "importer", "runs")


@pytest.fixture
def acl_redis(settings: Settings, redis_server_factory: Any, tmp_path: Path) -> tuple[Any, dict[str, str], Path]:
    folder = tmp_path / "secrets"
    folder.mkdir()
    passwords = {u: secrets.token_urlsafe(18) for u in USERS}
    for user, pw in passwords.items():
        (folder / f"redis_{user}_password").write_text(pw + "\n")
    acl = tmp_path / "users.acl"
    render = REPO / "deploy" / "redis" / "render-acl.sh"
    subprocess.run(["bash", str(render), str(folder), str(acl), settings.redis.namespace], check=True, timeout=10)
    server = redis_server_factory("--aclfile", str(acl))
    return server, passwords, folder


def client(server: Any, user: str | None = None, password: str | None = None) -> Redis:
    return Redis.from_url(server.url, username=user, password=password, socket_timeout=5)


def test_stolen_producer_credentials_can_only_append(settings: Settings, acl_redis: Any) -> None:
    server, pw, _ = acl_redis
    names = settings.redis.names
    thief = client(server, "producer", pw["producer"])
    for p in Priority:
        assert thief.xadd(names.stream(p), {"v": "1"})
    normal, dead = names.stream(Priority.NORMAL), names.deadletter
    client(server, "admin", pw["admin"]).xadd(dead, {"stream": normal})
    forbidden = [
        ("XRANGE", normal, "-", "+"),
        ("XREVRANGE", normal, "+", "-"),
        ("XREAD", "STREAMS", normal, "0"),
        ("XREADGROUP", "GROUP", "writer", "x", "STREAMS", normal, ">"),
        ("XLEN", normal),
        ("XINFO", "STREAM", normal),
        ("XTRIM", normal, "MAXLEN", "0"),
        ("XDEL", normal, "0-1"),
        ("XGROUP", "DESTROY", normal, "writer"),
        ("XGROUP", "SETID", normal, "writer", "$"),
        ("XACK", normal, "writer", "0-1"),
        ("DEL", normal),
        ("UNLINK", normal),
        ("RENAME", normal, "x"),
        ("EXPIRE", normal, "1"),
        ("XADD", dead, "*", "f", "v"),
        ("XRANGE", dead, "-", "+"),
        ("DEL", dead),
        ("SET", "other", "1"),
        ("KEYS", "*"),
        ("SCAN", "0"),
        ("FLUSHALL",),
        ("FLUSHDB",),
        ("CONFIG", "SET", "appendonly", "no"),
        ("CONFIG", "GET", "*"),
        ("ACL", "LIST"),
        ("ACL", "SETUSER", "producer", "+@all"),
        ("EVAL", "return redis.call('DEL', KEYS[1])", "1", normal),
        ("FUNCTION", "FLUSH"),
        ("SCRIPT", "FLUSH"),
        ("MODULE", "LIST"),
        ("CLIENT", "KILL", "TYPE", "normal"),
        ("MONITOR",),
        ("SHUTDOWN", "NOSAVE"),
        ("BGREWRITEAOF",),
        ("REPLICAOF", "127.0.0.1", "1"),
        ("SUBSCRIBE", "x"),
    ]
    for command in forbidden:
        with pytest.raises(NoPermissionError):
            thief.execute_command(*command)
    admin = client(server, "admin", pw["admin"])
    assert admin.xlen(dead) == 1 and admin.xlen(normal) == 1  # nothing was read, trimmed or deleted
    with pytest.raises(AuthenticationError):
        client(server).ping()  # the default user is off
    with pytest.raises((AuthenticationError, ResponseError)):
        client(server, "producer", "wrong").ping()
    # Documented limitation: ACLs cannot filter arguments, so XADD ... MAXLEN 0 (a trim) passes.
    # The writer's sequence-gap metric (producer_progress.max_seq - frames) reveals what it removes.
    thief.xadd(normal, {"v": "1"}, maxlen=0, approximate=False)
    assert admin.xlen(normal) == 0


def test_writer_and_producer_work_with_their_users_and_leak_no_secret(
    settings: Settings, acl_redis: Any, tmp_path: Path
) -> None:
    server, pw, folder = acl_redis
    pg_secret = tmp_path / "pg_password"
    pg_secret.write_text(secrets.token_urlsafe(18))  # trust auth here: proves the value is never shown
    s = settings_for(server.url, settings.postgres.dsn, settings.redis.namespace, settings.postgres.schema_name)
    common = {
        "TELEMETRY_REDIS__PASSWORD_FILE": str(folder / "redis_writer_password"),
        "TELEMETRY_POSTGRES__PASSWORD_FILE": str(pg_secret),
        "TELEMETRY_HTTP__ENABLED": "false",
        "TELEMETRY_LOG_LEVEL": "DEBUG",
    }
    admin = client(server, "admin", pw["admin"])
    writer = start_writer(s, "acl-writer", {**common, "TELEMETRY_REDIS__USERNAME": "writer"})
    env = env_for(s)
    env.update(common)
    env.update(
        TELEMETRY_REDIS__USERNAME="producer",
        TELEMETRY_REDIS__PASSWORD_FILE=str(folder / "redis_producer_password"),
        TELEMETRY_SIMULATE__RATE_HZ="50",
        TELEMETRY_SIMULATE__DEVICES="1",
        TELEMETRY_SIMULATE__CHANNELS="2",
    )
    cmd = [sys.executable, "-m", "producers.cli", "simulate"]
    producer = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: count_readings(settings) >= 40, 30, what="readings via the ACL users")
        # A schemaless entry forces a dead letter: the writer's only XADD right is that stream.
        admin.xadd(s.redis.names.stream(Priority.NORMAL), {"hello": "world"})
        wait_for(lambda: admin.xlen(s.redis.names.deadletter) == 1, 30, what="dead letter written by the writer user")
        values = [*pw.values(), pg_secret.read_text()]
        for proc in (writer, producer, server.proc):
            for part in ("cmdline", "environ"):
                raw = Path(f"/proc/{proc.pid}/{part}").read_bytes()
                assert not [v for v in values if v.encode() in raw], f"secret in /proc/{proc.pid}/{part}"
    finally:
        logs = stop_process(producer) + stop_process(writer, signal.SIGTERM)
    logs += (server.dir / "redis.log").read_text()
    assert "Traceback" not in logs and "NOPERM" not in logs, logs[-3000:]
    assert not [v for v in values if v in logs]
    assert admin.xlen(s.redis.names.deadletter) == 1


def test_writer_user_dead_letters_once_and_cannot_script_around_its_rights(settings: Settings, acl_redis: Any) -> None:
    server, pw, _ = acl_redis
    names = settings.redis.names
    writer = client(server, "writer", pw["writer"])
    normal = names.stream(Priority.NORMAL)
    ensure_groups(writer, names)
    client(server, "producer", pw["producer"]).xadd(normal, {"hello": "world"})
    (entry,) = read_entries(writer, names, "w", count=10, block_ms=1)
    (result,) = deadletter.dead_letter(writer, names, [(entry, "DecodeError", "x")], "w")
    assert result.outcome is Outcome.DEAD_LETTERED, result.problem  # EVAL + XACK + ZADD + XLEN + XADD allowed
    trim_acked(writer, names, exact=True)  # XTRIM, then ZRANGEBYLEX/ZREMRANGEBYLEX on the index
    assert writer.zrangebylex(names.deadletter_index, "-", "+") == []
    forbidden = [
        ("EVAL", "return redis.call('DEL', KEYS[1])", "1", normal),
        ("EVAL", "return redis.call('XADD', KEYS[1], '*', 'a', 'b')", "1", normal),
        ("EVAL", "return redis.call('ZADD', KEYS[1], 0, 'a')", "1", normal),
        ("ZADD", names.stream(Priority.LOW), "0", "a"),
        ("SET", names.deadletter_index, "x"),
        ("DEL", names.deadletter_index),
        ("EVALSHA", "0" * 40, "0"),
        ("SCRIPT", "FLUSH"),
        ("FUNCTION", "FLUSH"),
    ]
    for command in forbidden:
        with pytest.raises((NoPermissionError, ResponseError), match=r"(?i)permission|can't run|can't access"):
            writer.execute_command(*command)


def test_dsn_passwords_are_masked() -> None:
    secret = secrets.token_urlsafe(12)
    for dsn in (f"postgresql://u:{secret}@h:5432/db", f"host=h user=u password={secret} dbname=db"):
        masked = mask_dsn(dsn)
        assert secret not in masked and "***" in masked
