"""afr_serial end to end: bytes from a socket:// serial server -> AfrSerialSource -> Redis -> writer -> PostgreSQL.

The stream is the real DLG-1 packet (shared/data/mts) repeated, with SYNTHETIC line noise, a
truncated packet, the error-code-2 packet and a lambda-valid packet (see tests/producers/test_afr_serial.py
for how those vectors were assembled).
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from redis import Redis

from common.settings import AfrSerialSettings, Settings
from producers.afr_serial import AfrSerialSource
from tests.helpers import count_readings, pg_query, running_producer, running_writer, wait_for
from tests.producers.test_afr_serial import ERROR_2

# SYNTHETIC: the DLG-1 later, sensor 1 lambda valid (43 13 03 74: F=0, AF 147, L=500 -> lambda 1.000),
# sensor 2 reporting error 2 (5B 13 00 02: heater open).
LAMBDA_AND_ERROR = bytes.fromhex("B284 4313 0374 5B13 0002")

pytestmark = pytest.mark.integration


def serve_once(data: bytes, go: threading.Event) -> tuple[socket.socket, list[socket.socket]]:
    """A TCP 'serial server' that sends ``data`` to its first client once ``go`` is set.

    pyserial's socket:// open() discards whatever has already arrived (reset_input_buffer), so
    the test sets ``go`` only when the source reports the port open.
    """
    server = socket.create_server(("127.0.0.1", 0))
    clients: list[socket.socket] = []

    def run() -> None:
        conn, _ = server.accept()
        clients.append(conn)
        if go.wait(10):
            conn.sendall(data)

    threading.Thread(target=run, daemon=True).start()
    return server, clients


def test_afr_serial_through_redis_and_writer_into_postgres(settings: Settings, redis: Redis, shared_data: Path) -> None:
    dlg1 = (shared_data / "mts" / "dlg1_two_sensors_free_air.bin").read_bytes()
    noise = bytes.fromhex("0013")  # SYNTHETIC line noise
    # a chain repeats its packet (each packet is checked against its neighbours): the new state twice
    stream = noise + dlg1 * 20 + ERROR_2[:5] + LAMBDA_AND_ERROR * 2
    go = threading.Event()
    server, clients = serve_once(stream, go)
    url = f"socket://127.0.0.1:{server.getsockname()[1]}"
    source = AfrSerialSource(AfrSerialSettings(url=url, device="dlg1-bench"))
    try:
        with running_producer(
            source, redis, settings, "afr_serial@test", settings.producer.ranges, read_timeout=0.05
        ) as run:
            wait_for(lambda: source.connected, 10, what="port open")
            go.set()
            wait_for(lambda: run.stats.frames_published >= 22, 15, what="22 frames published")
    finally:
        server.close()
        for c in clients:
            c.close()
    stats = run.stats
    assert stats.frames_published == 22
    assert dict(stats.parse_errors) == {"garbage": 1, "truncated": 1}

    with running_writer(settings):
        # 20 x 6 channels (two sensors in free air) + 2 x (3 lambda valid + 3 error)
        wait_for(lambda: count_readings(settings) == 132, 30, what="132 readings")
    o2 = pg_query(settings, "SELECT value, unit, quality FROM readings WHERE channel = 'afr_2_o2'")
    assert o2 == [(20.9, "%", "good")] * 20
    errors = pg_query(
        settings, "SELECT channel, value, quality FROM readings WHERE channel LIKE '%_error' ORDER BY channel"
    )
    assert errors == [("afr_2_error", 2.0, "error")] * 2
    state = dict(
        (ch, (v, t, u, q))
        for ch, v, t, u, q in pg_query(
            settings,
            "SELECT channel, value, text_value, unit, quality FROM current_state WHERE device = 'dlg1-bench'",
        )
    )
    assert state["afr_1"] == (14.7, None, "afr", "good")
    assert state["afr_1_lambda"] == (1.0, None, "lambda", "good")
    assert state["afr_1_status"] == (None, "lambda", "", "good")
    assert state["afr_2"] == (None, None, "afr", "error")  # sensor 2's latest packet was the error
