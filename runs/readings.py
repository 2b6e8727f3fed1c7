"""A run's readings as rows, the wide pivot (one row per frame time) and which channels are the dyno's. Pure.

``Reading`` is one row of the ``readings`` view. ``wide`` pivots them to one row per
(observed_at, device) with a column per channel. ``dyno_channels`` picks the RPM, power and torque
channels of a run by name (case-insensitive: ``Engine RPM``/``rpm``, ``Power``/``horsepower``,
``Torque``); ``rpm_scale`` turns a ``krpm`` channel (WinPEP exports RPM in thousands) into rpm.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

RPM_NAMES = ("engine rpm", "rpm", "engine speed")
POWER_NAMES = ("power", "horsepower")
TORQUE_NAMES = ("torque",)


class Reading(NamedTuple):
    observed_at: datetime
    device: str
    channel: str
    unit: str
    value: float | None
    quality: str
    text_value: str | None = None


@dataclass(frozen=True, slots=True)
class Column:
    device: str
    channel: str
    unit: str

    def header(self, with_device: bool) -> str:
        """``Torque [N*m]``, or ``power-core-cpu/Torque [N*m]`` in a run of several devices."""
        name = f"{self.device}/{self.channel}" if with_device else self.channel
        return f"{name} [{self.unit}]" if self.unit else name


@dataclass(frozen=True, slots=True)
class WideRow:
    observed_at: datetime
    device: str
    values: dict[Column, float | str | None]


def wide(readings: Iterable[Reading]) -> tuple[list[Column], list[WideRow]]:
    """Columns (in first-seen order) and one row per (observed_at, device), in time order.

    Only good readings give a value; a reading of another quality is an empty cell, so what a
    sensor did not say (or said badly) never reappears as a number.
    """
    columns: dict[Column, None] = {}
    rows: dict[tuple[datetime, str], dict[Column, float | str | None]] = {}
    for r in readings:
        col = Column(r.device, r.channel, r.unit)
        columns.setdefault(col, None)
        cells = rows.setdefault((r.observed_at, r.device), {})
        cells[col] = (r.value if r.value is not None else r.text_value) if r.quality == "good" else None
    ordered = sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1]))
    return list(columns), [WideRow(t, d, cells) for (t, d), cells in ordered]


def find_column(columns: Sequence[Column], names: Sequence[str]) -> Column | None:
    """The first column whose channel name (lower case) is one of ``names``, in ``names`` order."""
    for name in names:
        for col in columns:
            if col.channel.lower() == name:
                return col
    return None


def rpm_scale(unit: str) -> float:
    """Factor from the RPM channel's unit to rpm (``krpm`` -> 1000)."""
    return 1000.0 if unit.lower() == "krpm" else 1.0


@dataclass(frozen=True, slots=True)
class DynoPoint:
    observed_at: datetime
    rpm: float
    power: float | None
    torque: float | None


@dataclass(frozen=True, slots=True)
class DynoChannels:
    rpm: Column
    power: Column | None
    torque: Column | None

    def points(self, rows: Iterable[WideRow]) -> list[DynoPoint]:
        """The frames that have a good numeric RPM and power or torque, RPM in rpm."""
        out = []
        scale = rpm_scale(self.rpm.unit)
        for row in rows:
            rpm = _num(row.values.get(self.rpm))
            power = _num(row.values.get(self.power)) if self.power else None
            torque = _num(row.values.get(self.torque)) if self.torque else None
            if rpm is not None and (power is not None or torque is not None):
                out.append(DynoPoint(row.observed_at, rpm * scale, power, torque))
        return out


def pull_only(points: Sequence[DynoPoint]) -> list[DynoPoint]:
    """The acceleration part of a pull: the points up to the first one at the highest RPM. A chassis
    dyno's coast-down after it (RPM falling, power negative) is real data but not the power curve."""
    if not points:
        return []
    ordered = sorted(points, key=lambda p: p.observed_at)
    top = max(range(len(ordered)), key=lambda i: (ordered[i].rpm, -i))
    return ordered[: top + 1]


def dyno_channels(columns: Sequence[Column]) -> DynoChannels | None:
    """The run's RPM, power and torque channels, or None when it has no RPM or neither of the others."""
    rpm = find_column(columns, RPM_NAMES)
    power = find_column(columns, POWER_NAMES)
    torque = find_column(columns, TORQUE_NAMES)
    if rpm is None or (power is None and torque is None):
        return None
    return DynoChannels(rpm, power, torque)


def _num(value: float | str | None) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
