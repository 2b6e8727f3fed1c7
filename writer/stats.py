"""WriterStats: what a writer replica has done, shared by its lanes (they take ``lock``).

Also each lane's health (LaneHealth: when its loop last turned, since when it holds an
unresolved entry) and the pure verdicts drawn from it for /healthz and /readyz. Read by the
metrics collector, the tests and the benchmark; no I/O here.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter

from common.latency import LatencyHistogram
from common.schema import Frame

_PRIORITY = attrgetter("priority")
_RECEIVED = attrgetter("received_at")


@dataclass
class LaneHealth:
    """What one lane reports about itself (monotonic seconds); written by the lane only."""

    beat_at: float
    """When its loop (or one of its retry loops) last turned."""
    held_since: float | None = None
    """Since when it holds an entry neither committed nor dead-lettered (None: holds nothing)."""
    deferred: int = 0
    """Dead letters Redis refused (out of memory...), waiting pending for another try."""
    running: bool = True

    def stalled_s(self, now: float) -> float:
        """How long the lane has held an unresolved entry (0 when it holds none)."""
        return 0.0 if self.held_since is None else max(0.0, now - self.held_since)


def lanes_alive(lanes: dict[str, LaneHealth], now: float, stall_s: float) -> bool:
    """Liveness: every lane runs and its loop turned within ``stall_s`` (not hung in one call)."""
    return all(h.running and now - h.beat_at <= stall_s for h in lanes.values())


def lane_checks(lanes: dict[str, LaneHealth], now: float, stall_s: float) -> dict[str, bool]:
    """Readiness per lane: ``lane_<name>_progress`` is False when it has held an entry unresolved
    (neither committed nor dead-lettered) longer than ``stall_s``, or its loop stopped turning."""
    return {
        f"lane_{name}_progress": h.running and now - h.beat_at <= stall_s and h.stalled_s(now) <= stall_s
        for name, h in lanes.items()
    }


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
    dead_letters_dropped: int = 0
    """Old dead letters dropped by the bounded dead-letter stream (MAXLEN) to make room."""
    resource_errors: int = 0
    """Entries left pending because memory ran out while decoding them (never dead-lettered)."""
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
    lanes: dict[str, LaneHealth] = field(default_factory=dict)
    """Per lane: its health, for /healthz and /readyz."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    """Both lanes update these stats; they take this lock."""

    def record_latency(self, frames: Sequence[Frame], now: float) -> None:
        """Add each frame's end-to-end latency (``now`` minus its received_at) to its priority's
        histogram; the caller holds ``lock``."""
        if not frames:
            return
        priorities = list(map(_PRIORITY, frames))
        if priorities.count(priorities[0]) == len(priorities):  # a batch is of one priority, as a rule
            groups = [(priorities[0], list(map(_RECEIVED, frames)))]
        else:
            groups = [(p, [f.received_at for f in frames if f.priority is p]) for p in dict.fromkeys(priorities)]
        for priority, received in groups:
            h = self.latency.get(priority.value)
            if h is None:
                h = self.latency[priority.value] = LatencyHistogram()
            h.add_many([max(0.0, now - t) for t in map(datetime.timestamp, received)])

    @property
    def pg_connected(self) -> bool:
        return bool(self.pg_links) and all(self.pg_links.values())

    @property
    def pg_breaker(self) -> str:
        """The worst lane's breaker state: open, half_open or closed."""
        states = set(self.breakers.values())
        return next((st for st in ("open", "half_open") if st in states), "closed")
