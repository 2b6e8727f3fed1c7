"""KLHDV wire format of Dynojet JETDRIVE: split datagrams into messages, decode and build payloads. Pure.

Source: "JETDRIVE Network Specification, Revision 2.1", Dynojet Research 2020, and Dynojet's reference
library (Apache-2.0; ``KLHDVMessage.cs``, ``JetdriveNode.cs``, ``JDUnit.cs``); see shared/protocols.md §4.
All integers are little-endian (the reference uses .NET BitConverter; real hardware agrees).
No sockets and no state here: ``producers.dyno_udp.decoder`` keeps per-provider state.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from common.errors import ParseError

ALL_HOSTS = 0xFFFF
"""Destination meaning every node; never a valid source host."""

VERSION = 1
"""Protocol version we send in Ping/Pong; 1..9 are compatible, 10 or more means stop."""

MAX_COMPATIBLE_VERSION = 9

HEADER = struct.Struct("<BHHBH")  # key, length, host, seq, destination
CHANNEL_RECORD = struct.Struct("<HB30sB")  # channel_id, vendor, name, unit
VALUE_RECORD = struct.Struct("<HIf")  # channel_id, provider ms, float32
PING = struct.Struct("<BI")  # version, host_ts
PONG = struct.Struct("<BII")  # version, host_ts (copied), remote_ts
PROVIDER_NAME_LEN = 50


class Key(IntEnum):
    CHANNEL_INFO = 0x01
    CHANNEL_VALUES = 0x02
    CLEAR_CHANNEL_INFO = 0x03
    PING = 0x04
    PONG = 0x05
    REQUEST_CHANNEL_INFO = 0x06


EXTENDED_KEYS = frozenset([0x10, 0x11, 0x12, 0x20, 0x21, 0x22])
"""Optional logging / load-control / brake requests and responses: valid, but not telemetry."""

UNITS: dict[int, str] = {
    0: "s",
    1: "m",
    2: "km/h",
    3: "N",
    4: "kW",
    5: "N*m",
    6: "degC",
    7: "kPa",
    8: "rpm",
    9: "rpm/(km/h)",
    10: "km/h/s",
    11: "afr",
    12: "kg/h",
    13: "lambda",
    14: "V",
    15: "A",
    16: "%",
}
"""JDUnit code -> unit name (common/units.py spelling). The wire is SI and values are kept as sent;
254 (Extended) and 255 (no unit) and unknown codes map to "" (the unit is then in the channel name)."""


@dataclass(frozen=True, slots=True)
class Message:
    key: int
    host: int
    seq: int
    destination: int
    value: bytes


@dataclass(frozen=True, slots=True)
class ChannelDef:
    channel_id: int
    name: str
    unit: str


@dataclass(frozen=True, slots=True)
class Sample:
    channel_id: int
    ts_ms: int
    value: float


def split_datagram(data: bytes) -> tuple[list[Message], ParseError | None]:
    """Every KLHDV message of a datagram, in order, and an error for an unusable tail (if any)."""
    out: list[Message] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < HEADER.size:
            return out, ParseError(f"{len(data) - pos} bytes left, shorter than a KLHDV header", "truncated")
        key, length, host, seq, dest = HEADER.unpack_from(data, pos)
        start = pos + HEADER.size
        if start + length > len(data):
            return out, ParseError(
                f"key 0x{key:02x} from 0x{host:04x} declares {length} bytes, {len(data) - start} present",
                "truncated",
            )
        out.append(Message(key, host, seq, dest, data[start : start + length]))
        pos = start + length
    return out, None


def _text(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("utf-8", errors="replace").strip()


def parse_channel_info(value: bytes) -> tuple[str, list[ChannelDef]]:
    """ChannelInfo value -> (provider name, channel definitions)."""
    if len(value) < PROVIDER_NAME_LEN or (len(value) - PROVIDER_NAME_LEN) % CHANNEL_RECORD.size:
        raise ParseError(f"ChannelInfo of {len(value)} bytes is not 50 + n*34", "length")
    provider = _text(value[:PROVIDER_NAME_LEN])
    channels = []
    for channel_id, _vendor, name, unit in CHANNEL_RECORD.iter_unpack(value[PROVIDER_NAME_LEN:]):
        channels.append(ChannelDef(channel_id, _text(name) or f"channel {channel_id}", UNITS.get(unit, "")))
    return provider, channels


def parse_channel_values(value: bytes) -> list[Sample]:
    """ChannelValues value -> samples: the exact float32 sent, as a float64 (NaN kept)."""
    if len(value) % VALUE_RECORD.size:
        raise ParseError(f"ChannelValues of {len(value)} bytes is not n*10", "length")
    out = []
    for channel_id, ts, raw in VALUE_RECORD.iter_unpack(value):
        # Exactly the float32 that was sent (every float32 is a float64): no rounding to 7 digits,
        # which changed 17975.564453125 into 17975.56, a number the provider never sent.
        out.append(Sample(channel_id, ts, raw))
    return out


def parse_ping(value: bytes) -> tuple[int, int]:
    """Ping value -> (version, host_ts); any echo data after it is ignored by the caller."""
    if len(value) < PING.size:
        raise ParseError(f"Ping of {len(value)} bytes is shorter than 5", "truncated")
    version, host_ts = PING.unpack_from(value)
    return int(version), int(host_ts)


def parse_pong(value: bytes) -> tuple[int, int, int]:
    """Pong value -> (version, our host_ts echoed, remote_ts)."""
    if len(value) < PONG.size:
        raise ParseError(f"Pong of {len(value)} bytes is shorter than 9", "truncated")
    version, host_ts, remote_ts = PONG.unpack_from(value)
    return int(version), int(host_ts), int(remote_ts)


def build_message(key: int, host: int, seq: int, destination: int, value: bytes = b"") -> bytes:
    """One KLHDV message (header + value)."""
    return HEADER.pack(key, len(value), host, seq & 0xFF, destination) + value


def build_ping(host_ts: int, echo: bytes = b"") -> bytes:
    return PING.pack(VERSION, host_ts & 0xFFFFFFFF) + echo


def build_pong(ping_value: bytes, remote_ts: int) -> bytes:
    """Answer to a Ping value: its host_ts copied, our clock, its echo data copied."""
    return PONG.pack(VERSION, PING.unpack_from(ping_value)[1], remote_ts & 0xFFFFFFFF) + ping_value[PING.size :]


def build_channel_info(provider: str, channels: list[tuple[int, str, int]]) -> bytes:
    """ChannelInfo value from (channel_id, name, unit code) triples (used by tests and simulators)."""
    out = provider.encode()[:PROVIDER_NAME_LEN].ljust(PROVIDER_NAME_LEN, b"\x00")
    for channel_id, name, unit in channels:
        out += CHANNEL_RECORD.pack(channel_id, 0, name.encode()[:30], unit)
    return out


def build_channel_values(samples: list[tuple[int, int, float]]) -> bytes:
    """ChannelValues value from (channel_id, ts_ms, value) triples."""
    return b"".join(VALUE_RECORD.pack(cid, ts & 0xFFFFFFFF, v) for cid, ts, v in samples)
