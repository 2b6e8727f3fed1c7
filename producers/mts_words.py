"""The two channel words of an Innovate MTS data packet and what their values may be (protocols.md §3). Pure."""

from __future__ import annotations

from dataclasses import dataclass

from common.errors import ParseError

FUNCTIONS = ("lambda", "o2", "free_air_cal", "cal_needed", "warmup", "heater_cal", "error", "reserved")
"""Lambda channel function codes F=0..7 as status labels."""

STOICH_X10 = (60, 180)
"""Plausible AFR multipliers x10: methanol 6.4 ... CNG 17.2 (gasoline 14.7, E85 9.8, diesel 14.5, LPG 15.5)."""

VALUE_LIMITS: dict[int, tuple[int, int]] = {
    0: (0, 1023),  # lambda 0.5 .. 1.523 (LC-1 range; "lean max" 22.4 AFR on gasoline)
    1: (0, 250),  # O2 0 .. 25.0 %: free air is 20.9 %, exhaust has less
    4: (0, 1000),  # warm-up progress 0 .. 100.0 %
    6: (1, 15),  # error codes: LC-1 App. C lists 1-9 (codes above 8 unchecked); 0 is no error
}
"""Plausible 13-bit values L per function code (others: any)."""


@dataclass(frozen=True, slots=True)
class LambdaWord:
    """One lambda/AFR channel: function F, stoichiometric AFR x10, 13-bit value L."""

    function: int
    stoich_x10: int
    value: int


@dataclass(frozen=True, slots=True)
class AuxWord:
    """One aux channel: 10-bit value 0..1023 (13 bits on the wire)."""

    value: int


def check_lambda(word: LambdaWord) -> LambdaWord:
    """``word`` if its function code, multiplier and value are consistent; else ParseError(kind=value).

    MTS has no checksum, so these are what stops line noise: F=7 is reserved, the multiplier is a
    fuel's stoichiometric ratio, and each function's value has its own range (``VALUE_LIMITS``).
    """
    if word.function == 7:
        raise ParseError("lambda word with the reserved function code 7", "value")
    if not STOICH_X10[0] <= word.stoich_x10 <= STOICH_X10[1]:
        raise ParseError(f"stoichiometric ratio {word.stoich_x10 / 10} is no fuel's", "value")
    low, high = VALUE_LIMITS.get(word.function, (0, 8191))
    if not low <= word.value <= high:
        raise ParseError(f"function {FUNCTIONS[word.function]} value {word.value} outside {low}..{high}", "value")
    return word
