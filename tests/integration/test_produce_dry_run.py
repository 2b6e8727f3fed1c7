"""``telemetry-produce SOURCE --test`` on real devices: a pty replay of a real NMEA capture, and the
ELM327-emulator. The command runs as an operator runs it (a subprocess with TELEMETRY_* settings);
it must print every frame with the run loop's validation result and send nothing to Redis.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from common.settings import Settings
from tests.conftest import REPO, env_for
from tests.integration.test_gps_nmea import expected_frames, open_pty, write_all
from tests.integration.test_obd import RPM, SPEED, Emulator, emulator
from tests.producers.gps_captures import MIN_DATE, replay_bytes
from tests.producers.test_gps_nmea import EXPECTED

pytestmark = pytest.mark.integration
__all__ = ["emulator"]  # the fixture, used by name

CAPTURE = "gp-320fw-2019-04-07-coldboot"  # a cold boot: bad checksums and cut sentences among the fixes


def produce_test(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "producers.cli", *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_open(proc: subprocess.Popen[str]) -> None:
    """Block until the command says the device is open (pyserial flushes a port's input on open)."""
    assert proc.stderr is not None
    seen = ""
    while "device open" not in seen:
        line = proc.stderr.readline()
        assert line, seen  # the command ended without opening the device
        seen += line


def finish(proc: subprocess.Popen[str], code: int) -> tuple[list[dict[str, Any]], str]:
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == code, err
    return [json.loads(line) for line in out.splitlines()], err


def test_gps_capture_on_a_pty_is_printed_checked_and_not_sent(
    settings: Settings, redis: Redis, shared_data: Path
) -> None:
    data = replay_bytes(shared_data, CAPTURE)
    expected = expected_frames(data, "bench-gps")
    assert len(expected) == EXPECTED[CAPTURE]["frames"] == 20
    master, slave, path = open_pty()
    env = env_for(settings)  # the real Redis and this test's namespace: nothing may arrive there
    env.update(
        TELEMETRY_GPS_NMEA__URL=path,
        TELEMETRY_GPS_NMEA__DEVICE="bench-gps",
        TELEMETRY_GPS_NMEA__MIN_DATE=MIN_DATE.isoformat(),
        TELEMETRY_GPS_NMEA__EPOCH_IDLE_S="0.2",
    )
    # One frame more than the capture holds: the command reads it all, then stops at the timeout (exit 1).
    proc = produce_test(env, "gps_nmea", "--test", "--count", "21", "--timeout", "6")
    try:
        wait_open(proc)
        write_all(master, data).join(10)
        records, notices = finish(proc, 1)
    finally:
        os.close(master)
        os.close(slave)
    frames = [r for r in records if "frame" in r]
    rejected = [r["reason"].split(":")[0] for r in records if "frame" not in r]
    assert [f["frame"]["observed_at"] for f in frames] == [e.observed_at.isoformat() for e in expected]
    for got, want in zip(frames, expected, strict=True):
        assert {k: v["value"] for k, v in got["frame"]["channels"].items()} == {c.name: c.value for c in want.channels}
        assert got["result"] == "ok" and got["frame"]["device"] == "bench-gps"
    kinds = {k: v for k, v in EXPECTED[CAPTURE].items() if k not in ("frames", "sentences")}
    assert {k: rejected.count(k) for k in set(rejected)} == kinds  # checksum 23, parse 17, ...
    assert "20 frames (0 flagged), 44 rejected" in notices
    assert list(redis.scan_iter(match="{" + settings.redis.namespace + "}*")) == []  # nothing sent


def test_elm327_emulator_frames_with_range_flags_and_no_redis(settings: Settings, emulator: Emulator) -> None:
    env = env_for(settings)
    env.update(
        TELEMETRY_REDIS__URL="redis://127.0.0.1:1/0",  # unreachable: --test never connects
        TELEMETRY_OBD__URL=str(emulator.link),
        TELEMETRY_OBD__BAUDRATE="38400",
        TELEMETRY_OBD__PIDS=json.dumps({"RPM": 0, "SPEED": 0}),
    )
    proc = produce_test(env, "obd", "--test", "--count", "4", "--timeout", "60")
    wait_open(proc)
    records, notices = finish(proc, 0)
    assert len(records) == 4
    assert [r["frame"]["channels"]["rpm"]["value"] for r in records] == RPM[:4]
    assert [r["frame"]["channels"]["speed"]["value"] for r in records] == SPEED[:4]
    # The default range table warns below 500 rpm: the second answer (0 rpm) is flagged, as the run loop would.
    assert [r["result"] for r in records] == ["ok", "flagged", "ok", "ok"]
    assert records[1]["changes"] == {"rpm": "good->warn"} and records[1]["flags"] == {"warn": 1}
    assert records[1]["frame"]["channels"]["rpm"]["quality"] == "warn"
    assert "4 frames (1 flagged), 0 rejected" in notices


def test_missing_device_exits_3_and_bad_config_exits_2(settings: Settings, tmp_path: Path) -> None:
    env = env_for(settings)
    env["TELEMETRY_GPS_NMEA__URL"] = str(tmp_path / "no-such-tty")
    _, err = finish(produce_test(env, "gps_nmea", "--test", "--count", "1", "--timeout", "5"), 3)
    assert "cannot open the device" in err and "no-such-tty" in err
    env["TELEMETRY_SIMULATE__PRIORITY"] = "urgent"
    _, err = finish(produce_test(env, "simulate", "--test"), 2)
    assert "TELEMETRY_SIMULATE__PRIORITY" in err


def test_check_config_builds_the_source_and_opens_nothing(settings: Settings, tmp_path: Path) -> None:
    env = env_for(settings)
    env["TELEMETRY_REDIS__URL"] = "redis://127.0.0.1:1/0"
    env["TELEMETRY_SCALES__CONFIG"] = str(REPO / "deploy" / "scales.json")  # its devices are not on this host
    out, err = produce_test(env, "scales", "--check-config").communicate(timeout=60)
    assert out.strip() == "scales: configuration valid", err
    bad = tmp_path / "scales.json"
    bad.write_text('{"scales": [{"device": "s1", "url": "/dev/ttyS0", "format": "no-such-format"}]}')
    env["TELEMETRY_SCALES__CONFIG"] = str(bad)
    proc = produce_test(env, "scales", "--check-config")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "scales.json: scales.0.format" in err and "no-such-format" in err
