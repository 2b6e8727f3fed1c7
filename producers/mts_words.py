"""The two channel words of an Innovate MTS data packet (shared/protocols.md §3). Pure data."""

from __future__ import annotations

from dataclasses import dataclass


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
