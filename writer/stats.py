"""WriterStats: what a writer replica has done, shared by its lanes (they take ``lock``).

Read by the metrics collector, the tests and the benchmark; no I/O here.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from writer.latency import LatencyHistogram


@dataclass
class WriterStats:
    frames: int = 0
    rows: int = 0
    duplicates: int = 0
    batches: int = 0
    claimed: int = 0
    trimmed: int = 0
    unread_deletions: int = 0
    """Times a trim pass found entries deleted before the group read them (a stream was cut)."""
    dead_letters: Counter[str] = field(default_factory=Counter)
    pg_errors: int = 0
    retention_passes: int = 0
    """Retention passes run by this replica (refused ones included)."""
    partitions_dropped: int = 0
    """Daily partitions dropped by retention (writer/upkeep.py)."""
    retention_refusals: int = 0
    """Retention passes that refused to drop anything because the clock moved (writer/retention.py)."""
    retention_refused: bool = False
    """True while the last retention pass refused."""
    redis_errors: int = 0
    last_commit_at: float | None = None
    latency: dict[str, LatencyHistogram] = field(default_factory=dict)
    """End-to-end latency per priority: commit time minus the producer's received_at."""
    pg_links: dict[str, bool] = field(default_factory=dict)
    """Per lane: is its PostgreSQL connection up?"""
    breakers: dict[str, str] = field(default_factory=dict)
    """Per lane: state of the circuit breaker on its PostgreSQL link."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    """Both lanes update these stats; they take this lock."""

    @property
    def pg_connected(self) -> bool:
        return bool(self.pg_links) and all(self.pg_links.values())

    @property
    def pg_breaker(self) -> str:
        """The worst lane's breaker state: open, half_open or closed."""
        states = set(self.breakers.values())
        return next((st for st in ("open", "half_open") if st in states), "closed")
