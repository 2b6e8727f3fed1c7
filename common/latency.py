"""LatencyHistogram: the one latency distribution type, bounded memory, with percentiles. Pure.

Log-spaced buckets from 0.1 ms to ~30 min (about 4 % wide), so p50/p99 are accurate to a few
percent whatever the number of samples, in a fixed 420 counts. Used for the writer's
end-to-end latency per priority (writer.stats) and for the per-operation durations behind
/summary (common.metrics.OpSummary). Not thread-safe: the owner takes its lock. The
Prometheus histogram ``telemetry_writer_op_seconds`` is prometheus_client's own exposition
type (a few fixed buckets for dashboards), not a second distribution kept here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

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
    """Counts per log-spaced bucket, plus the exact count, sum and max."""

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

    def add_many(self, seconds: Sequence[float]) -> None:
        """``add`` of each value, in one pass (a writer adds a batch of frames at a time)."""
        if not seconds:
            return
        counts = self.counts
        for i in map(_index, seconds):
            counts[i] += 1
        self.total += len(seconds)
        self.sum += sum(seconds)
        self.max = max(self.max, max(seconds))

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
