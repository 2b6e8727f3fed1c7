"""FillEstimator: rate over the window and time until full, with explicit sample times."""

from __future__ import annotations

import math

from common.fill import FillEstimator


def test_needs_two_samples_and_a_capacity() -> None:
    est = FillEstimator()
    est.add(100, 1000, at=0.0)
    assert est.rate() is None and est.seconds_until_full() is None
    est.add(300, 1000, at=10.0)
    assert est.rate() == 20.0
    assert est.seconds_until_full() == 35.0  # (1000 - 300) / 20
    no_limit = FillEstimator()
    no_limit.add(1, 0, at=0.0)
    no_limit.add(2, 0, at=1.0)
    assert no_limit.rate() == 1.0 and no_limit.seconds_until_full() is None  # maxmemory 0 = no limit


def test_not_growing_is_infinite_and_full_is_zero() -> None:
    est = FillEstimator()
    est.add(500, 1000, at=0.0)
    est.add(400, 1000, at=5.0)
    assert est.seconds_until_full() == math.inf
    est.add(1200, 1000, at=6.0)
    assert est.seconds_until_full() == 0.0


def test_rate_spans_only_the_window() -> None:
    est = FillEstimator(window_s=60.0)
    est.add(0, 10_000, at=0.0)  # a burst long ago
    est.add(5_000, 10_000, at=1.0)
    for t in range(100, 200, 10):  # then flat for 100 s
        est.add(5_000, 10_000, at=float(t))
    assert est.rate() == 0.0 and est.seconds_until_full() == math.inf
    est.add(5_600, 10_000, at=200.0)
    t0 = est.samples[0][0]
    assert 200.0 - t0 >= 60.0 and est.rate() == 600 / (200.0 - t0)
