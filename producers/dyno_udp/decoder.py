"""JETDRIVE session state: per-provider channel maps, clock offsets, held values and loss counts. Pure.

``JetDriveDecoder.feed(datagram, addr, now, mono_ns)`` decodes one datagram and queues readings and
outbound messages (Pong, Ping, RequestChannelInfo: ``outbox``, each with the address to send it to);
``flush(now, mono_ns)`` returns the frames built since the last call (one per provider and provider
timestamp), schedules pings and expires held values. No sockets here (``DynoUdpSource`` sends the outbox).

Time: a provider stamps values with its own ms clock. Once it answers one of our Pings, the offset of
Cristian's algorithm (as the reference ``JetdriveNode.CalcTimestamp``) turns that clock into ours and
the frame carries ``time_source="ping"``; until then the newest value of each message is taken as
received now, older ones earlier by their provider-relative difference (``time_source="receive"``).
Provider clocks wrap after 49.7 days (u32 ms); that wrap is not handled.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from common.errors import ParseError, unexpected
from common.schema import Channel, Frame, Quality
from common.settings import JetDriveAlias
from producers.dyno_udp import wire

TIME_SOURCE = "time_source"
"""Text channel added to every frame: ``ping`` (provider clock + Ping/Pong offset) or ``receive``."""

Address = tuple[str, int]
"""An (IPv4 address, port) a datagram came from; where replies to that host go in unicast mode."""

Outbound = tuple[Address, bytes]
"""(address, datagram) to send."""


@dataclass(frozen=True, slots=True)
class _Held:
    channel_id: int
    value: float
    ts_ms: int
    observed_at: datetime
    time_source: str
    received_at: datetime
    mono_ns: int


@dataclass
class _Provider:
    host: int
    addr: Address
    last_heard_ms: int
    device: str = ""
    channels: dict[int, wire.ChannelDef] = field(default_factory=dict)
    last_seq: int | None = None
    offset_ms: int | None = None
    latency_ms: int = 0
    next_ping_ms: int = 0
    last_request_ms: int | None = None
    held: deque[_Held] = field(default_factory=deque)


@dataclass
class _Pending:
    observed_at: datetime
    received_at: datetime
    mono_ns: int
    time_source: str
    channels: dict[str, Channel] = field(default_factory=dict)


def slug(name: str) -> str:
    """Provider name -> device name: ``Power Core CPU`` -> ``power-core-cpu``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60]


def canonical_name(aliases: Mapping[str, JetDriveAlias], name: str, unit: str) -> str:
    """The channel a provider's channel is published as: its alias (name any case, unit as required)."""
    folded = name.casefold()
    alias = next((a for key, a in aliases.items() if key.casefold() == folded), None)
    if alias is None or (alias.unit is not None and alias.unit != unit):
        return name
    return alias.channel


def seq_gap(last: int, seq: int) -> int:
    """Messages missing between ``last`` and ``seq`` (u8, wraps 255 -> 0); >= 128 means reordered."""
    return (seq - (last + 1)) & 0xFF


class JetDriveDecoder:
    """State of one JETDRIVE client (us, host ``host_id``) listening to every provider on the group."""

    def __init__(
        self,
        host_id: int,
        ping_interval_ms: int = 5000,
        hold_max: int = 1000,
        hold_ms: int = 5000,
        request_interval_ms: int = 1000,
        max_providers: int = 256,
        aliases: Mapping[str, JetDriveAlias] | None = None,
    ) -> None:
        if not 0 < host_id < wire.ALL_HOSTS:
            raise ValueError(f"host id must be 1..0xFFFE, got {host_id}")
        self.host_id = host_id
        self.ping_interval_ms = ping_interval_ms
        self.hold_max = hold_max
        self.hold_ms = hold_ms
        self.request_interval_ms = request_interval_ms
        self.max_providers = max_providers
        self.aliases = dict(aliases or {})
        """Provider channel name (any case) -> canonical channel (see ``canonical_name``)."""
        self.providers: dict[int, _Provider] = {}
        self.outbox: list[Outbound] = []
        self.stats: Counter[str] = Counter()
        self._seq = 0
        self._pending: dict[tuple[int, int], _Pending] = {}
        self._device_owner: dict[str, int] = {}

    # ---- input -------------------------------------------------------------------------------------
    def feed(self, data: bytes, addr: Address, now: datetime, mono_ns: int) -> list[ParseError]:
        """Decode one datagram received from ``addr`` at ``now``; return the problems found."""
        try:
            messages, tail_error = wire.split_datagram(data)
        except Exception as exc:  # one datagram must never end the producer (issue 12)
            return [unexpected(exc, f"datagram of {len(data)} bytes")]
        errors = [tail_error] if tail_error else []
        now_ms = mono_ns // 1_000_000
        for msg in messages:
            try:
                errors.extend(self._message(msg, addr, now, mono_ns, now_ms))
            except ParseError as exc:
                errors.append(exc)
            except Exception as exc:
                errors.append(unexpected(exc, f"key 0x{msg.key:02x} from host 0x{msg.host:04x}"))
        return errors

    def _message(self, msg: wire.Message, addr: Address, now: datetime, mono_ns: int, now_ms: int) -> list[ParseError]:
        self.stats["messages"] += 1
        if msg.host == self.host_id:
            self.stats["own"] += 1  # multicast loops our own Pings back to us
            return []
        if msg.host == wire.ALL_HOSTS:
            raise ParseError(f"key 0x{msg.key:02x} from reserved source 0xFFFF", "reserved_host")
        if msg.host == 0:  # a node negotiating its id pings from 0; it sends nothing else
            if msg.key == wire.Key.PING:
                return self._ping(msg, addr, now_ms)
            raise ParseError(f"key 0x{msg.key:02x} from reserved host 0", "reserved_host")
        p = self._provider(msg.host, addr, now_ms)
        errors = self._sequence(p, msg.seq)
        try:
            errors += self._dispatch(p, msg, addr, now, mono_ns, now_ms)
        except ParseError as exc:
            errors.append(exc)
        return errors

    def _dispatch(
        self, p: _Provider, msg: wire.Message, addr: Address, now: datetime, mono_ns: int, now_ms: int
    ) -> list[ParseError]:
        to_us = msg.destination in (self.host_id, wire.ALL_HOSTS)
        if msg.key == wire.Key.PING:
            return self._ping(msg, addr, now_ms)
        if msg.key == wire.Key.CHANNEL_VALUES:
            return self._values(p, wire.parse_channel_values(msg.value), now, mono_ns, now_ms)
        if msg.key == wire.Key.CHANNEL_INFO:
            self._channel_info(p, *wire.parse_channel_info(msg.value))
        elif msg.key == wire.Key.CLEAR_CHANNEL_INFO:
            p.channels.clear()
        elif msg.key == wire.Key.PONG and to_us:
            self._pong(p, msg.value, now_ms)
        elif msg.key in (wire.Key.PONG, wire.Key.REQUEST_CHANNEL_INFO) or msg.key in wire.EXTENDED_KEYS:
            self.stats["ignored"] += 1  # pongs for other clients, requests to providers, dyno control
        else:
            raise ParseError(f"unknown key 0x{msg.key:02x} from 0x{msg.host:04x}", "unknown_key")
        return []

    def _provider(self, host: int, addr: Address, now_ms: int) -> _Provider:
        p = self.providers.get(host)
        if p is None:
            if len(self.providers) >= self.max_providers:  # bounded: forget the longest silent one
                oldest = min(self.providers.values(), key=lambda q: q.last_heard_ms)
                del self.providers[oldest.host]
            p = self.providers[host] = _Provider(host, addr, now_ms, next_ping_ms=now_ms)
        p.addr, p.last_heard_ms = addr, now_ms
        return p

    def _sequence(self, p: _Provider, seq: int) -> list[ParseError]:
        last, p.last_seq = p.last_seq, seq
        if last is None or (gap := seq_gap(last, seq)) == 0:
            return []
        if gap >= 128:
            self.stats["out_of_order"] += 1
            p.last_seq = last  # a late message: keep counting from the newest one seen
            return []
        self.stats["lost_messages"] += gap
        return [ParseError(f"host 0x{p.host:04x}: {gap} messages lost (seq {last} -> {seq})", "seq_gap")]

    def _ping(self, msg: wire.Message, addr: Address, now_ms: int) -> list[ParseError]:
        if msg.destination not in (self.host_id, wire.ALL_HOSTS):
            return []
        version, _ = wire.parse_ping(msg.value)
        if version > wire.MAX_COMPATIBLE_VERSION:
            raise ParseError(f"Ping version {version} from 0x{msg.host:04x} is incompatible", "version")
        self._send(addr, wire.Key.PONG, msg.host, wire.build_pong(msg.value, now_ms))
        return []

    def _pong(self, p: _Provider, value: bytes, now_ms: int) -> None:
        version, host_ts, remote_ts = wire.parse_pong(value)
        if version > wire.MAX_COMPATIBLE_VERSION:
            raise ParseError(f"Pong version {version} from 0x{p.host:04x} is incompatible", "version")
        rtt = (now_ms - host_ts) & 0xFFFFFFFF
        if rtt > 60_000:  # not an answer to a recent ping of ours
            raise ParseError(f"Pong from 0x{p.host:04x} echoes a timestamp {rtt} ms old", "stale_pong")
        latency = rtt // 2
        # Cristian's algorithm, as the reference: keep the smallest latency seen
        p.latency_ms = latency if p.offset_ms is None else min(p.latency_ms, latency)
        p.offset_ms = now_ms - remote_ts
        self.stats["pongs"] += 1

    def _channel_info(self, p: _Provider, provider_name: str, channels: list[wire.ChannelDef]) -> None:
        device = slug(provider_name) or f"jetdrive-{p.host:04x}"
        owner = self._device_owner.get(device)
        if owner is not None and owner != p.host and owner in self.providers:
            device = f"{device}-{p.host:04x}"  # two providers with one name stay two devices
        self._device_owner[device] = p.host
        p.device = device
        for c in channels:
            others = {d.name for cid, d in p.channels.items() if cid != c.channel_id}
            canonical = canonical_name(self.aliases, c.name, c.unit)
            unique = canonical not in others and canonical != TIME_SOURCE
            name = canonical if unique else f"{canonical} #{c.channel_id}"
            p.channels[c.channel_id] = wire.ChannelDef(c.channel_id, name, c.unit)
        known = [h for h in p.held if h.channel_id in p.channels]
        p.held = deque(h for h in p.held if h.channel_id not in p.channels)
        for h in known:
            self._add(p, h)
        self.stats["released"] += len(known)

    def _values(
        self, p: _Provider, samples: list[wire.Sample], now: datetime, mono_ns: int, now_ms: int
    ) -> list[ParseError]:
        if not samples:
            return []
        newest = max(s.ts_ms for s in samples)
        errors: list[ParseError] = []
        unknown = False
        for s in samples:
            obs, how = self._observed(p, s.ts_ms, newest, now, now_ms)
            held = _Held(s.channel_id, s.value, s.ts_ms, obs, how, now, mono_ns)
            if s.channel_id in p.channels:
                self._add(p, held)
                continue
            unknown = True
            if len(p.held) >= self.hold_max:
                errors.append(self._drop(p, p.held.popleft(), "hold buffer full"))
            p.held.append(held)
        if unknown and (p.last_request_ms is None or now_ms - p.last_request_ms >= self.request_interval_ms):
            p.last_request_ms = now_ms
            self._send(p.addr, wire.Key.REQUEST_CHANNEL_INFO, p.host, b"")
        return errors

    def _observed(self, p: _Provider, ts: int, newest: int, now: datetime, now_ms: int) -> tuple[datetime, str]:
        if p.offset_ms is not None:
            age = now_ms - (ts + p.offset_ms - p.latency_ms)
            if -1000 <= age <= 3_600_000:  # otherwise the provider restarted its clock: fall back
                return now - timedelta(milliseconds=max(age, 0)), "ping"
        return now - timedelta(milliseconds=newest - ts), "receive"

    def _add(self, p: _Provider, h: _Held) -> None:
        c = p.channels[h.channel_id]
        pending = self._pending.get((p.host, h.ts_ms))
        if pending is None:
            pending = _Pending(h.observed_at, h.received_at, h.mono_ns, h.time_source)
            self._pending[(p.host, h.ts_ms)] = pending
        if h.value != h.value or h.value in (float("inf"), float("-inf")):
            pending.channels[c.name] = Channel(c.name, None, c.unit, Quality.ERROR)
        else:
            pending.channels[c.name] = Channel(c.name, h.value, c.unit)

    def _drop(self, p: _Provider, h: _Held, why: str) -> ParseError:
        self.stats["held_dropped"] += 1
        return ParseError(f"host 0x{p.host:04x} channel {h.channel_id}: value dropped, {why}", "unknown_channel")

    def _send(self, addr: Address, key: int, destination: int, value: bytes) -> None:
        self._seq = (self._seq + 1) & 0xFF
        self.outbox.append((addr, wire.build_message(key, self.host_id, self._seq, destination, value)))
        self.stats[f"sent_{wire.Key(key).name.lower()}"] += 1

    # ---- output ------------------------------------------------------------------------------------
    def flush(self, now: datetime, mono_ns: int) -> list[Frame | ParseError]:
        """Frames decoded since the last flush; expire held values; queue due Pings."""
        now_ms = mono_ns // 1_000_000
        out: list[Frame | ParseError] = []
        for p in self.providers.values():
            while p.held and now_ms - p.held[0].mono_ns // 1_000_000 > self.hold_ms:
                out.append(self._drop(p, p.held.popleft(), f"channel unknown after {self.hold_ms} ms"))
            if now_ms >= p.next_ping_ms:
                p.next_ping_ms = now_ms + self.ping_interval_ms
                self._send(p.addr, wire.Key.PING, p.host, wire.build_ping(now_ms))
        for (host, _ts), pend in self._pending.items():
            known = self.providers.get(host)
            device = known.device if known and known.device else f"jetdrive-{host:04x}"
            channels = (*pend.channels.values(), Channel(TIME_SOURCE, pend.time_source))
            out.append(Frame("dyno_udp", device, pend.observed_at, pend.received_at, pend.mono_ns, channels))
        self._pending.clear()
        return out
