"""Unit tests of the can source's pure core (producers/can: integrity, isotp, dbc, throttle,
decode) and of the log feed's handling of bad lines. Real frames come from shared/data/can (the
README's examples); vectors built here are marked synthetic.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cantools
import pytest

from common.errors import ConfigError, ParseError
from common.schema import Channel, Frame, Priority, Quality
from common.settings import CanSettings, Settings
from producers.can import from_settings
from producers.can.dbc import BusDbc, j1939_pgn, load_bus_dbcs
from producers.can.decode import CanDecoder, RawMessage
from producers.can.integrity import CounterCheck, checksum_byte, checksum_ok, toyota_checksum
from producers.can.isotp import IsoTpAssembler, obd_channels
from producers.can.mapping import SignalMap, load_mapping
from producers.can.throttle import Throttle

T = datetime(2026, 1, 1, tzinfo=UTC)


def raw(bus: str, can_id: int, data: str, t: float = 0.0, extended: bool = False) -> RawMessage:
    return RawMessage(t, T, bus, can_id, extended, bytes.fromhex(data))


@pytest.fixture(scope="module")
def toyota(shared_data: Path) -> dict[str, BusDbc]:
    d = shared_data / "can"
    return load_bus_dbcs(
        {"can0": [d / "toyota_new_mc_pt_generated.dbc"], "can1": [d / "toyota_adas.dbc"]}, {"*": "toyota"}, False
    )


def frames_of(items: list[Frame | ParseError]) -> list[Frame]:
    return [i for i in items if isinstance(i, Frame)]


def errors_of(items: list[Frame | ParseError]) -> list[str]:
    return [i.kind for i in items if isinstance(i, ParseError)]


# ---- integrity -----------------------------------------------------------------------------
def test_toyota_checksum_of_the_readme_examples() -> None:
    # SPEED 0B4#000000001D0B7A5E: 8 + 0xB4 + 0x1D + 0x0B + 0x7A = 350 -> 0x5E
    assert toyota_checksum(0xB4, bytes.fromhex("000000001D0B7A5E"), 7) == 0x5E
    assert checksum_ok("toyota", 0x2C1, bytes.fromhex("0014DF14BBCA3A91"), 7)
    assert not checksum_ok("toyota", 0x2C1, bytes.fromhex("0014DF14BBCA3B91"), 7)  # one bit flipped
    assert not checksum_ok("toyota", 0x2C1, bytes.fromhex("0014"), 7)  # too short: not ok, no IndexError


def test_checksum_byte_positions() -> None:
    assert checksum_byte(63, 8, True) == 7 and checksum_byte(39, 8, True) == 4
    assert checksum_byte(56, 8, False) == 7
    assert checksum_byte(60, 4, True) is None and checksum_byte(62, 8, True) is None


def test_counter_check_steps_wraps_and_skips() -> None:
    c = CounterCheck()
    key = ("can1", 0x210)
    assert c.check(key, 254, 8) and c.check(key, 255, 8) and c.check(key, 0, 8)  # wraps at 2^8
    assert not c.check(key, 2, 8)  # skipped 1
    assert not c.check(key, 2, 8)  # repeated
    assert c.check(("can1", 0x211), 7, 8)  # each message has its own


# ---- J1939 ---------------------------------------------------------------------------------
def test_j1939_pgn_ignores_priority_and_source_address() -> None:
    assert j1939_pgn(0x0CF00400) == j1939_pgn(0x8CF004FE & 0x1FFFFFFF) == 0xF004  # EEC1, PDU2
    assert j1939_pgn(0x18FEF147) == 0xFEF1  # CCVS1
    assert j1939_pgn(0x1CECFF00) == 0xEC00  # TP.CM, PDU1: the destination is not part of the PGN
    assert j1939_pgn(0x18EA0017) == j1939_pgn(0x18EAFF00) == 0xEA00


def test_j1939_lookup_by_pgn(shared_data: Path) -> None:
    buses = load_bus_dbcs({"*": [shared_data / "can" / "CSS-Electronics-SAE-J1939-DEMO.dbc"]}, {}, True)
    dec = CanDecoder(buses)
    items = dec.decode(raw("can1", 0x0CF00400, "F0FF7D0000FFFFFF", extended=True), T, 0)
    assert frames_of(items)[0].channels == (Channel("EEC1.EngineSpeed", 0.0, "rpm"),)
    items = dec.decode(raw("can1", 0x18FEF147, "FF0A01FFFFFFFFFF", extended=True), T, 0)  # synthetic: 266/256 km/h
    assert frames_of(items)[0].channels == (Channel("CCVS1.WheelBasedVehicleSpeed", 266 / 256, "km/h"),)
    # the same 29-bit id as an 11-bit frame cannot exist; a standard id never matches by PGN
    assert errors_of(dec.decode(raw("can1", 0x400, "F0FF7D0000FFFFFF"), T, 0)) == ["unknown_id"]
    assert errors_of(dec.decode(raw("can1", 0x0CF00300, "FFFE00FFFFFF00FF", extended=True), T, 0)) == ["unknown_id"]


# ---- decode --------------------------------------------------------------------------------
def test_decode_speed_with_units_and_choice_text(toyota: dict[str, BusDbc]) -> None:
    dec = CanDecoder(toyota)
    (frame,) = dec.decode(raw("can0", 0xB4, "000000001D0B7A5E"), T, 5)
    assert isinstance(frame, Frame) and frame.device == "can0" and frame.source == "can"
    assert dict((c.name, (c.value, c.unit)) for c in frame.channels) == {
        "SPEED.ENCODER": (29.0, ""),
        "SPEED.SPEED": (29.38, "km/h"),
        "SPEED.CHECKSUM": (94.0, ""),
    }
    (gear,) = dec.decode(raw("can0", 0x3BC, "000000DE00800000"), T, 5)
    values = {c.name: c.value for c in gear.channels}  # type: ignore[union-attr]
    assert values["GEAR_PACKET.GEAR"] == "D" and values["GEAR_PACKET.DRIVE_ENGAGED"] == "on"
    assert values["GEAR_PACKET.SPORT_GEAR"] == 0.0  # 0 has no name in the DBC: stays a number


def test_bad_checksum_publishes_no_good_value(toyota: dict[str, BusDbc]) -> None:
    dec = CanDecoder(toyota)
    items = dec.decode(raw("can0", 0xB4, "000000001D0C7A5E"), T, 0)  # speed byte changed, checksum not
    assert errors_of(items) == ["checksum"]
    (frame,) = frames_of(items)
    assert {c.quality for c in frame.channels} == {Quality.ERROR} and {c.value for c in frame.channels} == {None}


def test_unknown_ids_error_and_remote_frames_are_counted_not_fatal(toyota: dict[str, BusDbc]) -> None:
    dec = CanDecoder(toyota)
    assert errors_of(dec.decode(raw("can0", 0x2D5, "00"), T, 0)) == ["unknown_id"]
    assert errors_of(dec.decode(raw("can9", 0xB4, "000000001D0B7A5E"), T, 0)) == ["unknown_id"]  # bus without DBC
    assert errors_of(dec.decode(RawMessage(0, T, "can0", 0, False, b"", error_frame=True), T, 0)) == ["error_frame"]
    assert dec.decode(RawMessage(0, T, "can0", 0xB4, False, b"", remote=True), T, 0) == []
    assert errors_of(dec.decode(raw("can0", 0xB4, "00"), T, 0)) == ["checksum"]  # too short for its checksum
    assert errors_of(dec.decode(raw("can0", 0x1C4, "0A"), T, 0)) == ["decode"]  # ENGINE_RPM, 1 byte of 8
    assert dec.counts["messages"] == 6 and dec.counts["remote"] == 1


def test_counter_skip_is_counted_values_still_published(toyota: dict[str, BusDbc]) -> None:
    dec = CanDecoder(toyota)
    first = "93382608AC0901C9"  # TRACK_A_0, COUNTER 0x93 (README example)
    assert errors_of(dec.decode(raw("can1", 0x210, first), T, 0)) == []
    # synthetic: COUNTER 0x95 (skips 0x94), checksum recomputed
    body = bytearray(bytes.fromhex(first))
    body[0] = 0x95
    body[7] = toyota_checksum(0x210, bytes(body), 7)
    items = dec.decode(RawMessage(0, T, "can1", 0x210, False, bytes(body)), T, 0)
    assert errors_of(items) == ["counter"] and frames_of(items)[0].channels[0].quality is Quality.GOOD


def test_multiplexed_obd2_signal_and_selectors_left_out(shared_data: Path) -> None:
    buses = load_bus_dbcs({"*": [shared_data / "can" / "CSS-Electronics-OBD2-v1.4.dbc"]}, {}, False)
    dec = CanDecoder(buses)
    (frame,) = dec.decode(raw("can1", 0x7E8, "04410C2E35CCCCCC"), T, 0)
    names = {c.name: c.value for c in frame.channels}  # type: ignore[union-attr]
    assert names["OBD2.S1_PID_0C_EngineRPM"] == 2957.25
    assert "OBD2.service" not in names and "OBD2.ParameterID_Service01" not in names
    assert not any(n.startswith("OBD2.S1_PID_05") for n in names)  # other PIDs: not in this message


def test_mapping_renames_units_priority_and_only_mapped(toyota: dict[str, BusDbc]) -> None:
    mapping = {
        "SPEED.SPEED": SignalMap(channel="speed", unit="km/h", priority=Priority.HIGH),
        "SPEED.ENCODER": SignalMap(unit="count"),
    }
    (frame,) = CanDecoder(toyota, mapping, only_mapped=True).decode(raw("can0", 0xB4, "000000001D0B7A5E"), T, 0)
    assert isinstance(frame, Frame) and frame.priority is Priority.HIGH
    assert frame.channels == (Channel("SPEED.ENCODER", 29.0, "count"), Channel("speed", 29.38, "km/h"))
    (frame,) = CanDecoder(toyota, mapping, device="rav4").decode(raw("can0", 0xB4, "000000001D0B7A5E"), T, 0)
    assert len(frame.channels) == 3 and frame.device == "rav4"  # type: ignore[union-attr]


def test_mapping_file_errors_name_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "map.json"
    path.write_text('{"SPEED.SPEED": {"channel": "speed", "priority": "urgent"}}')
    with pytest.raises(ConfigError, match="TELEMETRY_CAN__MAPPING"):
        load_mapping(path)
    path.write_text("[1]")
    with pytest.raises(ConfigError, match="one JSON object"):
        load_mapping(path)
    path.write_text('{"SPEED.SPEED": {"channel": "speed", "unit": "km/h"}}')
    assert load_mapping(path)["SPEED.SPEED"].channel == "speed"


def test_dbc_that_does_not_load_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.dbc"
    bad.write_text("BO_ this is not a dbc\n")
    with pytest.raises(ConfigError, match="TELEMETRY_CAN__DBC"):
        load_bus_dbcs({"can0": [bad]}, {}, True)
    with pytest.raises(ConfigError, match="TELEMETRY_CAN__DBC"):
        load_bus_dbcs({"can0": [tmp_path / "missing.dbc"]}, {}, True)


# ---- ISO-TP --------------------------------------------------------------------------------
def test_isotp_vin_from_the_real_answer() -> None:
    a = IsoTpAssembler()
    key = ("can1", 0x7E8)
    assert a.feed(key, bytes.fromhex("1014490201544D42")) is None
    assert a.feed(key, bytes.fromhex("214A50374E58354E")) is None
    payload = a.feed(key, bytes.fromhex("2259303834393233"))
    assert payload is not None and obd_channels(payload) == (Channel("vin", "TMBJP7NX5NY084923"),)


def test_isotp_errors() -> None:
    a = IsoTpAssembler()
    key = ("can1", 0x7E8)
    with pytest.raises(ParseError, match="without a first frame"):
        a.feed(key, bytes.fromhex("214A50374E58354E"))
    a.feed(key, bytes.fromhex("1014490201544D42"))
    with pytest.raises(ParseError, match="expected 1"):
        a.feed(key, bytes.fromhex("2259303834393233"))  # CF 2 before CF 1: dropped
    with pytest.raises(ParseError, match="without a first frame"):
        a.feed(key, bytes.fromhex("214A50374E58354E"))
    with pytest.raises(ParseError, match="announces"):
        a.feed(key, bytes.fromhex("1003490201544D42"))
    with pytest.raises(ParseError, match="single frame"):
        a.feed(key, bytes.fromhex("0F"))
    assert a.feed(key, bytes.fromhex("3000000000000000")) is None  # flow control: ignored


def test_decoder_reassembles_vin_and_dtc_on_7e8() -> None:
    dec = CanDecoder({})
    out = [
        i
        for d in ("1014490201544D42", "214A50374E58354E", "2259303834393233", "024300CCCCCCCCCC")
        for i in dec.decode(raw("can1", 0x7E8, d), T, 0)
    ]
    vin, dtc = frames_of(out)
    assert vin.channels == (Channel("vin", "TMBJP7NX5NY084923"),)
    assert (
        dtc.channels == (Channel("dtc", ""), Channel("dtc_count", 0.0, "count")) and dtc.priority is Priority.CRITICAL
    )
    # synthetic: a garbled VIN (lower case) is a vin error, not a value
    bad = [
        i
        for d in ("1014490201744D42", "214A50374E58354E", "2259303834393233")
        for i in dec.decode(raw("can1", 0x7E8, d), T, 0)
    ]
    assert errors_of(bad) == ["vin"]


# ---- throttle ------------------------------------------------------------------------------
def ch(v: float, checksum: float = 0.0) -> tuple[Channel, ...]:
    return (Channel("M.x", v), Channel("M.CHECKSUM", checksum))


def test_min_interval_per_message_and_default() -> None:
    th = Throttle({"M": 0.1, "*": 0.5}, {})
    key = ("can0", "M")
    assert [th.allow(key, "M", t, ch(1)) for t in (0.0, 0.05, 0.1, 0.15, 0.2)] == [True, False, True, False, True]
    other = ("can0", "N")
    assert [th.allow(other, "N", t, ch(1)) for t in (0.0, 0.1, 0.5)] == [True, False, True]


def test_deadband_change_only_with_max_silence_ignores_checksums() -> None:
    th = Throttle({}, {"M.x": 0.5}, max_silence_s=1.0)
    key = ("can0", "M")
    decisions = [
        th.allow(key, "M", 0.0, ch(10.0, 1)),
        th.allow(key, "M", 0.1, ch(10.4, 2)),  # moved 0.4 <= 0.5, checksum changed: held
        th.allow(key, "M", 0.2, ch(10.6, 3)),  # moved 0.6 from the last published: out
        th.allow(key, "M", 0.3, ch(10.6, 4)),
        th.allow(key, "M", 1.2, ch(10.6, 5)),  # silent for 1.0 s: out
        th.allow(key, "M", 1.3, (Channel("M.x", None, "", Quality.ERROR), Channel("M.CHECKSUM", 5.0))),
    ]
    assert decisions == [True, False, True, False, True, True]


def test_decoder_counts_suppressed(toyota: dict[str, BusDbc]) -> None:
    dec = CanDecoder(toyota, throttle=Throttle({"SPEED": 1.0}, {}))
    items = [i for t in (0.0, 0.5, 1.0) for i in dec.decode(raw("can0", 0xB4, "000000001D0B7A5E", t), T, 0)]
    assert len(frames_of(items)) == 2 and dec.counts["suppressed"] == 1


# ---- the log feed --------------------------------------------------------------------------
def test_log_feed_skips_bad_lines_and_counts_them(tmp_path: Path, shared_data: Path) -> None:
    """Synthetic log: two real RAV4 lines around garbage; the replay goes on after each bad line."""
    log = tmp_path / "damaged.log"
    log.write_text(
        "(46408.584954) can0 0B4#000000001D0B7A5E\n"
        "garbage line\n"
        "(46408.6) can0 0B4#ZZ\n"
        "\x00\x01\x02\n"
        "(46418.569741) can0 0B4#00000000151C6B58\n"
    )
    d = shared_data / "can"
    cfg = CanSettings(log_file=log, dbc={"can0": [d / "toyota_new_mc_pt_generated.dbc"]}, checksum={"can0": "toyota"})
    source = from_settings(Settings(can=cfg, _env_file=None))  # type: ignore[call-arg]
    source.open()
    items: list[Any] = []
    while not source.exhausted:
        items += source.read(0.2)
    speeds = [c.value for f in frames_of(items) for c in f.channels if c.name == "SPEED.SPEED"]
    assert speeds == [29.38, 72.75] and errors_of(items) == ["syntax", "syntax", "syntax"]
    first, last = frames_of(items)
    assert (last.observed_at - first.observed_at).total_seconds() == pytest.approx(9.984787, abs=1e-6)


def test_dbc_strict_refuses_the_toyota_overlap(shared_data: Path) -> None:
    with pytest.raises(ConfigError, match="TELEMETRY_CAN__DBC"):
        load_bus_dbcs({"can0": [shared_data / "can" / "toyota_new_mc_pt_generated.dbc"]}, {}, True)
    assert cantools.database.load_file(str(shared_data / "can" / "toyota_adas.dbc"))


# ---- corruption ----------------------------------------------------------------------------
def test_rav4_payload_corruption_checksummed_messages_publish_nothing_wrong(shared_data: Path) -> None:
    """1 % of the RAV4 payload bytes flipped: no checksummed message publishes a wrong good value.

    Messages without a checksum cannot tell (a flipped speed byte is a plausible speed): their
    count is printed, and bounded from below so the test can fail if corruption stopped reaching
    the decoder.
    """
    from tests.producers.can_corruption import corruption_tally

    tally = corruption_tally(shared_data / "can", "comma2k19_rav4_2017_seg40_first10s.candump.log")
    print(tally.line())
    assert tally.corrupted > 900 and tally.corrupted_checksummed > 500
    assert tally.wrong_checksummed == 0
    assert tally.checksum_failures >= tally.corrupted_checksummed * 0.99
    assert tally.wrong > 0  # unprotected messages do publish wrong values: the reason checksums matter


# ---- the live bus: failures and reconnects --------------------------------------------------
def test_bus_that_cannot_open_or_dies_is_unavailable_and_reopened(shared_data: Path) -> None:
    """python-can's virtual bus: a closed bus raises, the run loop counts an outage and reopens it."""
    import can
    import fakeredis

    from common.errors import SourceUnavailableError
    from common.schema import decode
    from producers.can.feeds import BusFeed
    from tests.helpers import running_producer, wait_for

    with pytest.raises(SourceUnavailableError, match="nonexistent"):
        BusFeed("nonexistent_interface", "x", None).open()
    d = shared_data / "can"
    cfg = CanSettings(interface="virtual", channel="unit-reopen", dbc={"*": [d / "toyota_new_mc_pt_generated.dbc"]})
    settings = Settings(can=cfg, _env_file=None)  # type: ignore[call-arg]
    source = from_settings(settings)
    feed: Any = source.feed
    redis = fakeredis.FakeRedis()
    stream = settings.redis.names.stream(Priority.NORMAL)
    sender = can.Bus(interface="virtual", channel="unit-reopen")
    try:
        with running_producer(source, redis, settings, "unit", read_timeout=0.05, reconnect_max=0.2) as run:
            wait_for(lambda: feed.bus is not None, 10, what="bus open")
            sender.send(can.Message(arbitration_id=0xB4, is_extended_id=False, data=bytes.fromhex("000000001D0B7A5E")))
            wait_for(lambda: redis.xlen(stream) == 1, 10, what="first frame")
            feed.bus.shutdown()  # the interface goes away under the reader
            wait_for(lambda: feed.bus is not None and not feed.bus._is_shutdown, 10, what="reopened")
            sender.send(can.Message(arbitration_id=0xB4, is_extended_id=False, data=bytes.fromhex("00000000151C6B58")))
            wait_for(lambda: redis.xlen(stream) == 2, 10, what="frame after the reopen")
    finally:
        sender.shutdown()
    assert run.stats.outages == 1 and run.stats.connects == 2
    frames = [decode(fields) for _, fields in redis.xrange(stream)]
    assert [c.value for f in frames for c in f.channels if c.name == "SPEED.SPEED"] == [29.38, 72.75]


def test_error_frames_in_a_log_are_counted(tmp_path: Path, shared_data: Path) -> None:
    """Synthetic candump: a bus-error frame (CAN_ERR_FLAG | CAN_ERR_BUSERROR) between two real frames."""
    log = tmp_path / "errors.log"
    log.write_text(
        "(1.000000) can0 0B4#000000001D0B7A5E\n(1.001000) can0 20000080#0000000000000000\n"
        "(1.002000) can0 0B4#00000000151C6B58\n"
    )
    cfg = CanSettings(log_file=log, dbc={"*": [shared_data / "can" / "toyota_new_mc_pt_generated.dbc"]})
    source = from_settings(Settings(can=cfg, _env_file=None))  # type: ignore[call-arg]
    source.open()
    items: list[Any] = []
    while not source.exhausted:
        items += source.read(0.2)
    assert errors_of(items) == ["error_frame"] and len(frames_of(items)) == 2
    assert source.counters()[("", "decoded")] == 2  # exported as telemetry_producer_source_events_total


def test_multiplexed_message_is_throttled_per_selection(shared_data: Path) -> None:
    buses = load_bus_dbcs({"*": [shared_data / "can" / "CSS-Electronics-OBD2-v1.4.dbc"]}, {}, False)
    dec = CanDecoder(buses, throttle=Throttle({"OBD2": 10.0}, {}))
    rpm, speed = "04410C2E35CCCCCC", "03410D56CCCCCCCC"  # README answers: RPM 2957.25, speed 86
    items = [
        i
        for t, d in ((0.0, rpm), (0.1, speed), (0.2, rpm), (10.0, rpm))
        for i in dec.decode(raw("can1", 0x7E8, d, t), T, 0)
    ]
    names = [c.name for f in frames_of(items) for c in f.channels if c.name.startswith("OBD2.S1_")]
    assert names == ["OBD2.S1_PID_0C_EngineRPM", "OBD2.S1_PID_0D_VehicleSpeed", "OBD2.S1_PID_0C_EngineRPM"]
    assert dec.counts["suppressed"] == 1


# ---- other log formats and pacing ------------------------------------------------------------
def replay_all(cfg: CanSettings) -> list[Frame | ParseError]:
    source = from_settings(Settings(can=cfg, _env_file=None))  # type: ignore[call-arg]
    source.open()
    items: list[Frame | ParseError] = []
    while not source.exhausted:
        items += source.read(0.2)
    source.close()
    return items


@pytest.mark.parametrize("suffix", ["asc", "blf"])
def test_asc_and_blf_replay_like_candump(tmp_path: Path, shared_data: Path, suffix: str) -> None:
    """The J1939 capture written as Vector ASC / BLF by python-can's writers (in tmp_path), replayed:
    the same frames as from the candump. ASC/BLF number their channels: bus ``can<N>``."""
    import can

    d = shared_data / "can"
    log = d / "css_j1939_FCBF0606_00003482_00000001-60B621D9.candump.log"
    converted = tmp_path / f"j1939.{suffix}"
    with can.Logger(str(converted)) as writer:
        for msg in can.LogReader(log):
            writer.on_message_received(msg)
    dbc = {"*": [d / "CSS-Electronics-SAE-J1939-DEMO.dbc"]}
    start = datetime(2026, 1, 1, tzinfo=UTC)
    want = frames_of(replay_all(CanSettings(log_file=log, dbc=dbc, replay_start=start)))
    got = frames_of(replay_all(CanSettings(log_file=converted, dbc=dbc, replay_start=start)))
    assert len(got) == len(want) == 577 + 184
    assert [(f.device, f.channels, f.observed_at) for f in got] == [(f.device, f.channels, f.observed_at) for f in want]


def test_replay_speed_paces_by_log_time(tmp_path: Path, shared_data: Path) -> None:
    """Synthetic candump spanning 0.4 s: real time takes at least 0.4 s, twice as fast at least 0.2 s.
    (As fast as possible: the 10-s RAV4 capture replays in well under a second in tests/integration/test_can.py.)"""
    import time as systime

    log = tmp_path / "paced.log"
    log.write_text("".join(f"({1.0 + 0.1 * i:.6f}) can0 0B4#000000001D0B7A5E\n" for i in range(5)))
    dbc = {"*": [shared_data / "can" / "toyota_new_mc_pt_generated.dbc"]}
    took = {}
    for speed in (0.0, 1.0, 2.0):
        begin = systime.monotonic()
        items = replay_all(CanSettings(log_file=log, dbc=dbc, replay_speed=speed))
        took[speed] = systime.monotonic() - begin
        assert len(frames_of(items)) == 5
    assert took[1.0] >= 0.4 and took[2.0] >= 0.2  # lower bounds only: a busy machine only adds
