"""One CAN message -> frames and rejections: the can source's pure core (no python-can, no I/O).

``CanDecoder.decode`` takes a ``RawMessage`` (what the I/O shell read from a bus or log) and
returns what the run loop publishes:

* one Frame per decoded DBC message: device = the bus (or TELEMETRY_CAN__DEVICE), observed at the
  message's time, channels ``MESSAGE.SIGNAL`` (or the mapping file's names) with the DBC's scale,
  offset and unit applied; choice values as their text; multiplexer selectors left out; numbers as
  floats. A frame whose checksum fails is published with every value None and quality ``error``.
* OBD-II answers on 0x7E8-0x7EF that need ISO-TP (the VIN, trouble codes): one frame when complete.
* ParseError (counted by the run loop, never dead-lettered: bus traffic is not data input) for an
  unknown id (``unknown_id``), a failed checksum (``checksum``), a counter skip (``counter``), a
  payload the DBC cannot decode (``decode``), an ISO-TP error (``isotp``), an error frame
  (``error_frame``). Remote frames are counted in ``counts`` only.

Messages held back by the Throttle are counted in ``counts["suppressed"]``; a multiplexed message is
throttled per selection (each OBD-II PID of the OBD2 message on its own).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

from common.errors import ParseError
from common.schema import MAX_UNIT_LEN, Channel, Frame, Priority, Quality
from producers.can.dbc import INTEGRITY_SIGNALS, BusDbc, MessageSpec
from producers.can.integrity import CounterCheck, checksum_ok
from producers.can.isotp import OBD_ANSWER_IDS, IsoTpAssembler, is_obd_special, obd_channels
from producers.can.mapping import PRIORITY_RANK, SignalMap
from producers.can.throttle import Throttle

SOURCE = "can"


class RawMessage(NamedTuple):
    """One CAN message as read, independent of python-can."""

    t: float
    """The message's own time in seconds (bus or log clock): used for throttling."""
    observed_at: datetime
    bus: str
    can_id: int
    extended: bool
    data: bytes
    error_frame: bool = False
    remote: bool = False


class _Layout(NamedTuple):
    """Per (bus, message): channel name, unit, kept? for each signal; and the frame priority."""

    signals: dict[str, tuple[str, str]]
    priority: Priority


class CanDecoder:
    def __init__(
        self,
        buses: Mapping[str, BusDbc],
        mapping: Mapping[str, SignalMap] | None = None,
        only_mapped: bool = False,
        throttle: Throttle | None = None,
        isotp_obd: bool = True,
        device: str | None = None,
    ) -> None:
        self.buses = dict(buses)
        self.mapping = dict(mapping or {})
        self.only_mapped = only_mapped
        self.throttle = throttle or Throttle({}, {})
        self.isotp_obd = isotp_obd
        self.device = device
        self.counters = CounterCheck()
        self.isotp = IsoTpAssembler()
        self.counts: Counter[str] = Counter()
        self._layouts: dict[int, _Layout] = {}

    def bus_dbc(self, bus: str) -> BusDbc | None:
        return self.buses.get(bus) or self.buses.get("*")

    def decode(self, raw: RawMessage, received_at: datetime, mono_ns: int) -> list[Frame | ParseError]:
        self.counts["messages"] += 1
        if raw.error_frame:
            return [ParseError(f"{raw.bus}: error frame", "error_frame")]
        if raw.remote:
            self.counts["remote"] += 1
            return []
        if self.isotp_obd and not raw.extended and raw.can_id in OBD_ANSWER_IDS and is_obd_special(raw.data):
            return self._isotp(raw, received_at, mono_ns)
        dbc = self.bus_dbc(raw.bus)
        spec = dbc.lookup(raw.can_id, raw.extended) if dbc is not None else None
        if spec is None:
            return [ParseError(f"{raw.bus}: no DBC message for id {_id(raw)}", "unknown_id")]
        out: list[Frame | ParseError] = []
        data = raw.data
        good = True
        if spec.checksum_scheme is not None and not checksum_ok(
            spec.checksum_scheme, raw.can_id, data, spec.checksum_index or 0
        ):
            good = False
            out.append(ParseError(f"{raw.bus}: {spec.name} {_id(raw)}#{data.hex()} checksum fails", "checksum"))
        try:
            values = spec.message.decode(data, decode_choices=True, scaling=True)
        except Exception as exc:  # cantools raises DecodeError, ValueError, KeyError ... for bad payloads
            if not good:
                values = {s.name: None for s in spec.message.signals}
            else:
                return [ParseError(f"{raw.bus}: {spec.name} {_id(raw)}#{data.hex()}: {str(exc)[:120]}", "decode")]
        if good and spec.counter_bits and "COUNTER" in values:
            counter = values["COUNTER"]
            if isinstance(counter, int) and not self.counters.check((raw.bus, raw.can_id), counter, spec.counter_bits):
                out.append(ParseError(f"{raw.bus}: {spec.name} counter skipped to {counter}", "counter"))
        layout = self._layout(spec)
        channels = _channels(values, layout, good, spec)
        if not channels:
            return out
        if (
            good
            and self.throttle.active
            and not self.throttle.allow(_throttle_key(raw, spec, values), spec.name, raw.t, channels)
        ):
            self.counts["suppressed"] += 1
            return out
        self.counts["decoded"] += 1
        device = self.device or raw.bus
        out.append(Frame(SOURCE, device, raw.observed_at, received_at, mono_ns, channels, priority=layout.priority))
        return out

    def _layout(self, spec: MessageSpec) -> _Layout:
        layout = self._layouts.get(id(spec))
        if layout is None:
            signals: dict[str, tuple[str, str]] = {}
            priority = Priority.NORMAL if not self.only_mapped else Priority.BULK
            mapped_any = False
            for s in spec.message.signals:
                if s.name in spec.multiplexers:
                    continue
                entry = self.mapping.get(f"{spec.name}.{s.name}")
                if entry is None and self.only_mapped:
                    continue
                name = (entry.channel if entry else None) or f"{spec.name}.{s.name}"
                unit = entry.unit if entry is not None and entry.unit is not None else (s.unit or "")
                signals[s.name] = (name, unit[:MAX_UNIT_LEN])
                if entry is not None:
                    if not mapped_any or PRIORITY_RANK[entry.priority] < PRIORITY_RANK[priority]:
                        priority = entry.priority
                    mapped_any = True
            layout = _Layout(signals, priority if mapped_any else Priority.NORMAL)
            self._layouts[id(spec)] = layout
        return layout

    def _isotp(self, raw: RawMessage, received_at: datetime, mono_ns: int) -> list[Frame | ParseError]:
        try:
            payload = self.isotp.feed((raw.bus, raw.can_id), raw.data)
            if payload is None:
                return []
            channels = obd_channels(payload)
        except ParseError as exc:
            exc.args = (f"{raw.bus}: {_id(raw)}: {exc}",)
            return [exc]
        if channels is None:
            return [ParseError(f"{raw.bus}: {_id(raw)} answer {payload[:8].hex()} not decoded", "decode")]
        self.counts["decoded"] += 1
        priority = Priority.CRITICAL if channels[0].name == "dtc" else Priority.NORMAL
        device = self.device or raw.bus
        return [Frame(SOURCE, device, raw.observed_at, received_at, mono_ns, channels, priority=priority)]


def _channels(values: Mapping[str, Any], layout: _Layout, good: bool, spec: MessageSpec) -> tuple[Channel, ...]:
    out = []
    for signal, (name, unit) in layout.signals.items():
        if signal not in values:  # multiplexed away
            continue
        value = values[signal]
        if not good:
            out.append(Channel(name, None, unit, Quality.ERROR))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
            if math.isfinite(number):
                out.append(Channel(name, number, unit))
            else:
                out.append(Channel(name, None, unit, Quality.ERROR))
        elif value is None:
            out.append(Channel(name, None, unit, Quality.NO_DATA))
        else:  # a choice (cantools NamedSignalValue) or bytes
            text = value.name if hasattr(value, "name") else str(value)
            out.append(Channel(name, str(text).strip(), unit))
    return tuple(out)


def _throttle_key(raw: RawMessage, spec: MessageSpec, values: Mapping[str, Any]) -> tuple[str, str]:
    """(bus, message) for the Throttle; a multiplexed message per selection (OBD2 per PID)."""
    if not spec.multiplexers:
        return (raw.bus, spec.name)
    selection = "/".join(str(values.get(m)) for m in sorted(spec.multiplexers))
    return (raw.bus, f"{spec.name}[{selection}]")


def _id(raw: RawMessage) -> str:
    return f"{raw.can_id:08X}" if raw.extended else f"{raw.can_id:03X}"


__all__ = ["INTEGRITY_SIGNALS", "CanDecoder", "RawMessage"]
