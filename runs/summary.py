"""The summary of a closed run, from its readings and metadata. Pure.

For every run: duration, readings counted, and per channel min/max/mean of the good numeric
readings with the share of readings that are ``good`` (a reading of quality warn, no_data or
error counts against the share and never in min/max/mean).

For a dyno run (runs/readings.py finds RPM and power or torque): peak power and peak torque,
each with the RPM of the same frame, its time and seconds from the start, in the units stored.
When the ambient conditions are known (metadata ``pressure_kpa``, ``temperature_c``,
``humidity_pct``; else the mean of the run's good pressure / air temperature / humidity
channels), the SAE J1349 corrected peaks too (runs/sae.py states the formula and the
reference: 99 kPa dry air, 25 °C). The peaks as stored are the measured ("uncorrected") ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from runs.readings import (
    POWER_NAMES,
    RPM_NAMES,
    TORQUE_NAMES,
    Column,
    DynoPoint,
    Reading,
    WideRow,
    dyno_channels,
    wide,
)
from runs.sae import Ambient, correction_factor, dry_pressure_kpa, pressure_kpa, temperature_c


def summarise(
    readings: Sequence[Reading], started_at: datetime, ended_at: datetime, metadata: Mapping[str, Any]
) -> dict[str, Any]:
    """The summary stored with the run (JSON-able), from all its readings in memory."""
    _, rows = wide(readings)
    return assemble(channel_stats(readings), len(rows), len(readings), readings, started_at, ended_at, metadata)


def assemble(
    stats: list[dict[str, Any]],
    frames: int,
    count: int,
    detail: Sequence[Reading],
    started_at: datetime,
    ended_at: datetime,
    metadata: Mapping[str, Any],
) -> dict[str, Any]:
    """The summary from per-channel ``stats`` (``channel_stats``, or the same computed by PostgreSQL),
    the frame and reading counts, and ``detail``: the readings of the channels ``detail_channels``
    names (RPM, power, torque, ambient), enough for the dyno figures."""
    columns, rows = wide(detail)
    out: dict[str, Any] = {
        "duration_s": round((ended_at - started_at).total_seconds(), 6),
        "readings": count,
        "frames": frames,
        "channels": stats,
    }
    dyno = dyno_channels(columns)
    if dyno is not None:
        points = dyno.points(rows)
        out["dyno"] = dyno_peaks(points, started_at, dyno.power, dyno.torque)
        ambient, origin = ambient_of(metadata, columns, rows)
        if ambient is not None and out["dyno"]:
            out["dyno"]["sae_j1349"] = corrected(out["dyno"], ambient, origin)
    return out


def detail_channels(stats: Sequence[Mapping[str, Any]]) -> list[str]:
    """The channel names whose readings ``assemble`` needs: RPM, power, torque and ambient ones."""
    wanted = set(RPM_NAMES) | set(POWER_NAMES) | set(TORQUE_NAMES)
    return sorted({str(c["channel"]) for c in stats if str(c["channel"]).lower() in wanted or is_ambient(c["channel"])})


def channel_stats(readings: Sequence[Reading]) -> list[dict[str, Any]]:
    """Per (device, channel, unit): count, good_share, and min/max/mean of good numeric values."""
    acc: dict[tuple[str, str, str], list[Any]] = {}
    for r in readings:
        a = acc.setdefault((r.device, r.channel, r.unit), [0, 0, math.inf, -math.inf, 0.0, 0])
        a[0] += 1
        if r.quality == "good":
            a[1] += 1
            if r.value is not None and math.isfinite(r.value):
                a[2], a[3], a[4], a[5] = min(a[2], r.value), max(a[3], r.value), a[4] + r.value, a[5] + 1
    out = []
    for (device, channel, unit), (n, good, lo, hi, total, numeric) in acc.items():
        row: dict[str, Any] = {"device": device, "channel": channel, "unit": unit, "count": n}
        row["good_share"] = good / n
        if numeric:
            row.update(min=lo, max=hi, mean=total / numeric)
        out.append(row)
    return out


def dyno_peaks(
    points: Sequence[DynoPoint], started_at: datetime, power: Column | None, torque: Column | None
) -> dict[str, Any]:
    """Peak power and peak torque, each with the RPM of its frame (the first frame at a tie)."""
    out: dict[str, Any] = {}
    for key, col in (("peak_power", power), ("peak_torque", torque)):
        if col is None:
            continue
        best: DynoPoint | None = None
        for p in points:
            v = getattr(p, key[5:])
            if v is not None and (best is None or v > getattr(best, key[5:])):
                best = p
        if best is not None:
            out[key] = {
                "value": getattr(best, key[5:]),
                "unit": col.unit,
                "rpm": best.rpm,
                "at": best.observed_at.isoformat(),
                "elapsed_s": round((best.observed_at - started_at).total_seconds(), 6),
            }
    return out


_AMBIENT_CHANNELS = {
    # (words any of which the lower-case name contains, names it may equal); never manifold pressure
    "pressure": (("baro", "atmospheric pressure", "ambient pressure"), ("pressure",)),
    "temperature": (("air temp", "ambient temp"), ("temperature", "iat")),
    "humidity": (("humidity",), ()),
}


def is_ambient(channel: str, kind: str | None = None) -> bool:
    """Whether ``channel`` is an ambient pressure/temperature/humidity channel (of ``kind`` if given)."""
    name = channel.lower()
    kinds = [kind] if kind else list(_AMBIENT_CHANNELS)
    return any(name in _AMBIENT_CHANNELS[k][1] or any(w in name for w in _AMBIENT_CHANNELS[k][0]) for k in kinds)


def ambient_of(
    metadata: Mapping[str, Any], columns: Sequence[Column], rows: Sequence[WideRow]
) -> tuple[Ambient | None, str]:
    """Ambient conditions from the metadata (preferred) or the mean of the run's ambient channels."""
    if metadata.get("pressure_kpa") is not None and metadata.get("temperature_c") is not None:
        humidity = float(metadata.get("humidity_pct") or 0.0)
        return Ambient(float(metadata["pressure_kpa"]), float(metadata["temperature_c"]), humidity), "metadata"
    found: dict[str, float] = {}
    for kind in _AMBIENT_CHANNELS:
        for col in columns:
            if not is_ambient(col.channel, kind):
                continue
            values = [v for r in rows if isinstance(v := r.values.get(col), float)]
            if not values:
                continue
            mean = sum(values) / len(values)
            try:
                if kind == "pressure":
                    found[kind] = pressure_kpa(mean, col.unit)
                elif kind == "temperature":
                    found[kind] = temperature_c(mean, col.unit)
                elif col.unit == "%":
                    found[kind] = mean
            except ValueError:
                continue
            break
    if "pressure" in found and "temperature" in found:
        return Ambient(found["pressure"], found["temperature"], found.get("humidity", 0.0)), "channels"
    return None, ""


def corrected(peaks: Mapping[str, Any], ambient: Ambient, origin: str) -> dict[str, Any]:
    """The peaks times the J1349 correction factor, with the conditions used; an error text if impossible."""
    try:
        cf = correction_factor(ambient)
    except ValueError as exc:
        return {"error": str(exc), "ambient_from": origin}
    out: dict[str, Any] = {
        "standard": "SAE J1349: 99 kPa dry air, 25 degC; CF = 1.18*(99/Pd)*sqrt((T+273)/298) - 0.18",
        "ambient_from": origin,
        "pressure_kpa": ambient.pressure_kpa,
        "temperature_c": ambient.temperature_c,
        "humidity_pct": ambient.humidity_pct,
        "dry_pressure_kpa": dry_pressure_kpa(ambient),
        "correction_factor": cf,
    }
    for key in ("peak_power", "peak_torque"):
        if key in peaks:
            out[key] = peaks[key]["value"] * cf
    return out
