"""Partition upkeep as its own periodic step, off the commit path: one thread per replica.

Every UPKEEP_INTERVAL_S (and at start) it opens a connection of its own, creates the missing
daily partitions from the retention horizon to PARTITIONS_AHEAD_DAYS ahead (nearest first,
in chunks), and runs one retention pass (writer/retention.py). Errors are logged and the step
is retried after a short backoff; it never holds a lane's connection or lock, so commits go on
while today's partition exists (a lane creates today's itself if it is missing, writer/pg.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import psycopg

from common.backoff import Backoff
from common.clock import Clock
from common.settings import Settings
from writer.partitions import maintain
from writer.retention import RetentionReport, run_retention
from writer.stats import WriterStats

logger = logging.getLogger(__name__)

UPKEEP_INTERVAL_S = 600.0
"""How often a replica makes partitions ahead and runs a retention pass."""


class PartitionUpkeep:
    """One replica's partition upkeep; ``step()`` is one pass, ``run()`` the periodic thread body."""

    def __init__(
        self,
        settings: Settings,
        stats: WriterStats,
        clock: Clock,
        connect: Callable[[], psycopg.Connection[Any]],
        interval_s: float = UPKEEP_INTERVAL_S,
    ) -> None:
        self.w = settings.writer
        self.stats = stats
        self.clock = clock
        self.connect = connect
        self.interval_s = interval_s
        self.backoff = Backoff(base=5.0, cap=300.0)  # a DROP that timed out waits a while

    def step(self) -> RetentionReport:
        """Create missing partitions, then one retention pass; raise psycopg errors."""
        now = self.clock.now()
        with self.connect() as conn:
            maintain(conn, now.date(), self.w.retention_days, self.w.partitions_ahead_days)
            report = run_retention(conn, now, self.w.retention_days, self.w.retention_max_days_per_pass)
        with self.stats.lock:
            self.stats.retention_passes += int(report.ran)
            self.stats.partitions_dropped += len(report.dropped)
            if report.ran and report.plan is not None:
                refused = report.plan.refusal is not None
                self.stats.retention_refusals += int(refused)
                self.stats.retention_refused = refused
        return report

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.step()
                self.backoff.reset()
                delay = self.interval_s
            except psycopg.Error as exc:
                delay = self.backoff.next_delay()
                logger.warning("partition upkeep failed (%s); retry in %.1fs", str(exc).strip()[:200], delay)
            stop.wait(delay)
