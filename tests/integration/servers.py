"""Throwaway servers for resilience and security tests: a private redis-server on a free port.

Each test that stops, kills or reconfigures Redis starts its own server here, so the shared
server (and other tests) are never disturbed. Stopped at the end of the test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
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
