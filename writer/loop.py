"""run_writer(): read -> decode -> batch -> COPY -> commit -> XACK | dead-letter, until stopped.

The only orchestration in the writer. Every exception ends in exactly one of: retry with
backoff (infrastructure: Redis or PostgreSQL unavailable), dead-letter (the entry or its
data is bad), or a crash (a bug; the supervisor restarts the process and pending entries
are reclaimed). Entries are acked only after their frames are committed or dead-lettered.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool
from redis import Redis
from redis.exceptions import RedisError

from common.backoff import Backoff
from common.breaker import Breaker
from common.errors import DecodeError
from common.redis_client import connect_redis
from common.schema import decode
from common.settings import Settings
from common.streams import consumer_name
from writer import faults
from writer.ack import ack, until_done
from writer.batch import Batcher, Item
from writer.deadletter import dead_letter
from writer.latency import LatencyHistogram, record_latency
from writer.partitions import maintain
from writer.pg import mask_dsn, open_pool
from writer.pg_copy import write_frames
from writer.read import Entry, ensure_groups, is_nogroup, read_entries, reclaim
from writer.retry import describe, is_transient
from writer.trim import trim_acked, unread_deletions

logger = logging.getLogger(__name__)

PARTITION_CHECK_S = 600.0


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
    redis_errors: int = 0
    pg_connected: bool = False
    pg_breaker: str = "closed"
    """State of the circuit breaker on the PostgreSQL link: closed, open or half_open."""
    last_commit_at: float | None = None
    latency: dict[str, LatencyHistogram] = field(default_factory=dict)
    """End-to-end latency per priority: commit time minus the producer's received_at."""


Observer = Callable[[str, float, bool, int], None]
"""observe(operation, seconds, ok, rows): called after each read, copy, ack, dead_letter, reclaim, trim."""


def _ignore(_op: str, _seconds: float, _ok: bool, _rows: int) -> None:
    pass


class Writer:
    def __init__(self, settings: Settings, redis: Redis, consumer: str, clock: Callable[[], float] = time.monotonic):
        self.s = settings
        self.w = settings.writer
        self.redis = redis
        self.names = settings.redis.names
        self.consumer = consumer
        self.clock = clock
        self.stats = WriterStats()
        self.batch = Batcher(self.w.batch_max_rows, self.w.batch_max_age_ms / 1000)
        self.pool: ConnectionPool | None = None
        self.pg: psycopg.Connection[Any] | None = None
        self.pg_breaker = Breaker("postgres", failures=3, open_s=5.0, successes=1, clock=clock)
        self.pg_backoff = Backoff(base=0.2, cap=10.0)
        self.redis_backoff = Backoff(base=0.1, cap=5.0)
        self.next_reclaim = 0.0
        self.next_trim = 0.0
        self.next_partitions = 0.0
        self.last_snapshot: dict[tuple[str, str, str | None], float] = {}
        self.observe: Observer = _ignore

    # ---- the loop -------------------------------------------------------------------
    def run(self, stop: threading.Event) -> WriterStats:
        logger.info(
            "writer %s starting (postgres %s, namespace %s)",
            self.consumer,
            mask_dsn(self.s.postgres.dsn),
            self.names.namespace,
        )
        first = True
        while not stop.is_set():
            try:
                if first:
                    ensure_groups(self.redis, self.names)
                    self._ingest(read_entries(self.redis, self.names, self.consumer, self.w.read_count, 0, True))
                    first = False
                self._step(stop)
                self.redis_backoff.reset()
            except RedisError as exc:
                self.stats.redis_errors += 1
                if is_nogroup(exc):
                    logger.warning("consumer group missing (Redis lost its data?); recreating at 0")
                    first = True
                    continue
                delay = self.redis_backoff.next_delay()
                logger.warning("redis error: %s; retry in %.2fs", exc, delay)
                stop.wait(delay)
        self._flush_all(stop, final=True)
        self._release_connection()
        if self.pool is not None:
            self.pool.close()
        logger.info(
            "writer %s stopped: frames=%d rows=%d duplicates=%d dead_letters=%s",
            self.consumer,
            self.stats.frames,
            self.stats.rows,
            self.stats.duplicates,
            dict(self.stats.dead_letters),
        )
        return self.stats

    def _step(self, stop: threading.Event) -> None:
        now = self.clock()
        if now >= self.next_reclaim:
            self.next_reclaim = now + self.w.reclaim_interval_s
            t0 = time.perf_counter()
            claimed = reclaim(self.redis, self.names, self.consumer, self.w.claim_idle_ms, self.w.read_count)
            self.observe("reclaim", time.perf_counter() - t0, True, len(claimed))
            self.stats.claimed += len(claimed)
            self._ingest(claimed)
        wait = self.batch.wait_s(now, self.w.block_ms / 1000)
        t0 = time.perf_counter()
        entries = read_entries(self.redis, self.names, self.consumer, self.w.read_count, max(1, int(wait * 1000)))
        self.observe("read", time.perf_counter() - t0, True, len(entries))
        if entries:
            faults.hit("after_read")
        self._ingest(entries)
        self._flush_all(stop, final=False)
        if self.clock() >= self.next_trim:
            self.next_trim = self.clock() + self.w.trim_interval_s
            t0 = time.perf_counter()
            trimmed = trim_acked(self.redis, self.names)
            for key in unread_deletions(self.redis, self.names):
                self.stats.unread_deletions += 1
                logger.error(
                    "entries of %s were deleted before the writer read them (XTRIM/MAXLEN by someone"
                    " else?); the frames lost show as sequence gaps in producer_progress",
                    key,
                )
            self.observe("trim", time.perf_counter() - t0, True, trimmed)
            self.stats.trimmed += trimmed

    def _ingest(self, entries: list[Entry]) -> None:
        now = self.clock()
        bad: list[tuple[Entry, str, str]] = []
        for entry in entries:
            try:
                frame = decode(entry.fields, entry.priority)
            except DecodeError as exc:
                bad.append((entry, "DecodeError", str(exc)))
                continue
            self.batch.add(entry, frame, now)
        if bad:
            self._dead_letter(bad)

    def _flush_all(self, stop: threading.Event, final: bool) -> None:
        if self.batch.urgent:
            self._commit(self.batch.take_urgent(), stop)
        if self.batch.normal and (final or self.batch.is_due(self.clock())):
            self._commit(self.batch.take_normal(), stop)

    # ---- PostgreSQL -----------------------------------------------------------------
    def _commit(self, items: list[Item], stop: threading.Event) -> None:
        """Commit ``items`` (retrying infrastructure errors until done or stopped), then ack."""
        while True:
            if not self.pg_breaker.allow():
                # Open breaker: do not hammer a database that keeps failing; probe after open_s.
                self.stats.pg_breaker = self.pg_breaker.state.value
                if stop.wait(self.pg_breaker.retry_in() or 0.05):
                    logger.warning("stopping with %d frames uncommitted; they stay pending for reclaim", len(items))
                    return
                continue
            try:
                conn = self._connection()
                committed, failed = self._write_isolating(conn, items)
                self.pg_breaker.success()
                self.stats.pg_breaker = self.pg_breaker.state.value
                break
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self.stats.pg_errors += 1
                self.pg_breaker.failure()
                self.stats.pg_breaker = self.pg_breaker.state.value
                self._drop_connection()
                delay = self.pg_backoff.next_delay()
                logger.warning(
                    "postgres unavailable (%s); %d frames held, breaker %s, retry in %.2fs",
                    str(exc).strip()[:200],
                    len(items),
                    self.stats.pg_breaker,
                    delay,
                )
                if stop.wait(delay):
                    logger.warning("stopping with %d frames uncommitted; they stay pending for reclaim", len(items))
                    return
        self.pg_backoff.reset()
        record_latency(self.stats.latency, [f for _, f in committed], time.time())
        faults.hit("after_commit")
        if failed:
            self._dead_letter([(e, *describe(exc)) for e, exc in failed])
        self._ack([e for e, _ in committed])

    def _write_isolating(self, conn: psycopg.Connection[Any], items: list[Item]) -> tuple[list[Item], list[Any]]:
        """Write items; on a data error split the batch in halves until the bad frames are alone."""
        t0 = time.perf_counter()
        try:
            result = write_frames(conn, [f for _, f in items], self._snapshots(items))
        except Exception as exc:
            self.observe("copy", time.perf_counter() - t0, False, 0)
            if is_transient(exc):
                raise
            if len(items) == 1:
                return [], [(items[0][0], exc)]
            mid = len(items) // 2
            ok1, bad1 = self._write_isolating(conn, items[:mid])
            ok2, bad2 = self._write_isolating(conn, items[mid:])
            return ok1 + ok2, bad1 + bad2
        self.observe("copy", time.perf_counter() - t0, True, result.rows)
        self.stats.batches += 1
        self.stats.frames += result.frames
        self.stats.rows += result.rows
        self.stats.duplicates += result.duplicates
        self.stats.last_commit_at = self.clock()
        logger.debug("committed %d frames (%d rows, %d duplicates)", result.frames, result.rows, result.duplicates)
        return items, []

    def _snapshots(self, items: list[Item]) -> list[Any]:
        interval = self.w.snapshot_interval_s
        if interval <= 0:
            return []
        now = self.clock()
        out = []
        for _, f in items:
            key = (f.source, f.device, f.session)
            if now - self.last_snapshot.get(key, -1e18) >= interval:
                self.last_snapshot[key] = now
                out.append(f)
        return out

    def _connection(self) -> psycopg.Connection[Any]:
        if self.pool is None:
            self.pool = open_pool(self.s.postgres)
        if self.pg is None:
            self.pg = self.pool.getconn()  # checked by the pool; PoolTimeout (transient) if none
            self.stats.pg_connected = True
            logger.info("connected to postgres %s", mask_dsn(self.s.postgres.dsn))
            self.next_partitions = 0.0
        if self.clock() >= self.next_partitions:
            self.next_partitions = self.clock() + PARTITION_CHECK_S
            today = datetime.now(UTC).date()
            maintain(self.pg, today, self.w.retention_days, self.w.partitions_ahead_days, drop=True)
        return self.pg

    def _drop_connection(self) -> None:
        """After an error: close the connection (it may be half-broken) and give it back."""
        self.stats.pg_connected = False
        if self.pg is not None:
            with contextlib.suppress(psycopg.Error):
                self.pg.close()
        self._release_connection()

    def _release_connection(self) -> None:
        if self.pg is not None and self.pool is not None:
            with contextlib.suppress(Exception):
                self.pool.putconn(self.pg)
        self.pg = None

    # ---- Redis acks -----------------------------------------------------------------
    def _ack(self, entries: list[Entry]) -> None:
        if not entries:
            return
        t0 = time.perf_counter()
        until_done(lambda: ack(self.redis, self.names, entries), self._count_redis_error)
        self.observe("ack", time.perf_counter() - t0, True, len(entries))

    def _dead_letter(self, failures: list[tuple[Entry, str, str]]) -> None:
        t0 = time.perf_counter()
        until_done(lambda: dead_letter(self.redis, self.names, failures, self.consumer), self._count_redis_error)
        self.observe("dead_letter", time.perf_counter() - t0, True, len(failures))
        for _, error_class, _ in failures:
            self.stats.dead_letters[error_class] += 1

    def _count_redis_error(self) -> None:
        self.stats.redis_errors += 1


def run_writer(
    settings: Settings,
    stop: threading.Event,
    consumer: str | None = None,
    stats_out: dict[str, Any] | None = None,
    observe: Observer | None = None,
) -> WriterStats:
    """Run one writer replica until ``stop`` is set; the body of ``telemetry-write``."""
    name = consumer or settings.writer.consumer or consumer_name()
    writer = Writer(settings, connect_redis(settings.redis), name)
    if observe is not None:
        writer.observe = observe
    if stats_out is not None:
        stats_out["live"] = writer.stats
        stats_out["writer"] = writer
    return writer.run(stop)
