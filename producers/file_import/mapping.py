"""Column mappings for CSV imports: which column is time, device and each channel, with units. Pure.

``plan(header, mapping)`` resolves a ColumnMapping against a file's header into a ``Plan``;
``Plan.row(fields, lineno, ...)`` turns one CSV row into a Frame or raises ParseError naming the line.

Known exports (profiles) are recognised by their header:

* ``winpep8`` (Dynojet WinPEP 8 "Time Export" CSV): the REAL layout of shared/data/dyno
  (``winpep8_wrl_RunFile_*.csv``): ``Time`` (s from the run start) and ``(DWRT CPU) ...``,
  ``(DWRT ATMO) ...``, ``(Gen) ...`` columns, values and names after ", ", a trailing empty column,
  no units row. The units below are the ones the data's README establishes from the values
  (Power = Torque x RPM / 5252, Distance = integral of Speed, Power = Force x Speed); ``Engine RPM``
  is in thousands (scale 1000). Other columns keep their header text and no unit. This replaces
  the layout assumed before a real export existed (``Engine RPM``/``Horsepower`` without prefixes).
* ``powervision`` (Dynojet Power Vision log exported to CSV): NO PUBLIC REAL FILE exists (see
  shared/protocols.md §7), so its column names are ASSUMPTIONS from the vendor's channel names and
  its tests use SYNTHETIC samples: ``Time`` plus ``Engine Speed (RPM)``-style headers with the unit
  in parentheses; time is elapsed seconds.

A wrong guess only changes channel names: any column not named here is still imported under its
own header text, and a mapping can always override everything.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from common.errors import ParseError
from common.import_request import ChannelSpec, ColumnMapping, TimeFormat
from common.schema import MAX_NAME_LEN, Channel, Frame, Priority, Quality

__all__ = ["ChannelSpec", "ColumnMapping", "Plan", "TimeFormat", "detect_profile", "parse_time", "plan", "split_unit"]

# Header text (lower case; powervision: unit removed) -> (channel name, unit, scale to that unit).
PROFILES: dict[str, dict[str, tuple[str, str, float]]] = {
    "powervision": {
        "engine speed": ("rpm", "rpm", 1.0),
        "throttle position": ("tps", "%", 1.0),
        "manifold absolute pressure": ("map", "kPa", 1.0),
        "intake air temperature": ("iat", "degF", 1.0),
        "air fuel ratio": ("afr", "afr", 1.0),
        "vehicle speed": ("speed", "mph", 1.0),
    },
    "winpep8": {
        "(dwrt cpu) engine rpm": ("rpm", "rpm", 1000.0),
        "(dwrt cpu) power": ("horsepower", "hp", 1.0),
        "(dwrt cpu) torque": ("torque", "ft_lb", 1.0),
        "(dwrt cpu) speed": ("speed", "mph", 1.0),
        "(dwrt cpu) power (uncorrected)": ("(DWRT CPU) Power (uncorrected)", "hp", 1.0),
        "(dwrt cpu) power drum 1": ("(DWRT CPU) Power Drum 1", "hp", 1.0),
        "(dwrt cpu) power drum 1 (uncorrected)": ("(DWRT CPU) Power Drum 1 (uncorrected)", "hp", 1.0),
        "(dwrt cpu) torque (uncorrected)": ("(DWRT CPU) Torque (uncorrected)", "ft_lb", 1.0),
        "(dwrt cpu) torque drum 1": ("(DWRT CPU) Torque Drum 1", "ft_lb", 1.0),
        "(dwrt cpu) torque drum 1 (uncorrected)": ("(DWRT CPU) Torque Drum 1 (uncorrected)", "ft_lb", 1.0),
        "(dwrt cpu) speed 1": ("(DWRT CPU) Speed 1", "mph", 1.0),
        "(dwrt cpu) distance": ("(DWRT CPU) Distance", "mi", 1.0),
        "(dwrt cpu) distance 1": ("(DWRT CPU) Distance 1", "mi", 1.0),
        "(dwrt cpu) distance 2": ("(DWRT CPU) Distance 2", "mi", 1.0),
        "(dwrt cpu) force": ("(DWRT CPU) Force", "lbf", 1.0),
        "(dwrt cpu) force 1": ("(DWRT CPU) Force 1", "lbf", 1.0),
        "(dwrt cpu) force drum 1": ("(DWRT CPU) Force Drum 1", "lbf", 1.0),
        "(dwrt atmo) humidity": ("(DWRT ATMO) Humidity", "%", 1.0),
        "(dwrt atmo) pressure": ("(DWRT ATMO) Pressure", "inHg", 1.0),
        "(dwrt cpu) tcp rx kb/s": ("(DWRT CPU) TCP RX kB/s", "kB/s", 1.0),
        "(dwrt cpu) tcp tx kb/s": ("(DWRT CPU) TCP TX kB/s", "kB/s", 1.0),
        "(dwrt cpu) udp rx kb/s": ("(DWRT CPU) UDP RX kB/s", "kB/s", 1.0),
        "(gen) sampling duration": ("(Gen) Sampling Duration", "s", 1.0),
    },
}
WINPEP8_PREFIXES = ("(dwrt cpu) ", "(dwrt atmo) ")
"""Dynojet DynoWare RT module prefixes of WinPEP 8 channel names (the CPU and the atmospheric module)."""

UNIT_ALIASES = {
    "rpm": "rpm", "kpa": "kPa", "psi": "psi", "bar": "bar", "c": "degC", "°c": "degC", "degc": "degC",
    "deg c": "degC", "f": "degF", "°f": "degF", "degf": "degF", "deg f": "degF", "%": "%", "afr": "afr",
    "lambda": "lambda", "hp": "hp", "kw": "kW", "ft-lb": "ft_lb", "ft-lbs": "ft_lb", "lb-ft": "ft_lb",
    "ft_lb": "ft_lb", "nm": "N*m", "n*m": "N*m", "n-m": "N*m", "km/h": "km/h", "kph": "km/h", "mph": "mph",
    "v": "V", "volts": "V", "a": "A", "s": "s", "sec": "s", "ms": "ms", "kg": "kg", "lb": "lb", "g": "g",
}  # fmt: skip
"""Units as written in export headers -> common/units.py names; anything else is kept as written."""

_UNIT_RE = re.compile(r"^(.*?)\s*[(\[]([^()\[\]]{1,20})[)\]]\s*$")
_TIME_NAMES = ("time", "timestamp", "date", "datetime", "time (s)", "time (sec)", "observed_at")


def split_unit(header: str) -> tuple[str, str]:
    """``Engine Speed (RPM)`` -> (``Engine Speed``, ``rpm``); no unit -> (header, "")."""
    m = _UNIT_RE.match(header.strip())
    if not m or not m.group(1):
        return header.strip(), ""
    raw = m.group(2).strip()
    return m.group(1), UNIT_ALIASES.get(raw.lower(), raw[:32])


def detect_profile(header: Sequence[str]) -> str:
    """``winpep8`` (its real module prefixes), ``powervision`` (assumed pattern) or ``generic`` from a header row."""
    names = {split_unit(h)[0].lower() for h in header}
    if any(h.strip().lower().startswith(WINPEP8_PREFIXES) for h in header):
        return "winpep8"
    if "engine speed" in names and any("(" in h for h in header):
        return "powervision"
    return "generic"


def sniff_delimiter(line: str) -> str:
    return max([",", ";", "\t"], key=line.count)


@dataclass(frozen=True)
class Plan:
    """A mapping resolved against one header: column indexes and channel specs."""

    time_index: int
    device_index: int | None
    device: str
    channels: tuple[tuple[int, str, str, float], ...]  # (column index, name, unit, scale)
    time_format: str
    zone: ZoneInfo
    start: datetime | None
    session: str | None
    width: int
    numeric: dict[int, bool] = field(default_factory=dict, compare=False)
    """Column index -> holds numbers, decided by its unit or else its first value (then text there is a bad row)."""

    def row(self, fields: Sequence[str], lineno: int, received_at: datetime, mono: int) -> Frame:
        """One data row -> Frame (bulk priority). Raises ParseError(kind=columns|time|device|value|empty)."""
        if len(fields) != self.width:
            raise ParseError(f"line {lineno}: {len(fields)} fields, header has {self.width}", "columns")
        observed = parse_time(fields[self.time_index].strip(), self.time_format, self.zone, self.start, lineno)
        device = self.device
        if self.device_index is not None:
            device = fields[self.device_index].strip()
            if not device or len(device) > MAX_NAME_LEN:
                raise ParseError(f"line {lineno}: empty or too long device", "device")
        out = [
            ch
            for i, name, unit, scale in self.channels
            if (ch := self._cell(i, fields[i].strip(), name, unit, lineno, scale))
        ]
        if not out:
            raise ParseError(f"line {lineno}: no channel has a value", "empty")
        return Frame(
            "file_import", device, observed, received_at, mono, tuple(out), self.session, priority=Priority.BULK
        )

    def _cell(self, index: int, text: str, name: str, unit: str, lineno: int, scale: float = 1.0) -> Channel | None:
        """A cell -> Channel; empty -> None. A column with a unit, or whose first value was a number,
        is numeric; another may hold text."""
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            if self.numeric.setdefault(index, bool(unit)):
                raise ParseError(f"line {lineno}: {name[:40]!r} = {text[:40]!r} is not a number", "value") from None
            return Channel(name, text[:1000], unit)  # a text column (gear, note, status)
        self.numeric.setdefault(index, True)
        return _number(name, value * scale if scale != 1.0 else value, unit)


def _number(name: str, value: float, unit: str) -> Channel:
    if not math.isfinite(value):
        return Channel(name, None, unit, Quality.ERROR)
    return Channel(name, value, unit)


def parse_time(text: str, fmt: str, zone: ZoneInfo, start: datetime | None, lineno: int) -> datetime:
    """A time cell -> UTC datetime; ParseError(kind=time) naming the line."""
    try:
        if fmt in ("epoch_s", "epoch_ms", "elapsed_s", "elapsed_ms"):
            number = float(text)
            if not math.isfinite(number):
                raise ValueError(text)
            seconds = number / 1000 if fmt.endswith("_ms") else number
            if fmt.startswith("epoch"):
                return datetime.fromtimestamp(seconds, UTC)
            if start is None:
                raise ValueError("elapsed time without a start_time")
            return start + timedelta(seconds=seconds)
        ts = datetime.fromisoformat(text) if fmt == "iso" else datetime.strptime(text, fmt)
        # 0001-01-01T00:00:00+01:00 parses but has no UTC form: OverflowError, a bad row.
        return (ts if ts.tzinfo else ts.replace(tzinfo=zone)).astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        raise ParseError(f"line {lineno}: time {text[:40]!r} is not {fmt} (or out of range)", "time") from None


def guess_time_format(text: str) -> str:
    """auto: ISO text, epoch seconds or ms by magnitude, else elapsed seconds."""
    try:
        number = float(text)
    except ValueError:
        return "iso"
    if number > 1e11:
        return "epoch_ms"
    return "epoch_s" if number > 1e8 else "elapsed_s"


def plan(header: Sequence[str], mapping: ColumnMapping, default_device: str, first_row: Sequence[str]) -> Plan:
    """Resolve ``mapping`` against ``header``; ``first_row`` (the first data row) decides an auto time format.

    Raises ParseError(kind=header) when a named column is missing or no time column is found, and
    when times are elapsed but the mapping has no ``start_time`` (never the file's mtime or the clock).
    """
    header = [h.strip() for h in header]
    index = {h: i for i, h in enumerate(header)}
    profile = detect_profile(header) if mapping.profile == "auto" else mapping.profile
    time_col = mapping.time_column or next((h for h in header if h.lower() in _TIME_NAMES), None)
    for col in (time_col, mapping.device_column, *(mapping.channels or {})):
        if col is not None and col not in index:
            raise ParseError(f"column {col!r} not in header {header[:20]}", "header")
    if time_col is None:
        raise ParseError(f"no time column in header {header[:20]}; set time_column", "header")
    skip = {time_col, mapping.device_column}
    specs = mapping.channels or {h: ChannelSpec() for h in header if h not in skip and h}
    channels, names = [], set()
    for col, spec in specs.items():
        name, unit, scale = _channel(col, spec, profile)
        name = name if name not in names else f"{name} #{index[col]}"  # two columns, one name
        names.add(name)
        channels.append((index[col], name, unit, scale))
    zone = ZoneInfo(mapping.timezone)
    start = mapping.start_time
    first = first_row[index[time_col]].strip() if len(first_row) > index[time_col] else ""
    fmt = guess_time_format(first) if mapping.time_format == "auto" else mapping.time_format
    if fmt.startswith("elapsed") and start is None:
        raise ParseError(f"times in {time_col!r} are elapsed ({fmt}): set start_time in the mapping", "header")
    return Plan(
        time_index=index[time_col],
        device_index=index[mapping.device_column] if mapping.device_column else None,
        device=(mapping.device or default_device)[:MAX_NAME_LEN],
        channels=tuple(channels),
        time_format=fmt,
        zone=zone,
        start=start if start is None or start.tzinfo else start.replace(tzinfo=zone),
        session=mapping.session,
        width=len(header),
    )


def _channel(column: str, spec: ChannelSpec, profile: str) -> tuple[str, str, float]:
    """(name, unit, scale) of a column. A whole-header match of the profile comes first (WinPEP 8's
    ``Power (uncorrected)`` is not a unit); else the unit in the header, else the profile's."""
    table = PROFILES.get(profile, {})
    known = table.get(column.strip().lower())
    if known:
        base, unit, scale = known
    else:
        base, unit = split_unit(column)
        scale = 1.0
        if profile == "winpep8":
            base, unit = column.strip(), ""  # no units in WinPEP 8 headers: "(...)" is part of the name
        elif (match := table.get(base.lower())) is not None:
            base, unit, scale = match[0], unit or match[1], match[2]
    return (spec.name or base)[:MAX_NAME_LEN], spec.unit if spec.unit is not None else unit, scale
