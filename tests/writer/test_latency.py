"""The latency histogram's percentiles are within one bucket (4 %) of the exact values."""

from __future__ import annotations

import random

from writer.latency import LatencyHistogram


def test_percentiles_track_exact_values() -> None:
    rng = random.Random(7)
    samples = [rng.lognormvariate(-4, 1) for _ in range(20_000)]
    h = LatencyHistogram()
    for s in samples:
        h.add(s)
    samples.sort()
    for q in (0.5, 0.95, 0.99):
        exact = samples[int(q * len(samples)) - 1]
        assert exact <= h.percentile(q) <= exact * 1.05
    assert h.percentile(1.0) == max(samples) == h.max
    assert h.summary()["count"] == 20_000


def test_empty_and_extreme_values() -> None:
    h = LatencyHistogram()
    assert h.percentile(0.99) == 0.0
    h.add(0.0)
    h.add(1e9)
    assert h.percentile(0.5) <= 1e-4 and h.percentile(1.0) == 1e9
