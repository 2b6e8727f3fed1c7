"""Writer metrics: the ``observe`` hook (histograms, /summary) and a collector run at scrape time.

The hook feeds ``telemetry_writer_op_seconds{op}``, ``telemetry_writer_batch_rows`` and the
per-operation latency histograms behind /summary. The collector reads the live WriterStats and asks
Redis (stream length, lag, pending per priority) and PostgreSQL (sequence gaps per source)
with a short timeout on connections of its own, so a slow scrape never touches the
writer's connections. Answers from several replicas are the same: dashboards take max().
/healthz fails when a lane's loop stopped turning, /readyz also when a lane has held an entry
unresolved longer than ``STALL_S`` (writer/stats.py decides both).
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from redis import Redis
from redis.exceptions import RedisError

from common.fill import FillEstimator
from common.http import Endpoints, Readiness, readiness
from common.metrics import BreakerProbe, OpSummary, breaker_family, counter, gauge, new_registry, no_breakers
from common.redis_client import connect_redis
from common.settings import Settings
from writer import freshness, staleness
from writer.pg import connect_pg
from writer.progress_status import progress_by_source
from writer.stats import WriterStats, lane_checks, lanes_alive
from writer.stream_status import stream_status

logger = logging.getLogger(__name__)

OP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ROW_BUCKETS = (1, 10, 50, 100, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000)


def quick_redis(settings: Settings) -> Redis:
    """A Redis client whose commands give up after ``http.query_timeout_s``."""
    t = settings.http.query_timeout_s
    return connect_redis(settings.redis.model_copy(update={"socket_timeout": t, "connect_timeout": t}))


def quick_pg(settings: Settings) -> psycopg.Connection[Any]:
    """A PostgreSQL connection whose statements give up after ``http.query_timeout_s``."""
    t = settings.http.query_timeout_s
    pg = settings.postgres.model_copy(
        update={"connect_timeout": max(1, math.ceil(t)), "statement_timeout_ms": max(100, int(t * 1000))}
    )
    return connect_pg(pg)


class WriterTelemetry:
    """The hook, collector and endpoints of one writer process."""

    def __init__(
        self,
        settings: Settings,
        registry: CollectorRegistry | None = None,
        breakers: BreakerProbe = no_breakers,
        stats: WriterStats | None = None,
    ) -> None:
        self.settings = settings
        self.names = settings.redis.names
        self.registry = registry or new_registry()
        self.breakers = breakers
        self.stats = stats if stats is not None else WriterStats()
        """What the lanes update and the collector reads: pass it as ``run_writer(stats=...)``."""
        self._lock = threading.Lock()
        self.summary = OpSummary()
        self.op_seconds = Histogram(
            "telemetry_writer_op_seconds", "Duration of writer operations.", ["op"], buckets=OP_BUCKETS,
            registry=self.registry,
        )  # fmt: skip
        self.op_errors = Counter(
            "telemetry_writer_op_errors", "Writer operations that failed.", ["op"], registry=self.registry
        )
        self.batch_rows = Histogram(
            "telemetry_writer_batch_rows", "Readings rows per committed COPY batch.", buckets=ROW_BUCKETS,
            registry=self.registry,
        )  # fmt: skip
        self.memory = FillEstimator()
        """Redis used_memory over the scrapes of the last minute: its growth and time until full."""
        self._redis: Redis | None = None
        self._pg: psycopg.Connection[Any] | None = None
        self.registry.register(self)

    # ---- the observe hook (writer thread) ---------------------------------------------
    def observe(self, op: str, seconds: float, ok: bool, rows: int) -> None:
        self.summary.observe(op, seconds, ok, rows)
        self.op_seconds.labels(op).observe(seconds)
        if not ok:
            self.op_errors.labels(op).inc()
        elif op == "copy":
            self.batch_rows.observe(rows)

    # ---- collector (scrape thread) -----------------------------------------------------
    def describe(self) -> list[Metric]:
        return []  # no queries at registration time

    def collect(self) -> Iterator[Metric]:
        yield from self._stats_families(self.stats)
        yield from _retention_families(self.stats)
        up = gauge("collector_up", "1 if the scrape-time query of this dependency answered.", ["part"])
        yield from self._stream_families(up)
        yield from freshness.families(self.redis(), self.names, self.memory, up)  # issue 19
        yield from self._gap_families(up)
        yield up
        yield breaker_family(self._breaker_states())

    def _stats_families(self, s: WriterStats) -> Iterator[Metric]:
        for name, doc, value in (
            ("writer_frames_committed", "Frames committed (new keys).", s.frames),
            ("writer_rows_committed", "Readings rows committed.", s.rows),
            ("writer_batches_committed", "COPY batches committed.", s.batches),
            ("writer_duplicates", "Frames skipped because their key was already committed.", s.duplicates),
            ("writer_claimed", "Entries claimed from idle consumers (XAUTOCLAIM).", s.claimed),
            ("writer_trimmed", "Acknowledged entries trimmed from the streams.", s.trimmed),
            (
                "writer_dead_letters_dropped",
                "Old dead letters dropped by the bounded stream (MAXLEN).",
                s.dead_letters_dropped,
            ),
            ("writer_resource_errors", "Entries left pending: memory ran out while decoding them.", s.resource_errors),
            ("writer_pg_errors", "PostgreSQL errors retried.", s.pg_errors),
            ("writer_redis_errors", "Redis errors retried.", s.redis_errors),
        ):
            fam = counter(name, doc)
            fam.add_metric([], value)
            yield fam
        dead = counter("writer_dead_letters", "Entries dead-lettered, by reason (error class).", ["reason"])
        for reason, n in sorted(dict(s.dead_letters).items()):
            dead.add_metric([reason], n)
        yield dead
        latency = gauge(
            "writer_e2e_latency_seconds",
            "Producer receipt to commit, per priority (since start).",
            ["priority", "quantile"],
        )
        for prio, hist in sorted(dict(s.latency).items()):
            for q in (0.5, 0.95, 0.99):
                latency.add_metric([prio, str(q)], hist.percentile(q))
        yield latency
        lanes = dict(s.lanes)
        deferred = gauge("writer_dead_letters_deferred", "Dead letters Redis refused, waiting (still pending).")
        deferred.add_metric([], sum(h.deferred for h in lanes.values()))
        yield deferred
        stalled = gauge("writer_lane_stalled_seconds", "How long a lane has held an unresolved entry.", ["lane"])
        now = time.monotonic()
        for lane, health in sorted(lanes.items()):
            stalled.add_metric([lane], health.stalled_s(now))
        yield stalled
        connected = gauge("writer_pg_connected", "1 while the writer holds a PostgreSQL connection.")
        connected.add_metric([], 1.0 if s.pg_connected else 0.0)
        yield connected
        if s.last_commit_at is not None:
            age = gauge("writer_last_commit_age_seconds", "Seconds since the last committed batch.")
            age.add_metric([], max(0.0, time.monotonic() - s.last_commit_at))
            yield age

    def _stream_families(self, up: GaugeMetricFamily) -> Iterator[Metric]:
        try:
            status = stream_status(self.redis(), self.names)
        except (RedisError, OSError) as exc:
            logger.debug("stream status failed: %s", exc)
            up.add_metric(["redis"], 0)
            return
        up.add_metric(["redis"], 1)
        fams: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "length": gauge("stream_length", "Entries in the priority stream (XLEN).", ["priority"]),
            "lag": gauge("stream_lag", "Entries not yet delivered to the writer group.", ["priority"]),
            "pending": gauge("stream_pending", "Entries delivered but not acknowledged.", ["priority"]),
            "consumers": gauge("stream_consumers", "Consumers of the writer group.", ["priority"]),
            "entries_added": counter("stream_entries_added", "Entries ever added (XINFO STREAM).", ["priority"]),
        }
        fams["foreign_groups"] = gauge(
            "stream_foreign_groups", "Consumer groups that are not the writer's (ignored by trimming).", ["priority"]
        )
        fams["id_ahead"] = gauge(
            "stream_id_ahead",
            "1 while the last entry ID is ahead of the clock (forged XADD ID: telemetry-admin streams repair).",
            ["priority"],
        )
        for row in status["streams"]:
            prio = self.names.priority_of(row["stream"]).value
            row = {
                **row,
                "consumers": len(row["consumers"]),
                "foreign_groups": len(row["foreign_groups"]),
                "id_ahead": int(row["id_ahead"]),
            }
            for key, fam in fams.items():
                if row.get(key) is not None:
                    fam.add_metric([prio], row[key])
        yield from fams.values()
        dead = gauge("deadletter_length", "Entries in the dead-letter stream.")
        dead.add_metric([], status["deadletter"])
        yield dead

    def _gap_families(self, up: GaugeMetricFamily) -> Iterator[Metric]:
        try:
            rows = progress_by_source(self.pg())
        except (psycopg.Error, OSError) as exc:
            logger.debug("progress query failed: %s", exc)
            self._close_pg()
            up.add_metric(["postgres"], 0)
            return
        up.add_metric(["postgres"], 1)
        try:
            yield from list(staleness.families(self.pg()))  # issue 19
        except psycopg.Error as exc:  # a schema before migration 008
            logger.debug("staleness query failed: %s", exc)
        fams = {
            "missing": gauge("sequence_missing_frames", "Frames never committed: max_seq - frames.", ["source"]),
            "with_gaps": gauge("producers_with_gaps", "Producers with at least one missing frame.", ["source"]),
            "active": gauge("producers_active", "Producers committed within the last 60 s.", ["source"]),
            "producers": gauge("producers_known", "Producer runs in producer_progress.", ["source"]),
        }
        for row in rows:
            for key, fam in fams.items():
                fam.add_metric([row["source"]], row[key])
        yield from fams.values()

    # ---- connections of our own --------------------------------------------------------
    def redis(self) -> Redis:
        with self._lock:
            if self._redis is None:
                self._redis = quick_redis(self.settings)
            return self._redis

    def pg(self) -> psycopg.Connection[Any]:
        """The collector's own connection (psycopg connections serialise concurrent use)."""
        with self._lock:
            if self._pg is None or self._pg.closed:
                self._pg = quick_pg(self.settings)
            return self._pg

    def _close_pg(self) -> None:
        if self._pg is not None:
            with contextlib.suppress(psycopg.Error):
                self._pg.close()
        self._pg = None

    def _breaker_states(self) -> dict[str, str]:
        states = {"postgres": self.stats.pg_breaker}
        with contextlib.suppress(Exception):  # a broken probe: the loop's own state still answers
            states.update(self.breakers())
        return states

    # ---- endpoints ---------------------------------------------------------------------
    def ready(self) -> Readiness:
        checks = {"redis": False, "postgres": False}
        with contextlib.suppress(RedisError, OSError):
            checks["redis"] = bool(self.redis().ping())
        try:
            self.pg().execute("SELECT 1")
            checks["postgres"] = True
        except (psycopg.Error, OSError):
            self._close_pg()
        checks.update(lane_checks(dict(self.stats.lanes), time.monotonic(), self.settings.writer.stall_s))
        return readiness(checks, self._breaker_states)

    def alive(self) -> bool:
        """Liveness: every lane's loop has turned within ``STALL_S`` (true while none has started)."""
        return lanes_alive(dict(self.stats.lanes), time.monotonic(), self.settings.writer.stall_s)

    def summary_dict(self) -> dict[str, Any]:
        s = self.stats
        return {
            "operations": self.summary.as_dict(),
            "writer": {
                "frames": s.frames,
                "rows": s.rows,
                "batches": s.batches,
                "duplicates": s.duplicates,
                "dead_letters": dict(s.dead_letters),
                "pg_connected": s.pg_connected,
                "pg_breaker": s.pg_breaker,
                "e2e_latency": {p: h.summary() for p, h in sorted(dict(s.latency).items())},
            },
        }

    def endpoints(self) -> Endpoints:
        return Endpoints(registry=self.registry, live=self.alive, ready=self.ready, summary=self.summary_dict)

    def close(self) -> None:
        self._close_pg()
        if self._redis is not None:
            self._redis.close()


def _retention_families(s: WriterStats) -> Iterator[Metric]:
    """Partition upkeep and retention (writer/upkeep.py, writer/retention.py)."""
    dropped = counter("writer_partitions_dropped", "Daily partitions dropped by retention.")
    dropped.add_metric([], s.partitions_dropped)
    yield dropped
    refusals = counter(
        "writer_retention_refusals", "Retention passes that dropped nothing because the clock moved more than a day."
    )
    refusals.add_metric([], s.retention_refusals)
    yield refusals
    refused = gauge("writer_retention_refused", "1 while retention refuses to run (clock step; see the log).")
    refused.add_metric([], 1.0 if s.retention_refused else 0.0)
    yield refused
