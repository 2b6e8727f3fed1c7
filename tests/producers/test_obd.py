"""Unit tests of producers/obd.py: value decoding, units, schedule, and the source's state machine.

Decoding tests feed python-OBD's own decoders with adapter answers recorded from the ELM327
emulator (protocols.md §1c) or built by hand (marked synthetic). The state-machine tests use
``FakeConnection``, a scripted stand-in for ``obd.OBD`` (python-OBD's tests do the same with
their FakeELM); the real adapter path is covered by tests/integration/test_obd.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from common.errors import ConfigError, ParseError, SourceUnavailableError
from common.schema import Channel, Frame, Priority, Quality
from common.settings import DEFAULT_OBD_PIDS, DEFAULT_RANGES, ObdSettings, Settings
from common.units import convert
from producers import obd as obd_source
from producers.device_name import device_from_url
from producers.obd import (
    UNITS,
    ObdSource,
    PidSchedule,
    channel_name,
    decode_value,
    dtc_channels,
    from_settings,
    no_data_channels,
    normalise_quantity,
)
from producers.obd_decoders import decode_dtc, decode_dtcs, decode_vin, vin_check_digit_ok
from producers.validate import RangeValidator

python_obd: Any = obd_source.python_obd()  # the GPL library, only via the producer
Status = python_obd.OBDStatus


def answer(command: str, *lines: str) -> Any:
    """python-OBD's decoded value for raw CAN 11/500 adapter lines."""
    return response(command, *lines).value


def response(command: str, *lines: str) -> Any:
    """python-OBD's whole response (value and raw messages) for raw CAN 11/500 adapter lines."""
    parse = python_obd.protocols.ISO_15765_4_11bit_500k([])
    return python_obd.commands[command](parse(list(lines)))


@dataclass(frozen=True)
class Raw:
    """Scripted raw adapter lines: FakeConnection answers them through python-OBD's own parser."""

    lines: tuple[str, ...]


# The emulator's `car` scenario VIN answer (3-frame ISO-TP), recorded: WP0ZZZ99ZTS390000
VIN_WP0 = Raw(("7E81014490201575030", "7E8215A5A5A39395A54", "7E82253333930303030"))
NO_CODES = Raw(("7E8024300",))


# Recorded from the emulator's `car` scenario (protocols.md §1c).
RECORDED = {
    "RPM": ("7E804410C145F", Channel("rpm", 1303.75, "rpm")),
    "SPEED": ("7E803410D0A", Channel("speed", 10.0, "km/h")),
    "COOLANT_TEMP": ("7E80341055F", Channel("coolant_temp", 55.0, "degC")),
    "INTAKE_TEMP": ("7E803410F39", Channel("iat", 17.0, "degC")),
    "ENGINE_LOAD": ("7E8034104FF", Channel("engine_load", 100.0, "%")),
    "MAF": ("7E8044110181F", Channel("maf", 61.75, "g/s")),
}


@pytest.mark.parametrize("command", sorted(RECORDED))
def test_recorded_answers_decode_to_declared_units(command: str) -> None:
    raw, expected = RECORDED[command]
    assert decode_value(command, answer(command, raw)) == (expected,)


def test_throttle_is_published_as_tps_in_percent() -> None:
    (ch,) = decode_value("THROTTLE_POS", answer("THROTTLE_POS", "7E80341112B"))
    assert (ch.name, ch.unit) == ("tps", "%")
    assert ch.value == pytest.approx(0x2B * 100 / 255)


def test_dtcs_become_codes_and_count() -> None:
    # synthetic: mode 03 answer with P0104 and P0133
    value = answer("GET_DTC", "7E806430201040133")
    assert decode_value("GET_DTC", value) == (Channel("dtc", "P0104,P0133"), Channel("dtc_count", 2.0, "count"))
    assert decode_value("GET_DTC", answer("GET_DTC", "7E8024300")) == (
        Channel("dtc", ""),
        Channel("dtc_count", 0.0, "count"),
    )
    assert dtc_channels("freeze_dtc", ("P0301", "Cylinder 1 Misfire Detected"))[0].value == "P0301"
    with pytest.raises(ParseError) as err:
        dtc_channels("dtc", 42)
    assert err.value.kind == "type"


def test_no_data_answer_is_null_not_invented() -> None:
    assert answer("RPM", "NO DATA") is None
    assert no_data_channels("RPM", {"rpm": "rpm"}) == (Channel("rpm", None, "rpm", Quality.NO_DATA),)
    assert no_data_channels("GET_DTC", {}) == (
        Channel("dtc", None, "", Quality.NO_DATA),
        Channel("dtc_count", None, "count", Quality.NO_DATA),  # the same unit as an answered count
    )


def test_every_mapped_unit_exists_in_python_obd() -> None:
    unit = python_obd.Unit
    for name, (declared, scale) in UNITS.items():
        assert str(unit.Quantity(1, name).units) == name
        assert normalise_quantity(2, name) == (2 * scale, declared)
    assert normalise_quantity(-1200, "pascal") == (-1.2, "kPa")
    assert normalise_quantity(3, "minute") == (180.0, "s")


def test_unknown_unit_and_type_are_parse_errors() -> None:
    with pytest.raises(ParseError) as err:
        normalise_quantity(1.0, "furlong")
    assert err.value.kind == "unit"
    with pytest.raises(ParseError) as err:
        decode_value("O2_SENSORS", ((False, True), (True, False)))
    assert err.value.kind == "type"


def test_text_values() -> None:
    assert decode_value("VIN", bytearray(b"\x00WP0ZZZ99ZTS39\x01")) == (Channel("vin", "WP0ZZZ99ZTS39"),)
    assert decode_value("FUEL_STATUS", ("Closed loop", "")) == (Channel("fuel_status", "Closed loop"),)
    assert decode_value("ELM_VERSION", "ELM327 v1.5") == (Channel("elm_version", "ELM327 v1.5"),)


def test_default_pids_are_python_obd_commands_with_range_channels() -> None:
    assert all(python_obd.commands.has_name(p) for p in DEFAULT_OBD_PIDS)
    names = {channel_name(p) for p in DEFAULT_OBD_PIDS}
    assert {"rpm", "map", "tps", "iat"} <= names <= names | set(DEFAULT_RANGES)


def test_iat_in_celsius_is_range_checked_in_fahrenheit() -> None:
    validator = RangeValidator(DEFAULT_RANGES)
    frame = _frame(Channel("iat", -10.0, "degC"), Channel("rpm", 16383.75, "rpm"))
    checked = validator.check(frame)
    assert convert(-10.0, "degC", "degF") == pytest.approx(14.0)
    assert [c.quality for c in checked.channels] == [Quality.WARN, Quality.WARN]


def test_default_device() -> None:
    """One rule for every serial source (producers/device_name.py): the URL's last path part."""
    assert device_from_url("/dev/obd0", "obd") == "obd0"
    assert device_from_url("socket://127.0.0.1:35000", "obd") == "127.0.0.1:35000"
    assert device_from_url("rfc2217://10.0.0.5:4000/", "gps") == "10.0.0.5:4000"
    assert device_from_url("loop://", "obd") == "obd"
    assert device_from_url("loop://", "0", prefix="mts-") == "mts-0"
    assert device_from_url("/dev/ttyUSB1", "0", prefix="mts-") == "mts-ttyUSB1"


def test_schedule_gives_each_pid_its_interval_without_catch_up_bursts() -> None:
    s = PidSchedule({"RPM": 0.1, "COOLANT_TEMP": 1.0, "GET_DTC": 0.0})
    assert s.due(100.0) == ["RPM", "COOLANT_TEMP", "GET_DTC"]
    assert s.due(100.05) == ["GET_DTC"]
    assert s.wait(100.05) == 0.0
    assert s.due(100.1) == ["RPM", "GET_DTC"]
    assert s.due(105.0) == ["RPM", "COOLANT_TEMP", "GET_DTC"]  # 5 s late: once, not 49 times
    assert s.next_at["RPM"] == pytest.approx(105.1)
    s.reset()
    assert s.wait(0.0) == 0.0


def test_settings_reject_bad_pids() -> None:
    with pytest.raises(ValueError, match="interval"):
        ObdSettings(pids={"RPM": -1})
    with pytest.raises(ValueError, match="at least one"):
        ObdSettings(pids={})
    with pytest.raises(ConfigError, match="NOT_A_PID"):
        from_settings(Settings(obd=ObdSettings(pids={"NOT_A_PID": 1.0}), _env_file=None))  # type: ignore[call-arg]
    cfg = ObdSettings(url="socket://h:1", pids={"RPM": 0.5})
    src = from_settings(Settings(obd=cfg, _env_file=None))  # type: ignore[call-arg]
    assert (src.device, src.schedule.intervals) == ("h:1", {"RPM": 0.5})


# --- the source against a scripted connection -------------------------------------------


@dataclass
class Response:
    value: Any
    messages: list[Any] = field(default_factory=list)


@dataclass
class FakeConnection:
    """Scripted stand-in for obd.OBD: per command a list of values, consumed in order."""

    values: dict[str, list[Any]]
    status_: str = Status.CAR_CONNECTED
    unplug_after: int | None = None
    queries: list[str] = field(default_factory=list)
    closed: bool = False

    def status(self) -> str:
        return self.status_

    def protocol_id(self) -> str:
        return "6"  # ISO 15765-4 CAN 11/500, as the emulator

    def query(self, cmd: Any, force: bool = False) -> Any:
        self.queries.append(cmd.name)
        if self.unplug_after is not None and len(self.queries) > self.unplug_after:
            self.status_ = Status.NOT_CONNECTED
            return Response(None)
        seq = self.values.get(cmd.name, [None])
        item = seq.pop(0) if len(seq) > 1 else seq[0]
        return response(cmd.name, *item.lines) if isinstance(item, Raw) else Response(item)

    def close(self) -> None:
        self.closed = True


def _frame(*channels: Channel) -> Frame:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return Frame("obd", "t", now, now, 0, channels)


def _source(*conns: FakeConnection, pids: dict[str, float] | None = None) -> ObdSource:
    it: Iterator[FakeConnection] = iter(conns)
    return ObdSource(lambda: next(it), pids or {"RPM": 0.0, "GET_DTC": 0.0}, "t", car_retry_s=0.05)


def test_round_frames_vin_once_and_dtcs_on_critical() -> None:
    q = python_obd.Unit
    conn = FakeConnection({"VIN": [VIN_WP0], "RPM": [1000 * q.rpm, 2000 * q.rpm], "GET_DTC": [NO_CODES]})
    src = _source(conn)
    src.open()
    first, dtc = src.read(0.0)
    second, _ = src.read(0.0)
    assert isinstance(first, Frame) and isinstance(dtc, Frame) and isinstance(second, Frame)
    assert first.channels == (Channel("vin", "WP0ZZZ99ZTS390000"), Channel("rpm", 1000.0, "rpm"))
    assert second.channels == (Channel("rpm", 2000.0, "rpm"),)
    assert (first.priority, dtc.priority) == (Priority.NORMAL, Priority.CRITICAL)
    assert dtc.channels[0] == Channel("dtc", "")
    assert conn.queries == ["VIN", "RPM", "GET_DTC", "RPM", "GET_DTC"]


def test_parse_error_is_returned_and_the_rest_of_the_round_kept() -> None:
    conn = FakeConnection({"O2_SENSORS": [((True,), (False,))], "SPEED": [python_obd.Unit.Quantity(5, "kph")]})
    src = _source(conn, pids={"O2_SENSORS": 0.0, "SPEED": 0.0})
    src.open()
    frame, error = src.read(0.0)
    assert isinstance(frame, Frame) and frame.channels == (Channel("speed", 5.0, "km/h"),)
    assert isinstance(error, ParseError) and error.kind == "type"


def test_unplug_returns_what_was_read_then_raises_then_reconnects() -> None:
    first = FakeConnection({"RPM": [800 * python_obd.Unit.rpm]}, unplug_after=2)  # VIN, RPM, then gone
    second = FakeConnection({"RPM": [900 * python_obd.Unit.rpm]})
    src = _source(first, second)
    src.open()
    (frame,) = src.read(0.0)
    assert isinstance(frame, Frame) and frame.channels == (Channel("rpm", 800.0, "rpm"),)
    with pytest.raises(SourceUnavailableError):
        src.read(0.0)
    src.close()
    assert first.closed
    src.open()
    assert [f.channels[0].value for f in src.read(0.0) if isinstance(f, Frame)] == [900.0, None]


def test_no_adapter_is_source_unavailable() -> None:
    src = _source(FakeConnection({}, status_=Status.NOT_CONNECTED))
    with pytest.raises(SourceUnavailableError):
        src.open()


def test_ignition_off_gives_one_no_data_frame_per_attempt_then_recovers() -> None:
    off = FakeConnection({}, status_=Status.OBD_CONNECTED)
    off_again = FakeConnection({}, status_=Status.OBD_CONNECTED)
    on = FakeConnection({"RPM": [700 * python_obd.Unit.rpm], "GET_DTC": [NO_CODES]})
    src = _source(off, off_again, on, pids={"RPM": 1.0, "GET_DTC": 1.0})
    src.open()
    (frame,) = src.read(0.01)
    assert isinstance(frame, Frame)
    assert [(c.name, c.value, c.quality) for c in frame.channels] == [
        ("rpm", None, Quality.NO_DATA),
        ("dtc", None, Quality.NO_DATA),
        ("dtc_count", None, Quality.NO_DATA),
    ]
    assert off.queries == []  # nothing is asked of a car that is not there
    frames: list[Any] = []
    for _ in range(40):
        frames.extend(src.read(0.01))
        if any(f.channels[0].value == 700.0 for f in frames):
            break
    assert off.closed and off_again.closed
    assert [f.channels[0].quality for f in frames] == [Quality.NO_DATA, Quality.GOOD, Quality.GOOD]


# --- issue 14, finding 6: VIN and trouble codes from the raw answers ------------------------


@pytest.mark.parametrize(
    "vin",
    # real-format VINs beginning or ending with 0, 1 or 2 (python-OBD strips those from both ends)
    ["1HGCM82633A004352", "WP0ZZZ99ZTS390000", "2T1BURHE0JC123450", "JH4KA7561PC008269"],
)
def test_vin_is_decoded_from_the_raw_answer_whole(vin: str) -> None:
    can = bytes.fromhex("490201") + vin.encode() + b"\x00\x00"  # ISO-TP padding, as python-OBD keeps it
    assert decode_vin([can]) == vin
    legacy = b"\x00\x00\x00" + vin.encode()  # SYNTHETIC K-line: five 49 02 0n messages, 4 bytes each
    assert decode_vin([bytes([0x49, 2, n + 1]) + legacy[4 * n : 4 * n + 4] for n in range(5)]) == vin
    python_obd_says = answer("VIN", *vin_lines(vin))
    assert bytes(python_obd_says).decode() != vin or (vin[0] not in "012" and vin[-1] not in "012")


def vin_lines(vin: str) -> tuple[str, ...]:
    """SYNTHETIC CAN 11/500 ISO-TP frames of a service 09 PID 02 answer (laid out like the emulator's)."""
    data = bytes.fromhex("490201") + vin.encode()
    first = f"7E810{len(data):02X}" + data[:6].hex().upper()
    rest = data[6:] + bytes(-(len(data) - 6) % 7)
    return (first, *(f"7E82{n + 1:X}" + rest[7 * n : 7 * n + 7].hex().upper() for n in range(len(rest) // 7)))


def test_vin_validation_and_check_digit() -> None:
    head = bytes.fromhex("490201")
    for bad in (head + bytes(17), head + b"1HGCM82633A00435", bytes.fromhex("4902"), bytes.fromhex("4102") + bytes(18)):
        with pytest.raises(ParseError) as err:
            decode_vin([bad])
        assert err.value.kind == "vin"
    with pytest.raises(ParseError):
        decode_vin([bytes.fromhex("490201") + b"1HGCM82633AO04352"])  # letter O is not in the VIN alphabet
    assert vin_check_digit_ok("1HGCM82633A004352") and not vin_check_digit_ok("1HGCM82643A004352")


def test_trouble_codes_are_upper_case_and_no_data_is_no_data() -> None:
    assert decode_dtc(bytes.fromhex("D00F")) == "U100F"  # python-OBD: U100f
    assert decode_dtcs([bytes.fromhex("4302D00F0143")], 0x43) == ["U100F", "P0143"]  # ISO 15765-4 count byte
    assert decode_dtcs([bytes.fromhex("43D00F0143")], 0x43) == ["U100F", "P0143"]  # ELM327-emulator 4.0: none
    assert decode_dtcs([bytes.fromhex("43014300000000")], 0x43, can=False) == ["P0143"]  # K-line padding
    assert decode_dtcs([bytes.fromhex("4300")], 0x43) == []
    assert dtc_channels("freeze_dtc", ("U100f", ""))[0].value == "U100F"
    # through the source: NO DATA is no_data (python-OBD said [] -> "" good), codes upper case
    conn = FakeConnection({"GET_DTC": [Raw(("NO DATA",)), Raw(("7E80543D00F0143",))]})
    assert answer("GET_DTC", "NO DATA") == []  # what python-OBD makes of it
    src = _source(conn, pids={"GET_DTC": 0.0})
    src.open()
    (no_data,) = src.read(0.0)
    (codes,) = src.read(0.0)
    assert isinstance(no_data, Frame) and isinstance(codes, Frame)
    assert [(c.name, c.value, c.quality) for c in no_data.channels] == [
        ("dtc", None, Quality.NO_DATA),
        ("dtc_count", None, Quality.NO_DATA),
    ]
    assert codes.channels == (Channel("dtc", "U100F,P0143"), Channel("dtc_count", 2.0, "count"))
