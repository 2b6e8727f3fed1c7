"""dyno_udp: KLHDV framing, decoder state and the socket source over unicast loopback.

Every byte vector here is SYNTHETIC, built by hand from the JETDRIVE Network Specification 2.1
(shared/protocols.md §4): no public JetDrive capture exists. No servers are needed.
"""

from __future__ import annotations

import math
import random
import socket
import struct
import time
from datetime import UTC, datetime, timedelta

import pytest

from common.errors import ParseError
from common.schema import Frame, Quality
from common.settings import Settings
from producers.dyno_udp import DynoUdpSource, wire
from producers.dyno_udp.decoder import TIME_SOURCE, JetDriveDecoder, canonical_name, seq_gap
from producers.validate import RangeValidator
from tests.producers.jetdrive_peer import CHANNELS, POWER_CORE, JetDrivePeer

T0 = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
PEER = ("192.0.2.7", 22344)  # never contacted: decoder tests only look at the outbox
US = 0x1234


class FakeClock:
    def __init__(self) -> None:
        self.mono_ns = 5_000_000_000

    def now(self) -> datetime:
        return T0 + timedelta(microseconds=(self.mono_ns - 5_000_000_000) // 1000)

    def monotonic_ns(self) -> int:
        return self.mono_ns

    def advance(self, ms: int) -> None:
        self.mono_ns += ms * 1_000_000


# Synthetic, hand-assembled from the spec: ChannelValues (key 0x02), length 10, host 0x43FD, seq 7,
# destination ALL_HOSTS; one record: channel 1, provider time 1000 ms (e8 03 00 00), 1303.75 (0x44A2F800).
VALUES_HEX = "02 0a00 fd43 07 ffff 0100 e8030000 00f8a244"


def msg(key: int, value: bytes = b"", host: int = POWER_CORE, seq: int = 1, dest: int = wire.ALL_HOSTS) -> bytes:
    return wire.build_message(key, host, seq, dest, value)


def info(host: int = POWER_CORE, seq: int = 1, name: str = "Power Core CPU") -> bytes:
    return msg(wire.Key.CHANNEL_INFO, wire.build_channel_info(name, CHANNELS), host, seq)


def values(samples: list[tuple[int, int, float]], host: int = POWER_CORE, seq: int = 2) -> bytes:
    return msg(wire.Key.CHANNEL_VALUES, wire.build_channel_values(samples), host, seq)


def frames_of(items: list[Frame | ParseError]) -> list[Frame]:
    return [i for i in items if isinstance(i, Frame)]


def errors_of(items: list[Frame | ParseError]) -> list[str]:
    return [i.kind for i in items if isinstance(i, ParseError)]


# ---- wire ----------------------------------------------------------------------------------------
def test_hand_built_channel_values_vector_decodes() -> None:
    messages, err = wire.split_datagram(bytes.fromhex(VALUES_HEX))
    assert err is None
    [m] = messages
    assert (m.key, m.host, m.seq, m.destination) == (2, 0x43FD, 7, 0xFFFF)
    assert wire.parse_channel_values(m.value) == [wire.Sample(1, 1000, 1303.75)]


def test_channel_info_layout_and_units() -> None:
    # 50-byte NUL-padded provider name, then 34-byte records: id u16, vendor u8, 30-byte name, unit u8
    value = b"Atmospheric Probe".ljust(50, b"\x00")
    value += struct.pack("<HB30sB", 7, 0, b"Pressure", 7) + struct.pack("<HB30sB", 8, 0, b"Humidity", 16)
    value += struct.pack("<HB30sB", 9, 0, b"Internal Temp 1", 6) + struct.pack("<HB30sB", 10, 0, b"Raw", 255)
    provider, channels = wire.parse_channel_info(value)
    assert provider == "Atmospheric Probe"
    assert [(c.channel_id, c.name, c.unit) for c in channels] == [
        (7, "Pressure", "kPa"),
        (8, "Humidity", "%"),
        (9, "Internal Temp 1", "degC"),
        (10, "Raw", ""),
    ]


def test_several_messages_in_one_datagram_and_truncated_tail() -> None:
    data = info() + values([(1, 10, 2000.0)]) + b"\x02\x0a\x00"
    messages, err = wire.split_datagram(data)
    assert [m.key for m in messages] == [1, 2]
    assert err is not None and err.kind == "truncated"
    _, err = wire.split_datagram(msg(2, wire.build_channel_values([(1, 1, 1.0)]))[:-3])
    assert err is not None and err.kind == "truncated"


def test_ping_pong_payloads() -> None:
    ping = wire.build_ping(123456, b"echo")
    assert ping == b"\x01" + struct.pack("<I", 123456) + b"echo"
    pong = wire.build_pong(ping, 999)
    assert wire.parse_pong(pong) == (1, 123456, 999) and pong.endswith(b"echo")


def test_seq_gap_wraps_255_to_0() -> None:
    assert seq_gap(255, 0) == 0
    assert seq_gap(3, 7) == 3
    assert seq_gap(254, 1) == 2
    assert seq_gap(9, 8) >= 128  # reordered, not a loss


# ---- decoder -------------------------------------------------------------------------------------
def test_values_for_unknown_channels_are_held_requested_then_released() -> None:
    clock, dec = FakeClock(), JetDriveDecoder(US)
    errs = dec.feed(values([(1, 100, 3000.0), (2, 100, 95.5)], seq=1), PEER, clock.now(), clock.mono_ns)
    assert errs == []
    assert frames_of(dec.flush(clock.now(), clock.mono_ns)) == []
    sent = [wire.split_datagram(d)[0][0] for _, d in dec.outbox]
    assert [m.key for m in sent] == [wire.Key.REQUEST_CHANNEL_INFO, wire.Key.PING]
    assert all(m.destination == POWER_CORE and m.host == US for m in sent)
    assert {addr for addr, _ in dec.outbox} == {PEER}
    dec.feed(info(seq=2), PEER, clock.now(), clock.mono_ns)
    [frame] = frames_of(dec.flush(clock.now(), clock.mono_ns))
    assert frame.device == "power-core-cpu" and frame.source == "dyno_udp"
    by_name = {c.name: c for c in frame.channels}
    assert (by_name["Engine RPM"].value, by_name["Engine RPM"].unit) == (3000.0, "rpm")
    assert (by_name["Torque"].value, by_name["Torque"].unit) == (95.5, "N*m")
    assert by_name[TIME_SOURCE].value == "receive"
    assert dec.stats["released"] == 2


def test_frames_grouped_per_provider_and_timestamp() -> None:
    clock, dec = FakeClock(), JetDriveDecoder(US)
    dec.feed(info(), PEER, clock.now(), clock.mono_ns)
    dec.feed(info(host=0x43FE, name="Atmospheric Probe"), PEER, clock.now(), clock.mono_ns)
    dec.feed(values([(1, 100, 3000.0), (2, 100, 90.0), (1, 120, 3100.0)]), PEER, clock.now(), clock.mono_ns)
    dec.feed(values([(3, 100, 40.0)], seq=3), PEER, clock.now(), clock.mono_ns)  # same ts, next message
    dec.feed(values([(4, 7, 55.0)], host=0x43FE), PEER, clock.now(), clock.mono_ns)
    frames = frames_of(dec.flush(clock.now(), clock.mono_ns))
    got = {(f.device, len(f.channels) - 1) for f in frames}
    assert got == {("power-core-cpu", 3), ("power-core-cpu", 1), ("atmospheric-probe", 1)}
    # without a Pong: the newest value of a message is "now", older ones earlier by their difference
    t100 = next(f for f in frames if f.device == "power-core-cpu" and len(f.channels) == 4)
    assert t100.observed_at == clock.now() - timedelta(milliseconds=20)


def test_pong_offset_converts_provider_time() -> None:
    clock, dec = FakeClock(), JetDriveDecoder(US)
    dec.feed(info(), PEER, clock.now(), clock.mono_ns)
    dec.flush(clock.now(), clock.mono_ns)
    [ping] = [wire.split_datagram(d)[0][0] for _, d in dec.outbox if d[0] == wire.Key.PING]
    _, host_ts = wire.parse_ping(ping.value)
    clock.advance(40)  # round trip 40 ms -> latency 20 ms; provider clock read 70_000 ms at the reply
    pong = wire.build_pong(ping.value, 70_000)
    dec.feed(msg(wire.Key.PONG, pong, seq=2, dest=US), PEER, clock.now(), clock.mono_ns)
    assert dec.stats["pongs"] == 1
    clock.advance(500)
    dec.feed(values([(1, 70_400, 5000.0)], seq=3), PEER, clock.now(), clock.mono_ns)
    [frame] = frames_of(dec.flush(clock.now(), clock.mono_ns))
    # the sample was taken 400 ms after the provider's 70_000, which was 20 ms before the pong arrived
    expected = clock.now() - timedelta(milliseconds=500) - timedelta(milliseconds=20) + timedelta(milliseconds=400)
    assert frame.observed_at == expected
    assert {c.name: c.value for c in frame.channels}[TIME_SOURCE] == "ping"
    assert host_ts == 5000  # our monotonic ms at the ping


def test_clear_channel_info_drops_the_map() -> None:
    clock, dec = FakeClock(), JetDriveDecoder(US, request_interval_ms=0)
    dec.feed(info(), PEER, clock.now(), clock.mono_ns)
    dec.feed(msg(wire.Key.CLEAR_CHANNEL_INFO, seq=2), PEER, clock.now(), clock.mono_ns)
    dec.outbox.clear()
    dec.feed(values([(1, 5, 1.0)], seq=3), PEER, clock.now(), clock.mono_ns)
    assert frames_of(dec.flush(clock.now(), clock.mono_ns)) == []
    assert any(d[0] == wire.Key.REQUEST_CHANNEL_INFO for _, d in dec.outbox)


def test_held_values_are_bounded_and_expire_counted() -> None:
    clock, dec = FakeClock(), JetDriveDecoder(US, hold_max=3, hold_ms=1000)
    errs = dec.feed(values([(9, t, 1.0) for t in range(5)], seq=1), PEER, clock.now(), clock.mono_ns)
    assert [e.kind for e in errs] == ["unknown_channel"] * 2
    clock.advance(1500)
    out = dec.flush(clock.now(), clock.mono_ns)
    assert errors_of(out) == ["unknown_channel"] * 3 and frames_of(out) == []
    assert dec.stats["held_dropped"] == 5


def test_sequence_gaps_counted_per_host() -> None:
    clock, dec = FakeClock(), JetDriveDecoder(US)
    kinds = []
    for seq in (250, 251, 255, 0, 1, 3, 2):
        kinds += [e.kind for e in dec.feed(msg(wire.Key.CLEAR_CHANNEL_INFO, seq=seq), PEER, clock.now(), 0)]
    kinds += [e.kind for e in dec.feed(msg(wire.Key.CLEAR_CHANNEL_INFO, host=7, seq=40), PEER, clock.now(), 0)]
    assert kinds == ["seq_gap", "seq_gap"]  # 252-254 and 2 lost; 255 -> 0 is no gap; 2 late
    assert dec.stats["lost_messages"] == 4 and dec.stats["out_of_order"] == 1


def test_answers_pings_and_ignores_own_messages() -> None:
    clock, dec = FakeClock(), JetDriveDecoder(US)
    dec.feed(msg(wire.Key.PING, wire.build_ping(777, b"xy"), host=0), PEER, clock.now(), clock.mono_ns)
    [(addr, pong)] = dec.outbox
    [m] = wire.split_datagram(pong)[0]
    assert (addr, m.key, m.host, m.destination) == (PEER, wire.Key.PONG, US, 0)
    assert wire.parse_pong(m.value) == (1, 777, 5000) and m.value.endswith(b"xy")
    assert dec.feed(msg(wire.Key.CHANNEL_VALUES, b"", host=US), PEER, clock.now(), 0) == []
    assert dec.stats["own"] == 1


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"\xde\xad\xbe", "truncated"),
        (msg(wire.Key.CHANNEL_VALUES, b"\x00" * 9), "length"),
        (msg(wire.Key.CHANNEL_INFO, b"\x00" * 60), "length"),
        (msg(0x7F, b"abc"), "unknown_key"),
        (msg(wire.Key.CHANNEL_VALUES, b"", host=0xFFFF), "reserved_host"),
        (msg(wire.Key.CHANNEL_VALUES, b"", host=0), "reserved_host"),
        (msg(wire.Key.PING, b"\x0a" + b"\x00" * 4), "version"),
        (msg(wire.Key.PING, b"\x01\x00"), "truncated"),
        (msg(wire.Key.PONG, b"\x01" + b"\x00" * 3, dest=US), "truncated"),
        (msg(wire.Key.PONG, wire.PONG.pack(1, 1, 1), dest=US), "stale_pong"),
    ],
)
def test_bad_input_is_counted_never_raised(data: bytes, kind: str) -> None:
    clock = FakeClock()
    clock.advance(100_000)
    dec = JetDriveDecoder(US)
    assert [e.kind for e in dec.feed(data, PEER, clock.now(), clock.mono_ns)] == [kind]


def test_non_finite_value_becomes_error_quality_and_dup_names_stay_distinct() -> None:
    clock, dec = FakeClock(), JetDriveDecoder(US)
    value = wire.build_channel_info("P", [(1, "Temp", 6), (2, "Temp", 6), (3, "time_source", 255)])
    dec.feed(msg(wire.Key.CHANNEL_INFO, value), PEER, clock.now(), 0)
    dec.feed(values([(1, 1, float("nan")), (2, 1, 20.0), (3, 1, 1.0)]), PEER, clock.now(), 0)
    [frame] = frames_of(dec.flush(clock.now(), 0))
    by_name = {c.name: c for c in frame.channels}
    assert by_name["Temp"].value is None and by_name["Temp"].quality is Quality.ERROR
    assert by_name["Temp #2"].value == 20.0 and by_name["time_source #3"].value == 1.0


# ---- the socket source over unicast loopback -----------------------------------------------------
def test_source_over_unicast_loopback_requests_info_and_syncs_clock() -> None:
    source = DynoUdpSource("127.0.0.1", 0, host_id=US, ping_interval_ms=100)
    source.open()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    peer = JetDrivePeer(sock, ("127.0.0.1", source.bound_port))
    peer.start_serving()
    try:
        frames: list[Frame] = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(_ts(f) == "ping" for f in frames):
            peer.send_values([(1, peer.clock_ms(), 2500.0), (3, peer.clock_ms(), 30.0)])
            frames += frames_of(list(source.read(0.05)))
        kinds = {m.key for m in peer.received}
        assert {wire.Key.REQUEST_CHANNEL_INFO, wire.Key.PING} <= kinds
        synced = [f for f in frames if _ts(f) == "ping"]
        assert synced, f"no frame timed by ping/pong; stats {source.decoder.stats}"
        assert abs((synced[-1].observed_at - synced[-1].received_at).total_seconds()) < 0.5
        assert {c.name for c in synced[-1].channels} == {"Engine RPM", "Power", TIME_SOURCE}
    finally:
        peer.close()
        source.close()


def _ts(frame: Frame) -> object:
    return next(c.value for c in frame.channels if c.name == TIME_SOURCE)


# ---- issue 14, findings 4 and 5 (SYNTHETIC vectors: no JetDrive capture exists) -------------------


def test_values_are_the_exact_float32_sent() -> None:
    """Finding 4: 17975.564453125 was published as 17975.56; now every float32 arrives bit for bit."""
    raw = struct.pack("<HIf", 1, 100, 17975.564453125)
    assert wire.parse_channel_values(raw) == [wire.Sample(1, 100, 17975.564453125)]
    rng = random.Random(14)
    sent = [struct.unpack("<f", rng.randbytes(4))[0] for _ in range(1003)]
    sent = [v for v in sent if math.isfinite(v)]
    clock, dec = FakeClock(), JetDriveDecoder(US)
    dec.feed(info(), PEER, clock.now(), clock.mono_ns)
    for i, v in enumerate(sent):
        dec.feed(values([(1, i, v)], seq=2 + i % 250), PEER, clock.now(), clock.mono_ns)
    got = [
        c.value for f in frames_of(dec.flush(clock.now(), clock.mono_ns)) for c in f.channels if c.name == "Engine RPM"
    ]
    assert got == sent  # exact float equality: the float64 holding each float32


def test_dynojet_names_and_si_units_meet_the_range_table() -> None:
    """Finding 5: Engine RPM -> rpm, Torque [N*m] -> torque, Power [kW] -> horsepower, checked after conversion."""
    settings = Settings()
    clock, dec = FakeClock(), JetDriveDecoder(US, aliases=settings.dyno_udp.aliases)
    dec.feed(info(), PEER, clock.now(), clock.mono_ns)  # Engine RPM rpm, Torque N*m, Power kW, Humidity %
    validator = RangeValidator(settings.producer.ranges)

    def checked(rpm: float, torque: float, power: float) -> dict[str, tuple[float | str | None, str, Quality]]:
        dec.feed(values([(1, 5, rpm), (2, 5, torque), (3, 5, power), (4, 5, 40.0)]), PEER, clock.now(), clock.mono_ns)
        [frame] = frames_of(dec.flush(clock.now(), clock.mono_ns))
        return {c.name: (c.value, c.unit, c.quality) for c in validator.check(frame).channels}

    ok = checked(3000.0, 2700.0, 1400.0)  # 2700 N*m = 1991 ft_lb; 1400 kW = 1877 hp
    assert ok["rpm"] == (3000.0, "rpm", Quality.GOOD)
    assert ok["torque"] == (2700.0, "N*m", Quality.GOOD)  # the value stays as sent, in SI
    assert ok["horsepower"] == (1400.0, "kW", Quality.GOOD)
    assert ok["Humidity"][2] is Quality.GOOD  # no alias: the provider's name
    bad = checked(30000.0, 1e9, 1600.0)  # 1e9 N*m was published as good; 1600 kW = 2146 hp
    assert {name: q for name, (_, _, q) in bad.items() if name != TIME_SOURCE} == {
        "rpm": Quality.ERROR,
        "torque": Quality.ERROR,
        "horsepower": Quality.ERROR,
        "Humidity": Quality.GOOD,
    }
    assert checked(3000.0, 2800.0, 100.0)["torque"][2] is Quality.ERROR  # 2800 N*m = 2065 ft_lb > 2000


def test_alias_needs_the_declared_unit_and_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    """An alias applies only with its unit (a Torque in no unit cannot be range-checked as N*m)."""
    aliases = Settings().dyno_udp.aliases
    assert canonical_name(aliases, "engine rpm", "rpm") == "rpm"
    assert canonical_name(aliases, "Torque", "") == "Torque"
    monkeypatch.setenv("TELEMETRY_DYNO_UDP__ALIASES", '{"Drum 1 Force": {"channel": "force", "unit": "N"}}')
    custom = Settings().dyno_udp.aliases
    assert (
        canonical_name(custom, "Drum 1 Force", "N") == "force" and canonical_name(custom, "Torque", "N*m") == "Torque"
    )
