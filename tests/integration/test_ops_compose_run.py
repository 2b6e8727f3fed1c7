"""docker-compose.yml runs: every non-hardware service's command and environment, started as
local processes (no Docker engine here).

What is rewritten, and only that: service hostnames (``redis``, ``postgres``) become the test
servers on 127.0.0.1; secrets (ACL users, password files) are dropped because the test servers
have none (other secret files are files of the test's own); the Redis namespace, the PostgreSQL
schema and the rq queue name are made unique to this test; the endpoint binds 127.0.0.1 on a
free port instead of 0.0.0.0:9108/9109; the spool folder (a named volume in compose) is a folder
of the test's own. Services with a profile (hardware, monitoring) and the servers themselves are
not started.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError

import psycopg
import pytest
import yaml
from psycopg import sql
from redis import Redis
from rq import Queue, Worker

from common.schema import Priority
from common.settings import Settings
from tests import processes
from tests.conftest import REPO
from tests.helpers import count_readings, remove_rq_keys, wait_for

pytestmark = pytest.mark.integration

SERVERS = {"redis", "postgres"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=3) as resp:
            return bool(resp.status == 200 and json.loads(resp.read())["ready"])
    except (HTTPError, URLError, OSError):
        return False


def interpolate(value: str) -> str:
    """Compose's ``${NAME:-default}`` (unset or empty -> default) and ``${NAME}``, from os.environ."""
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: os.environ.get(m.group(1)) or (m.group(2) or ""), value)


def local_env(env: dict[str, Any], redis_url: str, pg_dsn: str, ns: str, volume: Path) -> dict[str, str]:
    """A service's compose environment, pointed at the local test servers (see module docstring)."""
    out = {k: v for k, v in os.environ.items() if not k.startswith(("TELEMETRY_", "RQ_"))}
    for key, value in env.items():
        value = interpolate(str(value))
        if key.endswith(("__PASSWORD_FILE", "__USERNAME")):
            continue
        if value.startswith("/run/secrets/"):  # a secret that is not a server password: a file of the test's
            secret = volume / "secrets" / value.rsplit("/", 1)[1]
            secret.parent.mkdir(exist_ok=True)
            secret.write_text(uuid.uuid4().hex)
            value = str(secret)
        if key == "TELEMETRY_REDIS__URL":
            assert value.startswith("redis://redis:"), value  # the compose hostname, mapped below
            value = redis_url
        elif key == "TELEMETRY_POSTGRES__DSN":
            assert "@postgres:5432/" in value, value
            value = pg_dsn
        elif key == "TELEMETRY_HTTP__HOST":
            value = "127.0.0.1"
        elif key in ("TELEMETRY_PRODUCER__SPOOL_DIR", "TELEMETRY_ARCHIVE__DIR"):
            value = str(volume / value.strip("/"))
        out[key] = value
    out.update(TELEMETRY_REDIS__NAMESPACE=ns, TELEMETRY_POSTGRES__SCHEMA_NAME=ns)
    out["TELEMETRY_REDIS__URL"] = redis_url
    out["TELEMETRY_POSTGRES__DSN"] = pg_dsn
    out["TELEMETRY_HTTP__PORT"] = str(_free_port())
    return out


@pytest.fixture
def stack(redis_url: str, pg_dsn: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    local = {n: s for n, s in services.items() if n not in SERVERS and "profiles" not in s}
    assert set(local) == {"migrate", "writer", "rq-worker", "producer-simulate", "archiver", "runs"}
    ns = "t" + uuid.uuid4().hex[:10]
    envs = {n: local_env(s.get("environment") or {}, redis_url, pg_dsn, ns, tmp_path) for n, s in local.items()}
    queue = f"imports-{ns}"  # rq keys are not namespaced: never share a queue with other tests
    assert envs["rq-worker"]["TELEMETRY_FILE_IMPORT__QUEUE"] == "imports"
    for env in envs.values():
        env["TELEMETRY_FILE_IMPORT__QUEUE"] = queue
    commands = {n: list(s["command"]) for n, s in local.items()}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        migrate = subprocess.run(commands["migrate"], env=envs["migrate"], cwd=REPO, capture_output=True, timeout=60)
        assert migrate.returncode == 0, migrate.stderr.decode()
        writer_ports = []
        for replica in range(services["writer"]["deploy"]["replicas"]):
            writer_ports.append(_free_port())
            env = {**envs["writer"], "TELEMETRY_HTTP__PORT": str(writer_ports[-1])}
            procs[f"writer-{replica}"] = subprocess.Popen(commands["writer"], env=env, cwd=REPO)
        for name in ("producer-simulate", "rq-worker", "runs"):
            procs[name] = subprocess.Popen(commands[name], env=envs[name], cwd=REPO)
        # The archiver is a shell loop (export what is due, sleep an hour): its own process group,
        # so the teardown ends the loop and its sleep together.
        with (tmp_path / "archiver.log").open("wb") as log:
            procs["archiver"] = subprocess.Popen(
                commands["archiver"], env=envs["archiver"], cwd=REPO, start_new_session=True,
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        yield {
            "procs": procs,
            "writer_ports": writer_ports,
            "ns": ns,
            "queue": queue,
            "envs": envs,
            "redis_url": redis_url,
            "pg_dsn": pg_dsn,
            "tmp": tmp_path,
        }
    finally:
        for n, p in procs.items():
            if p.poll() is None and n == "archiver":
                os.killpg(p.pid, signal.SIGTERM)
            elif p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes = {n: p.wait(30) for n, p in procs.items()}
        r = Redis.from_url(redis_url)
        keys = list(r.scan_iter(match="{" + ns + "}*"))
        if keys:
            r.delete(*keys)
        remove_rq_keys(r, queue)
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(ns)))
    assert all(c == 0 for n, c in codes.items() if n not in ("rq-worker", "archiver")), codes  # clean SIGTERM exit
    assert "Traceback" not in (tmp_path / "archiver.log").read_text()


def test_compose_services_run_locally_and_commit_readings(stack: dict[str, Any]) -> None:
    ns, envs = stack["ns"], stack["envs"]
    settings = Settings(
        redis={"url": stack["redis_url"], "namespace": ns},
        postgres={"dsn": stack["pg_dsn"], "schema_name": ns},
        _env_file=None,  # type: ignore[call-arg]
    )

    def committed() -> bool:
        dead = {n: p.returncode for n, p in stack["procs"].items() if p.poll() is not None}
        assert not dead, f"services exited: {dead}"
        return count_readings(settings) > 0

    wait_for(committed, 30, interval=0.2, what="readings from the simulate producer")
    producer_port = int(envs["producer-simulate"]["TELEMETRY_HTTP__PORT"])
    wait_for(lambda: _ready(producer_port), 20, what="producer /readyz")
    for port in stack["writer_ports"]:
        wait_for(lambda port=port: _ready(port), 20, what=f"writer /readyz on {port}")
    # The archiver's first pass (nothing is due yet) is over once its loop sleeps; it said nothing wrong.
    archiver = stack["procs"]["archiver"]
    wait_for(
        lambda: any("sleep" in cmd for _, cmd in processes.descendants(archiver.pid).values()), 60,
        what="the archiver's first pass done",
    )  # fmt: skip
    assert "telemetry-admin:" not in (stack["tmp"] / "archiver.log").read_text()
    for name, proc in stack["procs"].items():
        assert proc.poll() is None, f"{name} exited with {proc.returncode}"
    # The Dockerfile HEALTHCHECK command, run with the producer's environment.
    check = subprocess.run(["python", "-m", "common.http", "/healthz"], env=envs["producer-simulate"], timeout=30)
    assert check.returncode == 0
    r = Redis.from_url(stack["redis_url"])
    wait_for(lambda: len(Worker.all(queue=Queue(stack["queue"], connection=r))) == 1, 20, what="rq worker registered")
    before = count_readings(settings)
    wait_for(lambda: count_readings(settings) > before, 10, interval=0.2, what="readings keep flowing")
    # The run detector (telemetry-runs) reads the streams with its own group, which trimming waits for.
    normal = settings.redis.names.stream(Priority.NORMAL)
    groups = lambda: {g["name"].decode(): g for g in r.xinfo_groups(normal)}  # noqa: E731
    wait_for(lambda: "runs" in groups() and groups()["runs"]["entries-read"], 20, what="the runs group reading")
    spool = Path(envs["producer-simulate"]["TELEMETRY_PRODUCER__SPOOL_DIR"])
    assert [p.name for p in spool.iterdir()], "the producer runs with its spool (compose turns it on)"
