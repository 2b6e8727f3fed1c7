"""SAE J1349 power correction to standard atmospheric conditions. Pure.

Reference conditions of SAE J1349 (rev. 2004 and later): 99 kPa **dry-air** pressure and 25 °C
(298 K) intake air. The correction factor, applied to measured (uncorrected) power and torque, is

    CF = 1.18 * (99 / Pd) * sqrt((T + 273) / 298) - 0.18

with Pd the dry-air pressure in kPa (barometric pressure minus the water-vapour partial pressure)
and T the intake air temperature in °C. The vapour pressure is relative humidity * saturation
pressure at T; the saturation pressure uses the Buck (1996) equation
``6.1121 * exp((18.678 - T/234.5) * T / (257.14 + T))`` hPa. Corrected = measured * CF.
Checked against the WinPEP 8 runs of shared/data/dyno, whose "Correction Factor" column this
reproduces within 0.002. Does no I/O and knows nothing of channels (runs/summary.py finds them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

REFERENCE_DRY_KPA = 99.0
REFERENCE_TEMP_C = 25.0

_PRESSURE_TO_KPA = {"kPa": 1.0, "hPa": 0.1, "mbar": 0.1, "bar": 100.0, "psi": 6.894757293, "inHg": 3.386389}


@dataclass(frozen=True, slots=True)
class Ambient:
    """Barometric pressure (kPa), intake air temperature (°C), relative humidity (%, 0 if unknown)."""

    pressure_kpa: float
    temperature_c: float
    humidity_pct: float = 0.0


def saturation_kpa(temperature_c: float) -> float:
    """Saturation vapour pressure of water over water at ``temperature_c`` (Buck 1996), kPa."""
    t = temperature_c
    return 0.61121 * math.exp((18.678 - t / 234.5) * (t / (257.14 + t)))


def dry_pressure_kpa(ambient: Ambient) -> float:
    """Barometric pressure minus the water-vapour partial pressure, kPa."""
    return ambient.pressure_kpa - ambient.humidity_pct / 100.0 * saturation_kpa(ambient.temperature_c)


def correction_factor(ambient: Ambient) -> float:
    """SAE J1349 CF = 1.18*(99/Pd)*sqrt((T+273)/298) - 0.18. ValueError on impossible conditions."""
    if not (50.0 <= ambient.pressure_kpa <= 120.0):
        raise ValueError(f"barometric pressure {ambient.pressure_kpa} kPa is outside 50-120 kPa")
    if not (-40.0 <= ambient.temperature_c <= 60.0):
        raise ValueError(f"intake air temperature {ambient.temperature_c} °C is outside -40-60 °C")
    if not (0.0 <= ambient.humidity_pct <= 100.0):
        raise ValueError(f"relative humidity {ambient.humidity_pct} % is outside 0-100 %")
    pd = dry_pressure_kpa(ambient)
    return 1.18 * (REFERENCE_DRY_KPA / pd) * math.sqrt((ambient.temperature_c + 273.0) / 298.0) - 0.18


def pressure_kpa(value: float, unit: str) -> float:
    """A pressure in kPa from ``unit`` (kPa, hPa, mbar, bar, psi, inHg); ValueError for another unit."""
    try:
        return value * _PRESSURE_TO_KPA[unit]
    except KeyError:
        raise ValueError(f"unknown pressure unit {unit!r}") from None


def temperature_c(value: float, unit: str) -> float:
    """A temperature in °C from degC, degF or K; ValueError for another unit."""
    if unit == "degC":
        return value
    if unit == "degF":
        return (value - 32.0) * 5.0 / 9.0
    if unit == "K":
        return value - 273.15
    raise ValueError(f"unknown temperature unit {unit!r}")
