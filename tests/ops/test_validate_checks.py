"""validate's host checks and exit codes without servers: device URLs against local sockets, paths."""

from __future__ import annotations

import socket
from pathlib import Path

from admin.checks import EXIT_CONFIG, EXIT_ENVIRONMENT, EXIT_OK, Kind, Status, exit_code, fail, ok, run_check, skip
from admin.checks_host import device_url
from common.settings import Settings


def test_tcp_device_urls() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        assert device_url("device", f"socket://127.0.0.1:{port}").status is Status.OK
        assert device_url("device", f"rfc2217://127.0.0.1:{port}").status is Status.OK
    closed = device_url("device", f"socket://127.0.0.1:{port}", timeout_s=1)
    assert closed.status is Status.FAIL and closed.kind is Kind.ENVIRONMENT and "no TCP connection" in closed.detail
    bad = device_url("device", "socket://nohostport")
    assert bad.status is Status.FAIL and bad.kind is Kind.CONFIG
    assert device_url("device", "loop://").status is Status.SKIP


def test_device_paths(tmp_path: Path) -> None:
    tty = tmp_path / "ttyUSB0"
    assert "does not exist" in device_url("device", str(tty)).detail
    tty.write_bytes(b"")
    assert device_url("device", str(tty)).status is Status.OK


def test_exit_codes_and_a_crashing_check() -> None:
    assert exit_code([ok("a", ""), skip("b", "")]) == EXIT_OK
    assert exit_code([ok("a", ""), fail("b", "")]) == EXIT_ENVIRONMENT
    assert exit_code([fail("b", ""), fail("c", "", Kind.CONFIG)]) == EXIT_CONFIG

    def broken(_s: Settings) -> list[object]:
        raise RuntimeError("boom\nsecond line")

    (result,) = run_check("x", broken, Settings(_env_file=None))  # type: ignore[arg-type, call-arg]
    assert result.status is Status.FAIL and result.detail == "RuntimeError: boom"
