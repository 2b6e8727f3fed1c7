"""Innovate MTS packets checked against their neighbours: what a checksum would have caught. Pure.

MTS has no checksum, and line noise inside a lambda or O2 value, a multiplier or a function code
mostly leaves a well-formed packet. But a chain streams without pause (about 12 packets/s) and a
sensor cannot jump for one packet and back: so each packet is held until the next one arrives and
is released only if it agrees with a neighbour.

* Structure: the channel kinds, each lambda channel's function code F and multiplier AF equal
  those of the previous accepted packet or of the next packet (a real change persists, so the next one confirms it).
* Values: for each channel, compared with the neighbours of the same kind, F and AF, the value lies
  within the range they span, widened by ``TOLERANCE`` (ramps and steps pass; an isolated outlier
  does not).

A packet that agrees with neither neighbour is a ParseError of kind ``isolated``. The first packet
is judged by the next one alone, and ``flush()`` (the line went quiet) judges the held one by the
previous alone. The cost is one packet of latency (about 80 ms).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

from common.errors import ParseError
from producers.mts_words import AuxWord, LambdaWord

T = TypeVar("T")
Channels = Sequence[LambdaWord | AuxWord]

TOLERANCE: dict[int | None, int] = {0: 10, 1: 5, 4: 20, 6: 0, None: 10}
"""How far (raw L units) a value may lie outside its neighbours' range, by function code (None: aux).
Lambda 0.010, O2 0.5 %, warm-up 2 %, error codes exactly; aux 10 of 1023."""


def _shape(channels: Channels) -> tuple[tuple[int | None, int], ...]:
    return tuple((c.function, c.stoich_x10) if isinstance(c, LambdaWord) else (None, 0) for c in channels)


def consistent(held: Channels, neighbours: Sequence[Channels]) -> bool:
    """True if ``held`` agrees with one of ``neighbours`` in structure and lies within their values."""
    shape = _shape(held)
    same = [n for n in neighbours if _shape(n) == shape]
    if not same:
        return False
    for i, ch in enumerate(held):
        function = ch.function if isinstance(ch, LambdaWord) else None
        tolerance = TOLERANCE.get(function)
        if tolerance is None:
            continue  # calibration states: the value is a countdown or unused
        values = [n[i].value for n in same]
        if not min(values) - tolerance <= ch.value <= max(values) + tolerance:
            return False
    return True


class MtsConsistency(Generic[T]):
    """``push(channels, tag)`` each decoded data packet; get back the previous one's verdict.

    ``tag`` travels with the packet (the source passes its receive time) and comes back with it.
    """

    def __init__(self) -> None:
        self.rejected = 0
        self._prev: Channels | None = None
        self._held: tuple[Channels, T] | None = None

    def push(self, channels: Channels, tag: T) -> list[tuple[Channels, T] | ParseError]:
        held, self._held = self._held, (channels, tag)
        if held is None:
            return []
        neighbours = [channels] if self._prev is None else [self._prev, channels]
        return [self._verdict(held, neighbours)]

    def flush(self) -> list[tuple[Channels, T] | ParseError]:
        """Judge the held packet by the previous one alone (no next packet is coming soon)."""
        held, self._held = self._held, None
        if held is None:
            return []
        neighbours = [] if self._prev is None else [self._prev]
        return [self._verdict(held, neighbours)]

    def reset(self) -> None:
        """A new connection: forget the neighbours (the held packet is dropped)."""
        self._prev = self._held = None

    def _verdict(self, held: tuple[Channels, T], neighbours: list[Channels]) -> tuple[Channels, T] | ParseError:
        if consistent(held[0], neighbours):
            self._prev = held[0]
            return held
        self.rejected += 1
        return ParseError("packet agrees with neither neighbour (line noise in a value?)", "isolated")
