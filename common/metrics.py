"""Shared pieces of the metrics every process exports: names, breaker states, per-operation summaries.

``OpSummary`` keeps, per operation, counts, errors, min/avg/max and a LatencyHistogram
(common.latency, the one latency distribution type) for p50/p95/p99, so memory stays bounded
however long the process runs. ``family`` helpers build Prometheus metric families for custom collectors that
read live stats at scrape time. Label values are always from small fixed sets (priority,
reason, kind, op, source, link): never channel or device names. No HTTP here (common.http).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.process_collector import ProcessCollector

from common.latency import LatencyHistogram

PREFIX = "telemetry_"
"""Every metric this project defines starts with this."""

BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
"""Value of ``telemetry_breaker_state`` for each state (a dashboard maps them back to words)."""

BreakerProbe = Callable[[], Mapping[str, str]]
"""Returns link name (``device``, ``redis``, ``postgres``) -> breaker state (a BREAKER_STATES key)."""


def no_breakers() -> Mapping[str, str]:
    """The probe used until a process has circuit breakers: none, so nothing is open."""
    return {}


def breaker_state_name(state: object) -> str:
    """Normalise a breaker state (an enum, ``"HALF_OPEN"``, ``"half-open"``) to a BREAKER_STATES key."""
    raw = getattr(state, "value", state)
    if not isinstance(raw, str):
        raw = getattr(state, "name", str(state))
    name = str(raw).strip().lower().replace("-", "_").replace(" ", "_")
    return name if name in BREAKER_STATES else "open"  # unknown states fail safe: not ready


def new_registry() -> CollectorRegistry:
    """A registry of its own per process (and per test), with the process_* collector."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    return registry


def counter(name: str, doc: str, labels: Iterable[str] = ()) -> CounterMetricFamily:
    """A counter family named ``telemetry_<name>`` (``_total`` is added by the exposition)."""
    return CounterMetricFamily(PREFIX + name, doc, labels=list(labels))


def gauge(name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    """A gauge family named ``telemetry_<name>``."""
    return GaugeMetricFamily(PREFIX + name, doc, labels=list(labels))


def breaker_family(states: Mapping[str, str]) -> GaugeMetricFamily:
    """``telemetry_breaker_state{link}``: 0 closed, 1 half-open, 2 open."""
    fam = gauge("breaker_state", "Circuit breaker state per link: 0 closed, 1 half-open, 2 open.", ["link"])
    for link, state in sorted(states.items()):
        fam.add_metric([link], BREAKER_STATES[breaker_state_name(state)])
    return fam


@dataclass
class OpStats:
    """Counts and the latency distribution of one operation."""

    count: int = 0
    errors: int = 0
    rows: int = 0
    min_s: float = float("inf")
    durations: LatencyHistogram = field(default_factory=LatencyHistogram)

    def add(self, seconds: float, ok: bool, rows: int) -> None:
        self.count += 1
        self.errors += 0 if ok else 1
        self.rows += rows
        self.min_s = min(self.min_s, seconds)
        self.durations.add(seconds)

    def as_dict(self) -> dict[str, Any]:
        d, empty = self.durations, self.count == 0
        return {
            "count": self.count,
            "errors": self.errors,
            "error_rate": self.errors / self.count if self.count else 0.0,
            "rows": self.rows,
            "min_ms": 0.0 if empty else self.min_s * 1000,
            "avg_ms": 0.0 if empty else d.sum / d.total * 1000,
            "max_ms": d.max * 1000,
            "p50_ms": d.percentile(0.5) * 1000,
            "p95_ms": d.percentile(0.95) * 1000,
            "p99_ms": d.percentile(0.99) * 1000,
        }


class OpSummary:
    """Thread-safe per-operation statistics; ``observe`` has the writer's Observer signature."""

    def __init__(self) -> None:
        self._ops: dict[str, OpStats] = {}
        self._lock = threading.Lock()

    def observe(self, op: str, seconds: float, ok: bool, rows: int) -> None:
        with self._lock:
            stats = self._ops.get(op)
            if stats is None:
                stats = self._ops[op] = OpStats()
            stats.add(seconds, ok, rows)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """Operation -> count, errors, error_rate, rows, min/avg/max and p50/p95/p99 in ms."""
        with self._lock:
            return {op: stats.as_dict() for op, stats in sorted(self._ops.items())}
