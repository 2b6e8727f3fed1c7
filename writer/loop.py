"""Writer: one lane's loop: read -> decode -> batch -> COPY -> commit -> XACK | dead-letter.

The only orchestration in the writer (writer/replica.py runs three lanes of it). Every
exception ends in exactly one of: retry with backoff (infrastructure: Redis or PostgreSQL
unavailable, memory exhausted), dead-letter (the entry or its data is bad), or a crash (a
bug; the supervisor restarts the process and pending entries are reclaimed). Entries are
acked only after their frames are committed or dead-lettered.

Redis at ``maxmemory`` must not stop the lane: committed frames are acked first (XACK needs no
memory) and trimming runs every pass, while a dead letter Redis refuses is kept aside and the
entry stays pending; it is tried again after each trim. Every retry loop returns when ``stop``
is set. Entries are size-checked before they are decoded (MAX_ENTRY_BYTES, MAX_CHANNELS), and
a batch is committed before a frame would take it past BATCH_MAX_ROWS.

When a read returns a full READ_COUNT (a backlog), the next read is sent ahead, and its entries
decoded, in a helper thread while the batch is committed (writer/read_ahead.py).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

import psycopg
from redis import Redis
from redis.exceptions import RedisError

from common.backoff import Backoff
from common.breaker import Breaker
from common.clock import Clock, SystemClock
from common.errors import DecodeError, KeyReuseError
from common.schema import Frame, Priority, decode_shaped
from common.settings import Settings
from writer import faults
from writer.ack import ack, until_done
from writer.batch import Batcher, Item
from writer.consumers import forget_idle_consumers, forget_self
from writer.deadletter import Outcome, dead_letter
from writer.gate import CHECK_EVERY, PriorityGate
from writer.pg import PgLink, mask_dsn
from writer.pg_copy import Packed, entry_digest, pack
from writer.read import Entry, ensure_groups, is_nogroup, read_entries, reclaim
from writer.read_ahead import ReadAhead
from writer.retry import describe, is_transient
from writer.sink import Sink
from writer.stats import LaneHealth, WriterStats
from writer.stream_ids import ids_ahead
from writer.trim import foreign_groups, trim_acked, unread_deletions

logger = logging.getLogger(__name__)


Failure = tuple[Entry, str, str]
"""(entry, error class, error message) of an entry to dead-letter."""


@dataclass(slots=True)
class Decoded:
    """Entries read and decoded (``Writer._decode``), not yet batched."""

    items: list[Item]
    """The frames decoded, with their entries, in read order."""
    bad: list[Failure]
    """Entries to dead-letter (too large, undecodable)."""
    count: int
    """Entries read (an entry left pending after a MemoryError is in neither list)."""


DEFERRED_RETRY_S = 1.0
"""Shortest wait between two tries of the dead letters Redis refused."""

Observer = Callable[[str, float, bool, int], None]
"""observe(operation, seconds, ok, rows): called after each read, copy, ack, dead_letter, reclaim, trim."""


def _ignore(_op: str, _seconds: float, _ok: bool, _rows: int) -> None:
    pass


class Writer:
    """One lane of a writer replica: reads the streams of ``priorities`` and commits them.

    A replica runs three lanes in three threads (``run_writer``, ``LANES``), each with its own
    Redis and PostgreSQL connections: critical and high never wait behind normal data, and
    live data never waits behind a bulk import.
    """

    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        consumer: str,
        clock: Callable[[], float] = time.monotonic,
        priorities: Sequence[Priority] = tuple(Priority),
        lane: str = "live",
        stats: WriterStats | None = None,
        gate: PriorityGate | None = None,
        rank: int = 0,
        wall: Clock | None = None,
        sink: Sink | None = None,
        observe: Observer | None = None,
    ):
        self.s = settings
        self.wall = wall or SystemClock()
        self.w = settings.writer
        self.redis = redis
        self.names = settings.redis.names
        self.consumer = consumer
        self.clock = clock
        self.stats = stats or WriterStats()
        self.lane = lane
        self.gate = gate or PriorityGate(1)
        self.rank = rank
        self.checkpoint = functools.partial(self.gate.checkpoint, rank)
        self.keys = tuple(self.names.stream(p) for p in priorities)
        self.batch = Batcher(self.w.batch_max_rows, self.w.batch_max_age_ms / 1000)
        self.link: Sink = sink or PgLink(
            settings, lambda up: self.stats.pg_links.__setitem__(lane, up), clock, self.wall
        )
        self.pg_breaker = Breaker("postgres", failures=3, open_s=5.0, successes=1, clock=clock)
        self.pg_backoff = Backoff(base=0.2, cap=10.0)
        self.redis_backoff = Backoff(base=0.1, cap=5.0)
        self.next_reclaim = 0.0
        self.next_trim = 0.0
        self.last_snapshot: dict[tuple[str, str, str | None], float] = {}
        self.observe: Observer = observe or _ignore
        self.deferred: dict[tuple[str, bytes], tuple[Failure, float]] = {}
        """Dead letters Redis refused, by (stream, id), with when they were first tried; still pending."""
        self.next_deferred = 0.0
        self.reported: set[tuple[str, str, str]] = set()
        secret = self.w.deadletter_key
        self.deadletter_key = secret.get_secret_value().encode() if secret is not None else None
        """Stream findings already logged (``_guard_streams``)."""
        self.committing_since: float | None = None
        self.read_count = self.w.read_count
        """XREADGROUP COUNT: READ_COUNT, cut to 1 after a MemoryError and doubled back per read."""
        self.health = LaneHealth(beat_at=clock())
        with self.stats.lock:
            self.stats.lanes[lane] = self.health
        self.ahead: ReadAhead[Decoded] = ReadAhead(f"read-ahead-{lane}")

    # ---- the loop -------------------------------------------------------------------
    def run(self, stop: threading.Event) -> WriterStats:
        logger.info(
            "writer %s lane %s starting (postgres %s, namespace %s)",
            self.consumer,
            self.lane,
            mask_dsn(self.s.postgres.dsn),
            self.names.namespace,
        )
        first = True
        try:
            while not stop.is_set():
                self._beat()
                try:
                    if first:
                        ensure_groups(self.redis, self.names, self.keys)
                        pending = read_entries(
                            self.redis, self.names, self.consumer, self.read_count, 0, True, self.keys
                        )
                        self._ingest(self._decode(pending), stop)
                        first = False
                    self._step(stop)
                    self.redis_backoff.reset()
                except RedisError as exc:
                    self._add(redis_errors=1)
                    if is_nogroup(exc):
                        logger.warning("consumer group missing (Redis lost its data?); recreating at 0")
                        first = True
                        continue
                    delay = self.redis_backoff.next_delay()
                    logger.warning("redis error: %s; retry in %.2fs", exc, delay)
                    stop.wait(delay)
                except MemoryError as exc:
                    self._out_of_memory(exc, stop)
            self._finish_ahead(stop)
            self._flush_all(stop, final=True)
            with contextlib.suppress(RedisError):
                forget_self(self.redis, self.names, self.keys, self.consumer)
            if self.deferred:
                logger.warning("stopping with %d dead letters refused by Redis; they stay pending", len(self.deferred))
        finally:
            self.health.running = False
            self.ahead.close()
            self.link.close()
        logger.info("writer %s lane %s stopped", self.consumer, self.lane)
        return self.stats

    def _out_of_memory(self, exc: MemoryError, stop: threading.Event) -> None:
        """A resource error (a huge read reply, a batch): never bad data and never a crash loop.

        What the lane holds is let go (those entries stay pending and come back by XAUTOCLAIM),
        and reads shrink to one entry at a time until they succeed again.
        """
        held = len(self.batch)
        self.batch.take_urgent()
        self.batch.take_normal()
        self.ahead.forget()  # its entries, if any, stay pending too
        self.read_count = 1
        self._add(resource_errors=1)
        delay = self.redis_backoff.next_delay()
        logger.error("out of memory (%s); %d frames let go (still pending), reading one entry at a time;"
                     " retry in %.2fs", exc, held, delay)  # fmt: skip
        stop.wait(delay)

    def _beat(self) -> None:
        """Report the lane alive, and since when it holds an unresolved entry (see LaneHealth)."""
        now = self.clock()
        since = [t for t in (self.batch.first_at, self.committing_since) if t is not None]
        since += [t for _, t in self.deferred.values()]
        self.health.beat_at = now
        self.health.held_since = min(since) if since else None
        self.health.deferred = len(self.deferred)

    def _step(self, stop: threading.Event) -> None:
        now = self.clock()
        if now >= self.next_reclaim:
            self.next_reclaim = now + self.w.reclaim_interval_s
            t0 = time.perf_counter()
            claimed = reclaim(self.redis, self.names, self.consumer, self.w.claim_idle_ms, self.read_count, self.keys)
            self.observe("reclaim", time.perf_counter() - t0, True, len(claimed))
            self._add(claimed=len(claimed))
            self._ingest(self._decode(claimed), stop)
            forget_idle_consumers(
                self.redis, self.names, self.keys, int(self.w.consumer_forget_idle_s * 1000), self.consumer
            )
        wait = self.batch.wait_s(now, self.w.block_ms / 1000)
        t0 = time.perf_counter()
        block_ms = max(1, int(wait * 1000))
        got = self._read(block_ms)
        self.read_count = min(self.w.read_count, self.read_count * 2)  # back to READ_COUNT after a MemoryError
        self.observe("read", time.perf_counter() - t0, True, got.count)
        if got.count:
            faults.hit("after_read")
            if got.count >= self.read_count and not stop.is_set():
                self.ahead.send(self._read_now)  # a backlog: the next reads travel while these are committed
            with self.gate.busy(self.rank):  # lower lanes pause until these are handled
                self._ingest(got, stop)
                self._flush_all(stop, final=False)
        else:
            self._flush_all(stop, final=False)
        if self.clock() >= self.next_trim:
            self.next_trim = self.clock() + self.w.trim_interval_s
            t0 = time.perf_counter()
            trimmed = trim_acked(self.redis, self.names, self.keys)
            for key in unread_deletions(self.redis, self.names, self.keys):
                self._add(unread_deletions=1)
                logger.error(
                    "entries of %s were deleted before the writer read them (XTRIM/MAXLEN by someone"
                    " else?); the frames lost show as sequence gaps in producer_progress",
                    key,
                )
            self._guard_streams()
            self.observe("trim", time.perf_counter() - t0, True, trimmed)
            self._add(trimmed=trimmed)
        # After the trim, which may just have freed the memory a refused dead letter needs.
        if self.deferred and self.clock() >= self.next_deferred:
            self.next_deferred = self.clock() + DEFERRED_RETRY_S
            self._dead_letter([failure for failure, _ in self.deferred.values()])

    def _read(self, block_ms: int) -> Decoded:
        """The entries read ahead if there are some, else a read now, blocking up to ``block_ms``."""
        while (got := self.ahead.take()) is not None:  # in the order they were sent
            if got.count:
                return got
        return self._decode(
            read_entries(self.redis, self.names, self.consumer, self.read_count, block_ms, keys=self.keys)
        )

    def _read_now(self) -> Decoded:
        """A read that does not block, and its entries decoded (the read sent ahead)."""
        return self._decode(read_entries(self.redis, self.names, self.consumer, self.read_count, None, keys=self.keys))

    def _finish_ahead(self, stop: threading.Event) -> None:
        """At a stop: the entries read ahead are ingested (the final flush commits them). If that
        read failed, whatever it took stays pending for XAUTOCLAIM."""
        while True:
            try:
                got = self.ahead.take()
            except (RedisError, MemoryError) as exc:
                logger.warning("read ahead failed at stop (%s); anything it read stays pending", exc)
                self.ahead.forget()
                return
            if got is None:
                return
            self._ingest(got, stop)

    def _guard_streams(self) -> None:
        """Log (once per finding) what a stolen credential may have done to the priority streams:
        entry IDs from the future (XADD with an explicit ID) and consumer groups not ours."""
        now_ms = int(self.wall.now().timestamp() * 1000)
        found = {("id", k, v) for k, v in ids_ahead(self.redis, self.keys, now_ms).items()}
        found |= {("group", k, g) for k, g in foreign_groups(self.redis, self.names, self.keys)}
        for kind, key, what in sorted(found - self.reported):
            if kind == "id":
                logger.error(
                    "%s: last entry ID %s is ahead of the clock (an XADD with an explicit ID?); XADD * may"
                    " fail for every producer: run `telemetry-admin streams repair`", key, what,
                )  # fmt: skip
            else:
                logger.error(
                    "%s: consumer group %r is not the writer's (%r); trimming ignores it", key, what, self.names.group
                )
        self.reported = found

    def _decode(self, entries: list[Entry]) -> Decoded:
        """Size-check and decode ``entries``. Runs in the lane's thread or in its read-ahead
        thread, so it touches no lane state: only the settings, the gate and the stats (locked)."""
        items: list[Item] = []
        bad: list[Failure] = []
        for i, entry in enumerate(entries):
            if not i % CHECK_EVERY:
                self.checkpoint()
            size = entry.size
            if size > self.w.max_entry_bytes:  # before parsing: the bytes are never decoded
                limit = self.w.max_entry_bytes
                bad.append((entry, "EntryTooLarge", f"{size} bytes, more than MAX_ENTRY_BYTES {limit}"))
                continue
            try:
                frame, shape, values = decode_shaped(entry.fields, entry.priority, self.w.max_channels)
            except DecodeError as exc:
                bad.append((entry, "DecodeError", str(exc)))
                continue
            except MemoryError as exc:
                # A resource error says nothing about the entry: never dead-letter it. It stays
                # pending and comes back (XAUTOCLAIM) once memory may be available again.
                self._add(resource_errors=1)
                logger.error("out of memory decoding %s %s (%d bytes): %s; left pending", entry.stream,
                             entry.id.decode(), size, exc)  # fmt: skip
                continue
            entry.packed = pack(frame, entry_digest(entry.fields), (shape, values))
            items.append((entry, frame))
        return Decoded(items, bad, len(entries))

    def _ingest(self, got: Decoded, stop: threading.Event) -> None:
        """Batch the frames decoded (committing a batch before a frame would take it past
        BATCH_MAX_ROWS), then dead-letter the entries that could not be."""
        now = self.clock()
        batch = self.batch
        for entry, frame in got.items:
            if not batch.fits(entry.priority, len(frame.channels)):
                self._commit(batch.take(entry.priority), stop)  # BATCH_MAX_ROWS is a bound
            batch.add(entry, frame, now)
        if got.bad:
            self._dead_letter(got.bad)

    def _flush_all(self, stop: threading.Event, final: bool) -> None:
        if self.batch.urgent:
            self._commit(self.batch.take_urgent(), stop)
        if self.batch.normal and (final or self.batch.is_due(self.clock())):
            self._commit(self.batch.take_normal(), stop)

    # ---- PostgreSQL -----------------------------------------------------------------
    def _commit(self, items: list[Item], stop: threading.Event) -> None:
        """Commit ``items`` (retrying infrastructure errors until done or stopped), then ack."""
        # Chosen once per commit: every attempt (a retry, a bisection half) writes the same
        # snapshots, filtered to its own frames by write_frames.
        snapshots = self._snapshots(items)
        self.committing_since = self.clock()
        try:
            self._commit_retrying(items, snapshots, stop)
        finally:
            self.committing_since = None

    def _commit_retrying(self, items: list[Item], snapshots: list[Frame], stop: threading.Event) -> None:
        while True:
            self._beat()
            if not self.pg_breaker.allow():
                # Open breaker: do not hammer a database that keeps failing; probe after open_s.
                self._set_breaker()
                if stop.wait(self.pg_breaker.retry_in() or 0.05):
                    logger.warning("stopping with %d frames uncommitted; they stay pending for reclaim", len(items))
                    return
                continue
            try:
                conn = self.link.connection()
                committed, failed = self._write_isolating(conn, items, snapshots)
                self.pg_breaker.success()
                self._set_breaker()
                break
            except Exception as exc:
                if not _retryable(exc):
                    raise
                self._add(pg_errors=1)
                self.pg_breaker.failure()
                self._set_breaker()
                self.link.drop()
                delay = self.pg_backoff.next_delay()
                logger.warning(
                    "postgres unavailable (%s); %d frames held, breaker %s, retry in %.2fs",
                    str(exc).strip()[:200],
                    len(items),
                    self.pg_breaker.state.value,
                    delay,
                )
                if stop.wait(delay):
                    logger.warning("stopping with %d frames uncommitted; they stay pending for reclaim", len(items))
                    return
        self.pg_backoff.reset()
        with self.stats.lock:
            self.stats.record_latency([f for _, f in committed], time.time())
        faults.hit("after_commit")
        # Ack first: XACK needs no Redis memory, a dead letter does (and may be refused).
        self._ack([e for e, _ in committed], stop)
        if failed:
            self._dead_letter([(e, *describe(exc)) for e, exc in failed])

    def _write_isolating(
        self, conn: psycopg.Connection[Any], items: list[Item], snapshots: list[Frame]
    ) -> tuple[list[Item], list[Any]]:
        """Write items; on a data error split the batch in halves until the bad frames are alone."""
        t0 = time.perf_counter()
        try:
            horizon = self.wall.now() + timedelta(seconds=self.w.current_state_max_ahead_s)
            packed = [e.packed for e, _ in items]
            known = None if None in packed else cast(list[Packed], packed)
            result = self.link.write(conn, [f for _, f in items], snapshots, self.checkpoint, horizon, known)
        except Exception as exc:
            self.observe("copy", time.perf_counter() - t0, False, 0)
            if _retryable(exc):
                raise
            if len(items) == 1:
                return [], [(items[0][0], exc)]
            mid = len(items) // 2
            ok1, bad1 = self._write_isolating(conn, items[:mid], snapshots)
            ok2, bad2 = self._write_isolating(conn, items[mid:], snapshots)
            return ok1 + ok2, bad1 + bad2
        self.observe("copy", time.perf_counter() - t0, True, result.rows)
        self._add(batches=1, frames=result.frames, rows=result.rows, duplicates=result.duplicates)
        self.stats.last_commit_at = self.clock()
        logger.debug("committed %d frames (%d rows, %d duplicates)", result.frames, result.rows, result.duplicates)
        if result.reused:  # committed around them; they go to the dead-letter stream
            reused = set(result.reused)
            failed = [(items[i][0], KeyReuseError(items[i][1].producer, items[i][1].seq)) for i in result.reused]
            return [it for i, it in enumerate(items) if i not in reused], failed
        return items, []

    def _snapshots(self, items: list[Item]) -> list[Frame]:
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

    # ---- Redis acks -----------------------------------------------------------------
    def _ack(self, entries: list[Entry], stop: threading.Event) -> None:
        if not entries:
            return
        t0 = time.perf_counter()
        done = until_done(lambda: ack(self.redis, self.names, entries), self._count_redis_error, stop)
        if not done:
            logger.warning(
                "stopping with %d committed entries unacked; the ledger skips them when redelivered", len(entries)
            )
        self.observe("ack", time.perf_counter() - t0, done, len(entries))

    def _dead_letter(self, failures: list[Failure]) -> None:
        """Dead-letter ``failures`` once each; those Redis refuses wait in ``deferred``, still pending."""
        t0 = time.perf_counter()
        results = dead_letter(
            self.redis, self.names, failures, self.consumer, self.w.deadletter_max_len, self.deadletter_key
        )
        now = self.clock()
        refused = 0
        with self.stats.lock:
            for failure, result in zip(failures, results, strict=True):
                key = (result.entry.stream, result.entry.id)
                if result.outcome is Outcome.REFUSED:
                    refused += 1
                    self._defer(failure, result.problem, now)
                    continue
                self.deferred.pop(key, None)
                if result.outcome is Outcome.DEAD_LETTERED:
                    self.stats.dead_letters[result.error_class] += 1
                    self.stats.dead_letters_dropped += result.dropped
            self.stats.redis_errors += refused
        self.observe("dead_letter", time.perf_counter() - t0, not refused, len(failures))

    def _defer(self, failure: Failure, problem: str, now: float) -> None:
        entry = failure[0]
        key = (entry.stream, entry.id)
        if key not in self.deferred:  # logged once per entry, not once per retry
            logger.warning(
                "dead letter of %s %s refused by Redis (%s); it stays pending and is tried again after each trim",
                entry.stream,
                entry.id.decode(),
                problem,
            )
        self.deferred[key] = (failure, self.deferred.get(key, (failure, now))[1])

    def _count_redis_error(self) -> None:
        self._add(redis_errors=1)
        self._beat()  # a retry loop turning is a live lane

    def _add(self, **deltas: int) -> None:
        """Add to the stats counters (shared by both lanes, so under their lock)."""
        with self.stats.lock:
            for name, n in deltas.items():
                setattr(self.stats, name, getattr(self.stats, name) + n)

    def _set_breaker(self) -> None:
        self.stats.breakers[self.lane] = self.pg_breaker.state.value


def _retryable(exc: BaseException) -> bool:
    """Infrastructure or resources, never the data: retry the same batch (never dead-letter it)."""
    return isinstance(exc, MemoryError) or is_transient(exc)
