"""Automatic runs end to end on the real servers: a SYNTHETIC dyno pull (labelled: the JetDrive peer of
tests/producers/jetdrive_peer.py, built from the spec) -> dyno_udp producer -> Redis -> writer ->
PostgreSQL, and ``telemetry-runs`` (a real process) opening and closing the run by itself.

The detector is SIGKILLed while the run is open and started again: still exactly one run, with the
start and end the rule gives, and peak power/torque (and the RPM at each) equal to what this test
computes from the values it sent (float32 on the wire, so compared after a float32 round trip).
"""

from __future__ import annotations

import json
import math
import signal
import socket
import struct
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from redis import Redis

from common.settings import DynoUdpSettings, Settings
from common.streams import RUNS_GROUP
from producers.dyno_udp import TIME_SOURCE, DynoUdpSource
from tests.conftest import REPO, env_for
from tests.helpers import pg_query, running_producer, running_writer, wait_for
from tests.integration.pipeline import stop_process
from tests.producers.jetdrive_peer import JetDrivePeer

pytestmark = pytest.mark.integration

RULE = {"name": "pull", "kind": "dyno", "channel": "rpm", "device": "power-core-*",
        "start_above": 2000, "start_for_s": 1, "stop_below": 1500, "stop_for_s": 2}  # fmt: skip


def f32(x: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def pull_sample(i: int, n: int) -> tuple[float, float, float]:
    """SYNTHETIC pull: RPM 2,500 -> 7,000 linearly; torque (N*m) a hump peaking near 4,800 rpm; power (kW) from both."""
    rpm = 2500.0 + 4500.0 * i / (n - 1)
    torque = 200.0 + 60.0 * math.exp(-(((rpm - 4800.0) / 1600.0) ** 2)) - 0.004 * (rpm - 2500.0)
    return rpm, torque, torque * rpm * 2 * math.pi / 60_000


def start_detector(settings: Settings) -> subprocess.Popen[str]:
    env = env_for(settings) | {"TELEMETRY_RUNS__RULES": json.dumps([RULE]), "TELEMETRY_RUNS__BLOCK_MS": "100"}
    return subprocess.Popen([sys.executable, "-m", "runs"], env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip


def runs_rows(settings: Settings) -> list[tuple[object, ...]]:
    return pg_query(settings, "SELECT id, name, status, started_at, ended_at, summary, origin, kind FROM runs")


def test_a_pull_starts_and_ends_a_run_by_itself_across_a_detector_kill(settings: Settings, redis: Redis) -> None:
    # the deployed alias table: Dynojet's "Engine RPM" is published as "rpm", the rule's channel
    source = DynoUdpSource("127.0.0.1", 0, ping_interval_ms=200, aliases=DynoUdpSettings().aliases)
    source.open()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    peer = JetDrivePeer(sock, ("127.0.0.1", source.bound_port))
    peer.start_serving()
    sent: list[tuple[float, float, float]] = []

    def send(rpm: float, torque: float, power: float) -> None:
        ts = peer.clock_ms()
        peer.send_values([(1, ts, rpm), (2, ts, torque), (3, ts, power)])
        sent.append((f32(rpm), f32(torque), f32(power)))
        time.sleep(0.02)

    detector = start_detector(settings)
    outputs = []
    try:
        with running_writer(settings), running_producer(source, redis, settings, "dyno@test", read_timeout=0.05):
            # idle until the producer's clock is synced by ping (times then come from the dyno's clock)
            query = "SELECT count(*) FROM readings WHERE channel = %s AND text_value = 'ping'"
            deadline = time.monotonic() + 20
            while not pg_query(settings, query, [TIME_SOURCE])[0][0]:
                assert time.monotonic() < deadline, "no ping-synced frame"
                send(900.0, 20.0, 900 * 20 * 2 * math.pi / 60_000)
            n = 200  # 4 s of pull at 50 Hz
            for i in range(n):
                send(*pull_sample(i, n))
                if i == n // 2:  # mid-run: the run must be open by now (1 s above 2,000 rpm long passed)
                    wait_for(lambda: [r for r in runs_rows(settings) if r[2] == "open"], 20, what="an open run")
                    outputs.append(stop_process(detector, signal.SIGKILL))
                    detector = start_detector(settings)
            for _ in range(150):  # 3 s of coast-down below 1,500 rpm
                send(1000.0, 10.0, 1.0)
            rows = wait_for(lambda: [r for r in runs_rows(settings) if r[5] is not None], 30, what="a summarised run")
        outputs.append(stop_process(detector))
    finally:
        if detector.poll() is None:
            detector.kill()
            detector.wait()
        peer.close()
        source.close()
    assert len(runs_rows(settings)) == 1, outputs
    (_id, name, status, started_at, ended_at, summary, origin, kind) = rows[0]
    assert (name, status, origin, kind) == ("pull", "closed", "detector", "dyno")
    # the boundaries the rule defines: first frame above 2,000 rpm, first frame below 1,500 rpm after it
    above = "SELECT min(observed_at) FROM readings WHERE channel = 'rpm' AND value > 2000"
    first_above = pg_query(settings, above)
    first_below = pg_query(
        settings,
        "SELECT min(observed_at) FROM readings WHERE channel = 'rpm' AND value < 1500 AND observed_at > %s",
        [started_at],
    )
    assert started_at == first_above[0][0] and ended_at == first_below[0][0]
    assert ended_at - started_at > timedelta(seconds=3)
    # the peaks from what was sent (float32 on the wire), RPM of the same sample
    best_power = max(sent, key=lambda s: s[2])
    best_torque = max(sent, key=lambda s: s[1])
    dyno = summary["dyno"]
    assert (dyno["peak_power"]["value"], dyno["peak_power"]["rpm"], dyno["peak_power"]["unit"]) == (
        best_power[2], best_power[0], "kW",
    )  # fmt: skip
    assert (dyno["peak_torque"]["value"], dyno["peak_torque"]["rpm"]) == (best_torque[1], best_torque[0])
    assert 4000 < best_torque[0] < 5500 and best_power[0] > best_torque[0]  # the synthetic curve's shape
    # the run covers only the pull: all 200 pull frames, and none of the idle or coast frames
    rpm = next(c for c in summary["channels"] if c["channel"] == "rpm")
    assert rpm["count"] == 200 and rpm["min"] == f32(2500.0) and rpm["max"] == f32(7000.0)
    # the detector's group exists and has nothing left pending (its acks happened after the commit)
    for key in settings.redis.names.streams[:4]:
        groups = {g["name"].decode(): g for g in redis.xinfo_groups(key)}
        assert groups[RUNS_GROUP]["pending"] == 0
