"""Throwaway servers for resilience and security tests: a private redis-server or PostgreSQL
cluster on a free port.

Each test that stops, kills, restarts or reconfigures a server starts its own here, so the
machine's servers (and other work using them) are never disturbed. Stopped at the end of the
test. Nothing here ever calls pg_ctlcluster or touches 127.0.0.1:5432 / :6379.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import unavailable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """``redis-server`` on 127.0.0.1:<free port> with data in ``dir``; start/stop/kill at will."""

    def __init__(self, directory: Path, *args: str, tls: bool = False) -> None:
        self.dir = directory
        self.port = free_port()
        self.args = list(args)
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        port_args = ["--port", "0", "--tls-port", str(self.port)] if self.tls else ["--port", str(self.port)]
        cmd = ["redis-server", *port_args, "--bind", "127.0.0.1", "--dir", str(self.dir), "--save", ""]
        cmd += ["--logfile", str(self.dir / "redis.log"), *self.args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server did not start: {log}")
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def redis_server_factory(tmp_path: Path) -> Iterator[object]:
    """``make(*args)`` -> a started RedisServer in its own folder; all are stopped afterwards."""
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed (deploy/local-services.sh installs it)")
    servers: list[RedisServer] = []

    def make(*args: str, tls: bool = False, start: bool = True) -> RedisServer:
        folder = tmp_path / f"redis{len(servers)}"
        folder.mkdir()
        server = RedisServer(folder, *args, tls=tls)
        servers.append(server)
        if start:
            server.start()
        return server

    yield make
    for server in servers:
        server.stop(signal.SIGKILL)


def pg_bindir() -> Path | None:
    """The newest PostgreSQL server binaries (initdb, pg_ctl) on this machine, if any."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found and shutil.which("initdb"):
        found = [str(Path(shutil.which("initdb") or "").resolve())]
    return Path(found[-1]).parent if found else None


class PgServer:
    """A private PostgreSQL cluster (initdb, trust auth) on 127.0.0.1:<free port>.

    ``stop()``/``start()`` make an outage, ``restart()`` a fast restart; data survives both.
    As root, the cluster runs as the ``postgres`` user (initdb refuses root). ``options`` are
    extra ``-c name=value`` server settings.
    """

    def __init__(self, bindir: Path, options: tuple[str, ...] = (), host_auth: str = "trust") -> None:
        self.bindir = bindir
        self.host_auth = host_auth
        self.root = Path(tempfile.mkdtemp(prefix="telemetry-pg-"))  # not under pytest's root-only tmp folder
        self.data = self.root / "data"
        self.port = free_port()
        self.options = options
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            shutil.chown(self.root, "postgres")

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def run(self, *cmd: str) -> None:
        full = ["su", "postgres", "-c", " ".join(cmd)] if self.as_postgres else list(cmd)
        proc = subprocess.run(full, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            log = self.root / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr[-2000:]}{tail}")

    def init(self) -> None:
        auth = ["--auth-local=trust", f"--auth-host={self.host_auth}"]
        self.run(str(self.bindir / "initdb"), "-D", str(self.data), *auth, "-U", "postgres", "--no-sync")

    def start(self) -> None:
        opts = [
            f"-p {self.port}",
            "-c listen_addresses=127.0.0.1",
            "-c fsync=off",
            f"-c unix_socket_directories={self.root}",
        ]
        opts += [f"-c {o}" for o in self.options]
        pg_ctl = str(self.bindir / "pg_ctl")
        self.run(
            pg_ctl,
            "-D",
            str(self.data),
            "-o",
            f"'{' '.join(opts)}'",
            "-w",
            "-t",
            "60",
            "-l",
            str(self.root / "log"),
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self.run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def pg_server_factory() -> Iterator[object]:
    """``make(*options, init=callable, host_auth="trust")`` -> a started private PgServer; all
    destroyed afterwards.

    ``init(server)`` runs after initdb and before the first start (to add TLS files, say).
    ``host_auth`` is the TCP authentication method (``scram-sha-256`` to check passwords); the
    superuser ``postgres`` always connects without one over the Unix socket in ``server.root``.
    """
    bindir = pg_bindir()
    if bindir is None:
        unavailable("PostgreSQL server binaries (initdb, pg_ctl) not found; deploy/local-services.sh installs them")
    assert bindir is not None
    servers: list[PgServer] = []

    def make(*options: str, init: object = None, host_auth: str = "trust") -> PgServer:
        assert bindir is not None
        server = PgServer(bindir, options, host_auth)
        servers.append(server)
        server.init()
        if callable(init):
            init(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.destroy()
