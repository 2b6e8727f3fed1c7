"""Seeded byte corruption and the bookkeeping of the corruption tests (issue 14). Pure.

``flip`` replaces a fixed share of a capture's bytes by a different random byte (XOR with 1..255),
so the corrupted stream has the same length and every record keeps its byte offsets. A record
(a sentence, a scale line, an MTS packet) is *corrupted* when one of its bytes or its terminator
was flipped; a record is *wrong* when the parser accepted it and its decode differs from the clean
decode of the record ending at the same offset (or no clean record ends there).
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterator
from dataclasses import dataclass

SEED = 14
"""The seed of every corruption test (issue 14); change it only together with the thresholds."""
RATE = 0.01
"""Share of the bytes flipped."""


def flip(data: bytes, rate: float = RATE, seed: int = SEED) -> tuple[bytes, frozenset[int]]:
    """``data`` with ``round(len * rate)`` bytes replaced by another value; and their offsets."""
    rng = random.Random(seed)
    out = bytearray(data)
    offsets = rng.sample(range(len(data)), round(len(data) * rate))
    for i in offsets:
        out[i] ^= rng.randrange(1, 256)
    return bytes(out), frozenset(offsets)


def line_pieces(data: bytes, ends: bytes = b"\r\n") -> Iterator[tuple[int, bytes]]:
    """``data`` cut after every line-end byte: (offset of that byte, piece up to and including it)."""
    start = 0
    for i, b in enumerate(data):
        if b in ends:
            yield i, data[start : i + 1]
            start = i + 1
    if start < len(data):
        yield len(data), data[start:]


@dataclass
class Tally:
    """Corrupted records, and those accepted with a value different from the clean decode."""

    name: str
    records: int = 0
    corrupted: int = 0
    accepted: int = 0
    wrong: int = 0

    @property
    def share(self) -> float:
        return self.wrong / self.corrupted if self.corrupted else 0.0

    def line(self) -> str:
        return (
            f"{self.name:44s} records {self.records:6d}  corrupted {self.corrupted:5d}  "
            f"accepted-corrupted {self.accepted:5d}  wrong {self.wrong:4d}  = {100 * self.share:6.3f} %"
        )


def tally(
    name: str,
    clean: dict[int, tuple[int, object]],
    dirty: dict[int, tuple[int, object]],
    flipped: frozenset[int],
) -> Tally:
    """Compare decodes keyed by end offset -> (start offset, decoded record).

    A corrupted record accepted by the parser is *wrong* unless its value equals the clean decode
    of a record overlapping its bytes (a flipped terminator can move where a record ends without
    changing what it says).
    """
    t = Tally(name, records=len(clean))
    t.corrupted = sum(1 for end, (start, _) in clean.items() if _hit(start, end, flipped))
    ends = sorted(clean)
    for end, (start, value) in dirty.items():
        if not _hit(start, end, flipped):
            continue
        t.accepted += 1
        t.wrong += not any(value == ref for ref in _overlapping(clean, ends, start, end))
    return t


def _overlapping(clean: dict[int, tuple[int, object]], ends: list[int], start: int, end: int) -> Iterator[object]:
    for e in ends[bisect.bisect_left(ends, start) :]:
        if clean[e][0] > end:
            return
        yield clean[e][1]


def _hit(start: int, end: int, flipped: frozenset[int]) -> bool:
    return any(i in flipped for i in range(start, end + 1))
