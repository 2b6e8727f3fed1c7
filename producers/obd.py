"""obd: OBD-II PIDs from an ELM327 adapter through python-OBD, polled at per-PID intervals.

Pure part (top): python-OBD values (pint quantities, strings, DTC lists) -> Channels in the
units of common/units.py, and the per-PID schedule. I/O part (bottom): ``ObdSource``.
python-OBD is GPL-2.0-only: this is the only module that imports it, and only when an ``ObdSource``
is built (``python_obd()``), so importing this module for its ``SPEC`` does not load it.
Synchronous polling, not ``obd.Async``: on the ELM327 emulator both sustain the same rate within
noise (1.2-1.8k queries/s), and only polling gives each PID its own interval and sees an unplugged
adapter (the Async thread swallows it).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from common.clock import Clock, SystemClock
from common.errors import ConfigError, ParseError, SourceUnavailableError, unexpected
from common.schema import Channel, Frame, Priority, Quality
from common.settings import Settings
from producers.device_name import device_from_url
from producers.obd_decoders import decode_dtcs, decode_vin, vin_check_digit_ok
from producers.source_spec import SourceSpec

logger = logging.getLogger(__name__)

UNITS: dict[str, tuple[str, float]] = {
    # str(pint unit) as python-OBD 0.7 decodes it -> (declared unit, scale)
    "revolutions_per_minute": ("rpm", 1.0),
    "kilometer_per_hour": ("km/h", 1.0),
    "degree_Celsius": ("degC", 1.0),
    "percent": ("%", 1.0),
    "kilopascal": ("kPa", 1.0),
    "pascal": ("kPa", 0.001),  # EVAP_VAPOR_PRESSURE
    "gps": ("g/s", 1.0),  # python-OBD's name for grams per second (MAF)
    "volt": ("V", 1.0),
    "millivolt": ("V", 0.001),
    "milliampere": ("mA", 1.0),
    "second": ("s", 1.0),
    "minute": ("s", 60.0),  # RUN_TIME_MIL, TIME_SINCE_DTC_CLEARED
    "kilometer": ("km", 1.0),
    "degree": ("deg", 1.0),  # TIMING_ADVANCE, FUEL_INJECT_TIMING
    "ratio": ("ratio", 1.0),  # COMMANDED_EQUIV_RATIO (lambda)
    "lph": ("L/h", 1.0),  # FUEL_RATE
    "count": ("count", 1.0),
}
"""python-OBD's pint units -> the project's unit names; a unit missing here is a ParseError."""

CHANNEL_NAMES: dict[str, str] = {
    # The range table (common.settings.DEFAULT_RANGES) knows these channels by short names.
    "INTAKE_PRESSURE": "map",
    "THROTTLE_POS": "tps",
    "INTAKE_TEMP": "iat",
}
"""Command names whose channel is not simply the lower-cased command name."""

DTC_COMMANDS: dict[str, str] = {"GET_DTC": "dtc", "GET_CURRENT_DTC": "pending_dtc", "FREEZE_DTC": "freeze_dtc"}
"""Trouble-code commands -> channel prefix; their frames go out on the critical stream."""

RAW_DTC_SERVICES: dict[str, int] = {"GET_DTC": 0x43, "GET_CURRENT_DTC": 0x47}
"""Trouble-code commands decoded from their raw answer (obd_decoders), by positive-answer service byte.
No answer or ``NO DATA`` is no_data, never "no codes"; ``43 00`` (the ECU's "none") is no codes."""

CAN_PROTOCOLS = frozenset("6789A")
"""ELM327 protocol ids of ISO 15765-4 (CAN), whose trouble-code answers carry a count byte."""


def channel_name(command: str) -> str:
    """The channel a python-OBD command is published as (``RPM`` -> ``rpm``)."""
    return DTC_COMMANDS.get(command) or CHANNEL_NAMES.get(command) or command.lower()


def normalise_quantity(magnitude: float, unit: str) -> tuple[float, str]:
    """A pint magnitude and unit name -> (value, declared unit). ParseError(kind=unit) if unknown."""
    try:
        declared, scale = UNITS[unit]
    except KeyError:
        raise ParseError(f"unknown python-OBD unit {unit[:40]!r}", "unit") from None
    value = float(magnitude) * scale
    if not math.isfinite(value):
        raise ParseError(f"non-finite value {magnitude!r} {unit[:40]}", "value")
    return value, declared


def dtc_channels(prefix: str, value: object) -> tuple[Channel, ...]:
    """DTCs (python-OBD ``[(code, description), ...]`` or one tuple) -> ``<prefix>`` codes and count."""
    items = [value] if isinstance(value, tuple) else value
    if not isinstance(items, list) or not all(isinstance(i, tuple) and i and isinstance(i[0], str) for i in items):
        raise ParseError(f"{prefix}: expected a list of (code, description), got {type(value).__name__}", "type")
    codes = ",".join(i[0].upper() for i in items)  # SAE J2012 writes U100F; python-OBD says U100f
    return (Channel(prefix, codes), Channel(prefix + "_count", float(len(items)), "count"))


def decode_value(command: str, value: object) -> tuple[Channel, ...]:
    """One non-null python-OBD value -> its channels. ParseError(kind=unit|type|value) if unusable."""
    name = channel_name(command)
    if command in DTC_COMMANDS:
        return dtc_channels(name, value)
    if isinstance(value, bool):
        return (Channel(name, float(value)),)
    if hasattr(value, "magnitude") and hasattr(value, "units"):
        number, unit = normalise_quantity(value.magnitude, str(value.units))
        return (Channel(name, number, unit),)
    if isinstance(value, bytes | bytearray):
        return (Channel(name, decode_text(value)),)
    if isinstance(value, str):
        return (Channel(name, value),)
    if isinstance(value, tuple) and all(isinstance(v, str | None) for v in value):
        return (Channel(name, ",".join(v for v in value if v)),)  # FUEL_STATUS
    raise ParseError(f"{command}: cannot publish a {type(value).__name__} value", "type")


def decode_text(raw: bytes | bytearray) -> str:
    """ASCII text from the car (VIN, calibration id), without padding or control characters."""
    return "".join(c for c in raw.decode("ascii", "replace") if c.isprintable()).strip()


def no_data_channels(command: str, units: Mapping[str, str]) -> tuple[Channel, ...]:
    """The channels of ``command`` with value None and quality no_data (``units``: last seen units)."""
    name = channel_name(command)
    if command in DTC_COMMANDS:  # the count's unit is fixed; known before any answer
        return (Channel(name, None, "", Quality.NO_DATA), Channel(name + "_count", None, "count", Quality.NO_DATA))
    return (Channel(name, None, units.get(name, ""), Quality.NO_DATA),)


class PidSchedule:
    """Which commands are due at a monotonic time ``now`` (seconds); each has its own interval."""

    def __init__(self, intervals: Mapping[str, float]) -> None:
        self.intervals = dict(intervals)
        self.next_at = dict.fromkeys(self.intervals, 0.0)

    def due(self, now: float) -> list[str]:
        """Commands due at ``now``, in configured order; marks them done for one interval.

        A command more than one interval late is not queried again to catch up: its next slot
        is ``now + interval``.
        """
        out = [c for c, at in self.next_at.items() if at <= now]
        for c in out:
            at = self.next_at[c] + self.intervals[c]
            self.next_at[c] = at if at >= now else now + self.intervals[c]
        return out

    def wait(self, now: float) -> float:
        """Seconds until the next command is due (0 if one is due)."""
        return max(0.0, min(self.next_at.values()) - now)

    def reset(self) -> None:
        self.next_at = dict.fromkeys(self.intervals, 0.0)


def python_obd() -> Any:
    """The python-OBD module, imported on first use (an optional extra: ``pip install .[obd]``)."""
    import obd

    return obd


Connect = Callable[[], Any]
"""Returns a connected ``obd.OBD`` (or anything with ``query``, ``status`` and ``close``)."""


class ObdSource:
    """Polls ``pids`` (python-OBD command name -> interval s) on one ELM327 adapter.

    Each polling round (the commands due together) becomes one frame; DTC commands go in a
    separate critical frame. The VIN is read once per connection and sent as text channel ``vin``.
    """

    source = "obd"

    def __init__(
        self,
        connect: Connect,
        pids: Mapping[str, float],
        device: str,
        car_retry_s: float = 10.0,
        clock: Clock | None = None,
    ) -> None:
        unknown = [p for p in pids if not python_obd().commands.has_name(p)]
        if unknown:
            raise ConfigError(f"TELEMETRY_OBD__PIDS: unknown python-OBD commands {unknown}")
        self.connect = connect
        self.commands = {p: python_obd().commands[p] for p in pids}
        self.schedule = PidSchedule(pids)
        self.device = device
        self.car_retry_s = car_retry_s
        self.clock = clock or SystemClock()
        self.vin: str | None = None
        self.units: dict[str, str] = {}
        self._conn: Any = None
        self._car = False
        self._lost: str | None = None
        self._retry_car_at = 0.0
        self._report_no_car = False
        self._new_vin = False
        self._errors: list[ParseError] = []
        self._can = True

    @property
    def exhausted(self) -> bool:
        return False

    def open(self) -> None:
        self.close()
        conn = self.connect()
        if conn.status() == python_obd().OBDStatus.NOT_CONNECTED:
            conn.close()
            raise SourceUnavailableError(f"{self.device}: no ELM327 adapter answers")
        self._conn = conn
        self._lost = None
        self._car = conn.status() == python_obd().OBDStatus.CAR_CONNECTED
        self._can = str(conn.protocol_id()) in CAN_PROTOCOLS
        self._retry_car_at = self._now() + self.car_retry_s
        self._report_no_car = not self._car
        self.schedule.reset()
        if self._car:
            self._read_vin()
        else:
            logger.warning("%s: adapter answers, the car does not (ignition off?)", self.device)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self._car = False

    def read(self, timeout: float) -> Sequence[Frame | ParseError]:
        if self._lost is not None:
            raise SourceUnavailableError(self._lost)
        if self._conn is None:
            self.open()
        if not self._car:
            return self._read_without_car(timeout)
        out: list[Frame | ParseError] = []
        deadline = self._now() + timeout
        while self._lost is None:
            now = self._now()
            due = self.schedule.due(now)
            if due:
                out.extend(self._round(due))
            if self._now() >= deadline:
                break
            if not due:
                time.sleep(min(self.schedule.wait(now), deadline - now))
        return out

    def _round(self, due: list[str]) -> list[Frame | ParseError]:
        """Query the due commands; return the round's frame, a DTC frame and parse errors."""
        now, mono = self.clock.now(), self.clock.monotonic_ns()
        values: list[Channel] = []
        dtcs: list[Channel] = []
        errors: list[Frame | ParseError] = []
        if self._new_vin and self.vin is not None:
            # the check digit is mandatory in North America (WMI 1-5) only
            checked = self.vin[0] not in "12345" or vin_check_digit_ok(self.vin)
            values.append(Channel("vin", self.vin, "", Quality.GOOD if checked else Quality.WARN))
            self._new_vin = False
        errors += self._errors
        self._errors = []
        for command in due:
            response = self._conn.query(self.commands[command], force=True)
            if self._conn.status() == python_obd().OBDStatus.NOT_CONNECTED:
                self._lost = f"{self.device}: adapter disconnected"  # raised by the next read()
                break
            try:
                channels = self._channels(command, response)
            except ParseError as exc:
                errors.append(exc)
                continue
            except Exception as exc:  # one response must never end the producer (issue 12)
                errors.append(unexpected(exc, f"{command} response {str(response.value)[:60]!r}"))
                continue
            (dtcs if command in DTC_COMMANDS else values).extend(channels)
        received = self.clock.now()
        frames: list[Frame | ParseError] = [
            Frame(self.source, self.device, now, received, mono, tuple(chs), priority=prio)
            for chs, prio in ((values, Priority.NORMAL), (dtcs, Priority.CRITICAL))
            if chs
        ]
        return frames + errors

    def _channels(self, command: str, response: Any) -> tuple[Channel, ...]:
        if command in RAW_DTC_SERVICES:
            return self._dtc_channels(command, response)
        # python-OBD returns a null response (value None) for NO DATA, UNABLE TO CONNECT, a
        # timeout or an unsupported PID; it does not say which.
        value = response.value
        if value is None:
            return no_data_channels(command, self.units)
        channels = decode_value(command, value)
        for ch in channels:
            self.units[ch.name] = ch.unit
        return channels

    def _dtc_channels(self, command: str, response: Any) -> tuple[Channel, ...]:
        """Trouble codes from the raw answer: python-OBD reads ``NO DATA`` as an empty list."""
        payloads = [bytes(m.data) for m in response.messages if m.data]  # NO DATA: a message without data
        if not payloads:
            return no_data_channels(command, self.units)
        codes = decode_dtcs(payloads, RAW_DTC_SERVICES[command], can=self._can)
        name = channel_name(command)
        return (Channel(name, ",".join(codes)), Channel(name + "_count", float(len(codes)), "count"))

    def _read_without_car(self, timeout: float) -> list[Frame | ParseError]:
        """Ignition off: one no_data frame per attempt to reach the car, every ``car_retry_s``."""
        if not self._report_no_car:
            if self._now() < self._retry_car_at:
                time.sleep(timeout)
                return []
            self.open()
            if self._car:
                return []
        self._report_no_car = False
        now, mono = self.clock.now(), self.clock.monotonic_ns()
        channels = [ch for c in self.commands for ch in no_data_channels(c, self.units)]
        return [Frame(self.source, self.device, now, now, mono, tuple(channels))]

    def _now(self) -> float:
        return self.clock.monotonic_ns() / 1e9

    def _read_vin(self) -> None:
        """The VIN from the raw service 09 PID 02 answer (python-OBD's decoder trims it)."""
        response = self._conn.query(python_obd().commands.VIN, force=True)
        payloads = [bytes(m.data) for m in response.messages if m.data]
        if not payloads:
            return  # no answer: nothing to say
        try:
            vin = decode_vin(payloads)
        except ParseError as exc:
            logger.warning("%s: %s", self.device, exc)
            self._errors.append(exc)
            return
        if vin != self.vin:
            logger.info("%s: VIN %s", self.device, vin)
        self.vin = vin
        self._new_vin = True


def from_settings(s: Settings) -> ObdSource:
    """The source ``telemetry-produce obd`` runs, from the ``TELEMETRY_OBD__*`` settings."""
    cfg = s.obd

    def connect() -> Any:
        return python_obd().OBD(cfg.url, baudrate=cfg.baudrate, protocol=cfg.protocol, fast=cfg.fast, timeout=2.0)

    return ObdSource(connect, cfg.pids, cfg.device or device_from_url(cfg.url, "obd"), cfg.car_retry_s)


SPEC = SourceSpec("obd", "obd", from_settings, "OBD-II PIDs from an ELM327 adapter (python-OBD, optional extra)")
