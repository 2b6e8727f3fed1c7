"""The latency histogram's percentiles are within one bucket (4 %) of the exact values."""

from __future__ import annotations

import random
import typing

from common.latency import LatencyHistogram


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


def test_one_latency_type_behind_summary_and_e2e_latency() -> None:
    """/summary's per-operation durations and the writer's end-to-end latency are the same type."""
    from common.metrics import OpStats, OpSummary
    from writer.stats import WriterStats

    assert isinstance(OpStats().durations, LatencyHistogram)
    assert typing.get_type_hints(WriterStats)["latency"] == dict[str, LatencyHistogram]
    summary = OpSummary()
    for ms in range(1, 101):
        summary.observe("copy", ms / 1000, ok=True, rows=1)
    copy = summary.as_dict()["copy"]
    assert 50 <= copy["p50_ms"] <= 50 * 1.05 and 99 <= copy["p99_ms"] <= 99 * 1.05 and copy["max_ms"] == 100


def test_add_many_is_add_of_each_value() -> None:
    """The writer adds a batch at a time (issue 15); the histogram must be the same as one by one."""
    values = [0.0, 5e-5, 1e-4, 0.0123, 0.5, 3.0, 1e9, 0.0123]
    one_by_one, at_once = LatencyHistogram(), LatencyHistogram()
    for v in values:
        one_by_one.add(v)
    at_once.add_many(values)
    at_once.add_many([])
    assert at_once == one_by_one
