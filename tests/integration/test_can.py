"""The can source end to end: every capture in shared/data/can (the OBD-II MF4 too) replayed by ``produce("can", ...)``
(the body of ``telemetry-produce can``) into the real Redis, committed by the real writer, read
back from PostgreSQL and compared with cantools' reference values (expected_cantools.json), with
comma.ai's own decoded RAV4 values (the oracle CSVs), and with the README's OBD-II and J1939
facts. A live bus is python-can's virtual bus (a real python-can Bus in this process).

Time: the logs are replayed with ``log_time=shift`` from a fixed ``replay_start`` (the RAV4 log is
stamped with boot time, the others are years older than the writer's partitions), so a log time
``t`` is stored at ``START + (t - t0)`` to the microsecond, t0 being the log's first line.
"""

from __future__ import annotations

import csv
import json
import math
import threading
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import cantools
import pytest

from common.settings import CanSettings, Settings
from producers.cli import produce
from producers.stats import ProducerStats
from tests.helpers import pg_query, running_writer, wait_for

pytestmark = pytest.mark.integration

START = (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0)
RAV4 = "comma2k19_rav4_2017_seg40_first10s"
OBD = "css_obd2_7512BE4D_00000427_00000001.can1.candump.log"
OBD_MF4 = "css_obd2_7512BE4D_00000427_00000001.MF4"
J1939 = "css_j1939_FCBF0606_00003482_00000001-60B621D9.candump.log"

TOLERANCE = 1e-12
"""m/s and degrees. The oracle is comma's float64 arithmetic on the same raw values: wheel speed
km/h / 3.6 and the mean of four, steering STEER_ANGLE + STEER_FRACTION. Ours is the same sums in
PostgreSQL-stored float64, so they may differ in the last bits (the README measured 3.6e-15 at
most); 1e-12 is ~1000 ulp above that and 1e6 times below the DBC's resolution (0.01 km/h)."""


@dataclass
class Stored:
    seq: int
    observed_at: datetime
    device: str
    channels: dict[str, tuple[Any, str, str]]
    """name -> (value or text, unit, quality)."""


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def first_time(path: Path) -> Decimal:
    with path.open() as fh:
        return Decimal(fh.readline().split()[0][1:-1])


def at(t: str | Decimal, t0: Decimal) -> datetime:
    return START + timedelta(microseconds=int((Decimal(t) - t0) * 1_000_000))


def replay(settings: Settings, name: str, **can: Any) -> tuple[ProducerStats, list[Stored]]:
    """Replay through produce("can"), commit with the writer, return the stored frames by seq."""
    s = settings.model_copy(
        update={
            "can": CanSettings(log_time="shift", replay_start=START, **can),
            "http": settings.http.model_copy(update={"enabled": False}),
            "producer": settings.producer.model_copy(update={"name": name}),
        }
    )
    stats = produce("can", s, threading.Event())
    assert stats.frames_unsent == 0 and stats.frames_published == stats.frames_read
    query = "SELECT coalesce(sum(frames), 0) FROM producer_progress WHERE source = 'can'"
    with running_writer(s):
        wait_for(lambda: pg_query(s, query)[0][0] == stats.frames_published, 120, what="every frame committed")
    rows = pg_query(
        s,
        "SELECT seq, observed_at, device, channel, value, text_value, unit, quality FROM readings"
        " WHERE source = 'can' ORDER BY seq",
    )
    frames: dict[int, Stored] = {}
    for seq, observed, device, channel, value, text, unit, quality in rows:
        frame = frames.setdefault(seq, Stored(seq, observed, device, {}))
        frame.channels[channel] = (text if text is not None else value, unit, quality)
    return stats, [frames[k] for k in sorted(frames)]


def message_frames(frames: list[Stored], message: str) -> list[Stored]:
    prefix = message + "."
    return [f for f in frames if any(c.startswith(prefix) for c in f.channels)]


def expected_value(message: Any, signal: str, value: float) -> Any:
    """What the source publishes for cantools' number: the choice text if the DBC names it."""
    sig = message.get_signal_by_name(signal)
    if sig.choices and value in sig.choices:
        return str(sig.choices[value]).strip()
    return value


def same(got: dict[str, Any], want: dict[str, Any]) -> bool:
    """Equal names, texts equal, numbers within 1e-12 relative: the JSON prints cantools' floats
    shortened (it says LAT_DIST 2.76 where cantools returns 69 * 0.04 = 2.7600000000000002)."""
    if got.keys() != want.keys():
        return False
    for key, value in want.items():
        if isinstance(value, str) or isinstance(got[key], str):
            if got[key] != value:
                return False
        elif not math.isclose(got[key], value, rel_tol=1e-12, abs_tol=1e-12):
            return False
    return True


def test_rav4_replay_equals_cantools_and_comma_oracle(settings: Settings, shared_data: Path) -> None:
    data = shared_data / "can"
    log = data / f"{RAV4}.candump.log"
    dbc = {"can0": [data / "toyota_new_mc_pt_generated.dbc"], "can1": [data / "toyota_adas.dbc"]}
    stats, frames = replay(settings, "can-rav4", log_file=log, dbc=dbc, checksum={"*": "toyota"})
    expected = json.loads((data / "expected_cantools.json").read_text())[log.name]
    # Counts: every frame the DBCs define decodes but PCS_HUD's 12 (cantools "unpacking failed"),
    # every other id is counted unknown, every checksum validates.
    assert len(frames) == stats.frames_published == expected["frames_decoded_ok"] == 14_975
    assert stats.parse_errors["unknown_id"] == expected["frames"] - expected["frames_with_id_in_dbc"] == 7_605
    assert stats.parse_errors["decode"] == 12 and stats.parse_errors["checksum"] == 0
    assert all(q == "good" for f in frames for _, _, q in f.channels.values())
    t0 = first_time(log)
    pt = cantools.database.load_file(str(dbc["can0"][0]), strict=False)
    adas = cantools.database.load_file(str(dbc["can1"][0]))
    by_key = {(f.observed_at, f.device, name.split(".")[0]): f for f in frames for name in f.channels}
    for ex in expected["examples"]:
        frame = by_key[(at(ex["t"], t0), ex["iface"], ex["message"])]
        message = (pt if ex["iface"] == "can0" else adas).get_message_by_name(ex["message"])
        got = {name.split(".", 1)[1]: value for name, (value, _, _) in frame.channels.items()}
        want = {k: expected_value(message, k, v) for k, v in ex["signals"].items()}
        assert same(got, want), (ex, got)
    speed = message_frames(frames, "SPEED")
    assert speed[0].channels["SPEED.SPEED"][:2] == (29.38, "km/h") and speed[-1].channels["SPEED.SPEED"][0] == 72.75

    wheels = message_frames(frames, "WHEEL_SPEEDS")
    oracle = read_csv(data / f"{RAV4}.oracle_wheel_speed.csv")
    mean = read_csv(data / f"{RAV4}.oracle_speed.csv")
    assert len(wheels) == len(oracle) == len(mean) == 829
    for frame, row, avg in zip(wheels, oracle, mean, strict=True):
        assert frame.observed_at == at(row["t"], t0) == at(avg["t"], t0)
        ours = [frame.channels[f"WHEEL_SPEEDS.WHEEL_SPEED_{w}"][0] / 3.6 for w in ("FL", "FR", "RL", "RR")]
        theirs = [float(row[c]) for c in ("front_left_mps", "front_right_mps", "rear_left_mps", "rear_right_mps")]
        assert all(abs(a - b) <= TOLERANCE for a, b in zip(ours, theirs, strict=True)), (row, ours)
        assert abs(sum(ours) / 4 - float(avg["speed_mps"])) <= TOLERANCE
    steer = message_frames(frames, "STEER_ANGLE_SENSOR")
    oracle = read_csv(data / f"{RAV4}.oracle_steering_angle.csv")
    assert len(steer) == len(oracle) == 830
    for frame, row in zip(steer, oracle, strict=True):
        assert frame.observed_at == at(row["t"], t0)
        angle = (
            frame.channels["STEER_ANGLE_SENSOR.STEER_ANGLE"][0] + frame.channels["STEER_ANGLE_SENSOR.STEER_FRACTION"][0]
        )
        assert abs(angle - float(row["steering_angle_deg"])) <= TOLERANCE, row


@pytest.mark.parametrize(
    ("replayed", "log_channels"), [(OBD, []), (OBD_MF4, ["can1"])], ids=["candump", "mf4-can1-only"]
)
def test_obd2_replay_rpm_speed_coolant_and_multi_frame_vin(
    settings: Settings, shared_data: Path, replayed: str, log_channels: list[str]
) -> None:
    """The CAN1 candump, and the original MF4 (python-can's MF4Reader, asammdf) replayed on bus can1
    only: the same facts, at the same times (the candump's lines give the expected times of both)."""
    data = shared_data / "can"
    log = data / OBD
    stats, frames = replay(
        settings,
        "can-obd",
        log_file=data / replayed,
        log_channels=log_channels,
        dbc={"*": [data / "CSS-Electronics-OBD2-v1.4.dbc"]},
    )
    expected = json.loads((data / "expected_cantools.json").read_text())[OBD]
    t0 = first_time(log)
    pid_frames = [f for f in frames if any(c.startswith("OBD2.S1_PID_") for c in f.channels)]
    assert len(pid_frames) == expected["frames_7E8_decoded_to_a_service01_pid"] == 7_101
    assert stats.parse_errors["decode"] == 546  # PIDs 0x13 and 0xA4: not in the DBC (README)
    assert stats.parse_errors["unknown_id"] == 7_651  # the logger's requests on 7E0
    by_time = {f.observed_at: f for f in pid_frames}
    for ex in expected["examples"]:
        frame = by_time[at(ex["t"], t0)]
        assert math.isclose(frame.channels[f"OBD2.{ex['signal']}"][0], ex["value"], rel_tol=1e-12), ex
    rpm = [f.channels["OBD2.S1_PID_0C_EngineRPM"] for f in pid_frames if "OBD2.S1_PID_0C_EngineRPM" in f.channels]
    speed = [
        f.channels["OBD2.S1_PID_0D_VehicleSpeed"] for f in pid_frames if "OBD2.S1_PID_0D_VehicleSpeed" in f.channels
    ]
    coolant = [
        f.channels["OBD2.S1_PID_05_EngineCoolantTemp"]
        for f in pid_frames
        if "OBD2.S1_PID_05_EngineCoolantTemp" in f.channels
    ]
    assert max(v for v, _, _ in rpm) == 2957.25 and rpm[0][1] == "rpm"
    assert max(v for v, _, _ in speed) == 86 and speed[0][1] == "km/h"
    assert (coolant[0][0], coolant[-1][0], coolant[0][1]) == (21, 98, "degC")
    (vin,) = [f for f in frames if "vin" in f.channels]
    # the answer is complete with its second consecutive frame, 7E8#2259303834393233
    last_cf = next(line for line in log.read_text().splitlines() if "7E8#2259303834393233" in line)
    assert vin.channels == {"vin": ("TMBJP7NX5NY084923", "", "good")}
    assert vin.observed_at == at(last_cf.split()[0][1:-1], t0)
    (dtc,) = [f for f in frames if "dtc" in f.channels]
    assert dtc.channels == {"dtc": ("", "", "good"), "dtc_count": (0.0, "count", "good")}


def test_j1939_replay_matches_by_pgn(settings: Settings, shared_data: Path) -> None:
    data = shared_data / "can"
    log = data / J1939
    stats, frames = replay(
        settings, "can-j1939", log_file=log, dbc={"*": [data / "CSS-Electronics-SAE-J1939-DEMO.dbc"]}
    )
    expected = json.loads((data / "expected_cantools.json").read_text())[J1939]
    counts: dict[str, int] = defaultdict(int)
    for f in frames:
        (name,) = f.channels
        counts[f"{f.device} {name}"] += 1
    # the DBC's ids carry source address 0xFE; the vehicle's frames come from 0x00 and 0x47
    assert counts == {"can1 EEC1.EngineSpeed": 577, "can1 CCVS1.WheelBasedVehicleSpeed": 184}
    assert counts["can1 EEC1.EngineSpeed"] == expected["decoded_counts"]["can1 0CF00400 EEC1"]
    assert stats.parse_errors["unknown_id"] == 1_815 - 577 - 184
    t0 = first_time(log)
    by_time = {f.observed_at: f for f in frames}
    for ex in expected["examples"]:
        frame = by_time[at(ex["t"], t0)]
        assert same({k.split(".")[1]: v[0] for k, v in frame.channels.items()}, ex["signals"])
        assert frame.device == ex["iface"]
    assert {u for f in frames for _, u, _ in f.channels.values()} == {"rpm", "km/h"}


def test_live_virtual_bus(settings: Settings, shared_data: Path) -> None:
    """A live python-can bus (interface ``virtual``): RAV4 frames sent on it arrive decoded in PostgreSQL."""
    import can
    import can.interfaces.virtual as virtual

    data = shared_data / "can"
    channel = f"vbus-{settings.redis.namespace}"
    s = settings.model_copy(
        update={
            "can": CanSettings(
                interface="virtual",
                channel=channel,
                dbc={"*": [data / "toyota_new_mc_pt_generated.dbc"]},
                checksum={"*": "toyota"},
            ),
            "http": settings.http.model_copy(update={"enabled": False}),
            "producer": settings.producer.model_copy(update={"name": "can-live", "read_timeout_s": 0.05}),
        }
    )
    lines = [line for line in (data / f"{RAV4}.candump.log").read_text().splitlines() if " can0 0B4#" in line][:50]
    sent = [bytes.fromhex(line.split("#")[1]) for line in lines]
    bad = bytearray(sent[0])
    bad[4] ^= 0x01  # the speed's low byte: the Toyota checksum no longer matches
    stop = threading.Event()
    result: dict[str, ProducerStats] = {}
    thread = threading.Thread(target=lambda: result.setdefault("stats", produce("can", s, stop)), daemon=True)
    thread.start()
    sender = can.Bus(interface="virtual", channel=channel)
    try:
        # virtual buses do not queue for a bus that does not exist yet: wait for the producer's to join
        wait_for(lambda: len(virtual.channels.get(channel, ())) == 2, 30, what="producer on the virtual bus")
        for data_bytes in [*sent, bytes(bad)]:
            sender.send(can.Message(arbitration_id=0xB4, is_extended_id=False, data=data_bytes))
        sender.send(can.Message(arbitration_id=0x7FF, is_extended_id=False, data=b"\x00"))
        query = "SELECT count(DISTINCT seq) FROM readings WHERE source = 'can'"
        with running_writer(s):
            wait_for(lambda: pg_query(s, query)[0][0] == len(sent) + 1, 60, what="live frames committed")
    finally:
        sender.shutdown()
        stop.set()
        thread.join(20)
    assert not thread.is_alive()
    stats = result["stats"]
    assert stats.parse_errors["checksum"] == 1 and stats.parse_errors["unknown_id"] == 1
    rows = pg_query(s, "SELECT seq, value, quality FROM readings WHERE channel = 'SPEED.SPEED' ORDER BY seq")
    pt = cantools.database.load_file(str(data / "toyota_new_mc_pt_generated.dbc"), strict=False)
    want = [pt.decode_message(0xB4, d)["SPEED"] for d in sent]
    assert [v for _, v, _ in rows[:-1]] == want and all(q == "good" for _, _, q in rows[:-1])
    assert rows[-1][1:] == (None, "error")  # the corrupted one: not a value, not good
