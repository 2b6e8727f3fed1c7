"""Unit names used in every frame, and conversions between them. Pure.

Producers normalise device units to these names; range validation converts a value into
the unit of its range before comparing.
"""

from __future__ import annotations

from collections.abc import Callable

_LINEAR: dict[tuple[str, str], tuple[float, float]] = {
    # (from, to): (scale, offset) so that to = from * scale + offset
    ("degC", "degF"): (9 / 5, 32.0),
    ("degF", "degC"): (5 / 9, -32.0 * 5 / 9),
    ("K", "degC"): (1.0, -273.15),
    ("degC", "K"): (1.0, 273.15),
    ("kPa", "psi"): (0.1450377377, 0.0),
    ("psi", "kPa"): (6.894757293, 0.0),
    ("bar", "kPa"): (100.0, 0.0),
    ("kPa", "bar"): (0.01, 0.0),
    ("km/h", "mph"): (0.6213711922, 0.0),
    ("mph", "km/h"): (1.609344, 0.0),
    ("m/s", "km/h"): (3.6, 0.0),
    ("knot", "km/h"): (1.852, 0.0),
    ("kW", "hp"): (1.341022090, 0.0),
    ("hp", "kW"): (0.745699872, 0.0),
    ("N*m", "ft_lb"): (0.7375621493, 0.0),
    ("ft_lb", "N*m"): (1.355817948, 0.0),
    ("kg", "lb"): (2.204622622, 0.0),
    ("lb", "kg"): (0.45359237, 0.0),
    ("g", "kg"): (0.001, 0.0),
    ("kg", "g"): (1000.0, 0.0),
    # scales (Toledo continuous SWC unit codes: g, t, oz)
    ("t", "kg"): (1000.0, 0.0),
    ("kg", "t"): (0.001, 0.0),
    ("oz", "g"): (28.349523125, 0.0),
    ("g", "oz"): (1 / 28.349523125, 0.0),
    ("lb", "oz"): (16.0, 0.0),
    ("oz", "lb"): (0.0625, 0.0),
}


def converter(src: str, dst: str) -> Callable[[float], float] | None:
    """A function converting ``src`` values to ``dst``, or None if no conversion is known."""
    if src == dst:
        return lambda v: v
    linear = _LINEAR.get((src, dst))
    if linear is None:
        return None
    scale, offset = linear
    return lambda v: v * scale + offset


def convert(value: float, src: str, dst: str) -> float:
    """Convert ``value`` from ``src`` to ``dst``; ValueError if no conversion is known."""
    fn = converter(src, dst)
    if fn is None:
        raise ValueError(f"no conversion from {src!r} to {dst!r}")
    return fn(value)
