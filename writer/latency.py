"""LatencyHistogram: bounded-memory latency distribution with percentiles. Pure.

Log-spaced buckets from 0.1 ms to ~30 min (about 4 % wide), so p50/p99 are accurate to a few
percent whatever the number of samples. Used for end-to-end latency (producer read to
commit) per priority.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from common.schema import Frame

_BASE = 1e-4
_GROWTH = 1.04
_BUCKETS = 420


def _index(seconds: float) -> int:
    if seconds <= _BASE:
        return 0
    return min(_BUCKETS - 1, 1 + int(math.log(seconds / _BASE, _GROWTH)))


def _upper(index: int) -> float:
    return float(_BASE * _GROWTH**index)


@dataclass
class LatencyHistogram:
    counts: list[int] = field(default_factory=lambda: [0] * _BUCKETS)
    total: int = 0
    max: float = 0.0
    sum: float = 0.0

    def add(self, seconds: float, n: int = 1) -> None:
        self.counts[_index(seconds)] += n
        self.total += n
        self.sum += seconds * n
        if seconds > self.max:
            self.max = seconds

    def percentile(self, q: float) -> float:
        """Upper bound of the bucket holding the q-th quantile (0 < q <= 1); 0 when empty."""
        if not self.total:
            return 0.0
        rank = q * self.total
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= rank:
                return self.max if i == _BUCKETS - 1 else min(_upper(i), self.max)
        return self.max

    def summary(self) -> dict[str, float]:
        return {
            "count": self.total,
            "mean_ms": 1000 * self.sum / self.total if self.total else 0.0,
            "p50_ms": 1000 * self.percentile(0.5),
            "p95_ms": 1000 * self.percentile(0.95),
            "p99_ms": 1000 * self.percentile(0.99),
            "max_ms": 1000 * self.max,
        }


def record_latency(hists: dict[str, LatencyHistogram], frames: Sequence[Frame], now: float) -> None:
    """Add each frame's end-to-end latency (``now`` minus its received_at) to its priority's histogram."""
    for f in frames:
        h = hists.get(f.priority.value)
        if h is None:
            h = hists[f.priority.value] = LatencyHistogram()
        h.add(max(0.0, now - f.received_at.timestamp()))
