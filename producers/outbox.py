"""Outbox: the one owner of delivery: pending frames, the spool, the Redis breaker and backoff.

The run loop hands it what it read (``add``: stamped with the producer key, sequence persisted)
and what it rejected (``reject``), and calls ``deliver`` once per turn and ``finish`` at exit.
With a spool (producers.spool), frames go to disk while the Redis breaker is open or Redis refuses
writes, and are replayed in order, keys unchanged, once it heals; the replay always runs before
new frames are appended (on a full disk old frames must leave first). ``blocked`` tells the loop
to stop reading: without a spool until Redis takes the frames, with one only when the spool is
full of critical/high frames. A spool whose filesystem refuses writes (read-only) is dropped with
an error log and ``spool_available`` false, and delivery goes on without it. No device I/O here.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence

from redis.exceptions import RedisError

from common.backoff import Backoff
from common.breaker import Breaker
from common.errors import SpoolUnavailableError
from common.publish import REJECTION_PRIORITY, Publisher
from common.schema import REJECTION_MARK, Frame, Rejection, encode
from producers.spool import Append, Spool
from producers.stats import ProducerStats

logger = logging.getLogger(__name__)

REPLAY_BATCH = 500
"""Spooled entries sent per pipeline during a replay."""


class Outbox:
    """Delivers stamped frames and rejection entries to Redis, through the spool when it must."""

    def __init__(
        self,
        publisher: Publisher,
        stats: ProducerStats,
        spool: Spool | None = None,
        redis_breaker: Breaker | None = None,
        reconnect_max: float = 10.0,
        poll_s: float = 0.2,
    ) -> None:
        self.publisher, self.stats, self.spool = publisher, stats, spool
        self.redis_breaker = redis_breaker or Breaker("redis", open_s=min(5.0, reconnect_max))
        self.redis_backoff = Backoff(base=0.05, cap=reconnect_max)
        self.poll_s = poll_s

    @property
    def blocked(self) -> bool:
        """True while something read is neither in Redis nor spooled: the loop must not read more."""
        return self.publisher.has_pending

    def resume(self) -> None:
        """Continue the spool's producer id and sequence (see Spool.resume); call once, first."""
        if self.spool is None:
            return
        spool = self.spool
        try:
            spool.on_drop = lambda reason, priority, n: self.stats.dropped.update({(reason, priority.value): n})
            producer, seq, lost = spool.resume(self.publisher.producer_id)
        except SpoolUnavailableError as exc:
            self._spool_failed(exc)
            return
        self.publisher.producer_id, self.publisher.next_seq = producer, seq
        self.stats.frames_lost_in_crash = lost
        self.stats.spool_torn_bytes = spool.torn_bytes
        if lost or spool.records:
            logger.warning(
                "producer %s resumes at seq %d: %d spooled frames to replay, %d frames lost by the previous run",
                producer,
                seq,
                spool.records,
                lost,
            )

    def add(self, frames: Sequence[Frame]) -> None:
        """Count frames as read, stamp them with the next sequence numbers and queue them; the
        reservation is persisted first."""
        self.stats.read_by_priority.update(f.priority.value for f in frames)
        self.publisher.stamp(frames)
        self._checkpoint()

    def reject(self, rejection: Rejection) -> None:
        """Queue a rejection entry (the writer dead-letters it)."""
        self.publisher.reject(rejection)

    def deliver(self, stop: threading.Event) -> bool:
        """One turn of delivery; True when everything handed over is in Redis or the spool."""
        if self.spool is None:
            self._send_blocking(stop, None)
        else:
            try:
                self._deliver_spooled(self.spool, stop)
            except SpoolUnavailableError as exc:
                self._spool_failed(exc)
        return not self.publisher.has_pending

    def finish(self, deadline: float) -> bool:
        """At exit: deliver what is left until ``deadline``, count the rest, close the spool.

        Returns True when everything handed over was delivered (published or spooled).
        """
        if self.spool is not None:
            try:
                self._drain(self.spool, deadline)
            except SpoolUnavailableError as exc:
                self._spool_failed(exc)
        if self.spool is None:
            self._send_blocking(threading.Event(), deadline)
        else:
            for frame in self.publisher.pending:
                self.stats.dropped[("unsent_at_exit", frame.priority.value)] += 1
        delivered = not self.publisher.has_pending
        self.stats.frames_unsent = len(self.publisher.pending)
        if self.publisher.rejections:
            self.stats.dropped[("unsent_at_exit", REJECTION_PRIORITY.value)] += len(self.publisher.rejections)
            logger.error("%d rejection entries not sent at exit", len(self.publisher.rejections))
        if self.spool is not None:
            self.publisher.pending = []  # counted above: the state may call every number accounted for
            self._checkpoint()
        self.export()
        if self.spool is not None:
            try:
                self.spool.close()
            except SpoolUnavailableError as exc:
                logger.error("%s: the spool's state may be stale at the next start", exc)
        return delivered

    def export(self) -> None:
        """Copy the live state (breaker, spool size) into the stats."""
        self.stats.redis_breaker = self.redis_breaker.state
        if self.spool is not None:
            self.stats.spool_records = self.spool.records
            self.stats.spool_bytes = self.spool.bytes
            self.stats.spool_limit_bytes = self.spool.limit
            self.stats.spool_full_writes = self.spool.full_writes

    # ---- with a spool ---------------------------------------------------------------
    def _deliver_spooled(self, spool: Spool, stop: threading.Event) -> None:
        # Replay first: the spool holds older frames, and on a full disk (a restart after an
        # outage) new frames only fit once the old ones are out.
        self._replay(spool, time.monotonic() + self.poll_s)
        if self.publisher.has_pending and spool.empty and self.redis_breaker.allow():
            self._send_direct()
        if self.publisher.has_pending:
            self._spool_pending(spool)
        self._checkpoint()
        spool.sync()
        if self.publisher.has_pending:  # blocked: wait for Redis rather than spin
            stop.wait(max(0.05, min(self.redis_breaker.retry_in(), self.poll_s)))

    def _send_direct(self) -> None:
        before = self._pending_by_priority()
        try:
            self.publisher.send()
            self.redis_breaker.success()
        except RedisError as exc:
            self._redis_failed(exc)
        finally:
            self._count_sent(before)

    def _pending_by_priority(self) -> Counter[str]:
        return Counter(f.priority.value for f in self.publisher.pending)

    def _count_sent(self, before: Counter[str]) -> None:
        """Count as published what left ``pending`` during a send (a failed send keeps the rest)."""
        self.stats.published_by_priority.update(before - self._pending_by_priority())

    def _spool_pending(self, spool: Spool) -> None:
        for fields in self.publisher.rejections:
            spool.append(REJECTION_PRIORITY, fields)  # bulk: dropped (and counted) before any frame
        self.publisher.rejections = []
        pending = self.publisher.pending
        for i, frame in enumerate(pending):
            result = spool.append(frame.priority, encode(frame))
            if result is Append.BLOCKED:
                self.publisher.pending = pending[i:]
                if not self.stats.read_blocked:
                    logger.error("spool full of critical/high frames: reading paused until Redis is back")
                self.stats.read_blocked = True
                return
            if result is Append.STORED:
                self.stats.frames_spooled += 1
                self.stats.spooled[frame.priority.value] += 1
        self.publisher.pending = []
        self.stats.read_blocked = False

    def _replay(self, spool: Spool, deadline: float) -> None:
        while not spool.empty and self.redis_breaker.allow():
            records = spool.peek(REPLAY_BATCH)
            sent, error = self.publisher.send_entries([(r.priority, r.fields) for r in records])
            spool.consume(records[:sent])
            frames = [r.priority.value for r in records[:sent] if REJECTION_MARK not in r.fields]
            self.stats.frames_replayed += len(frames)
            self.stats.published_by_priority.update(frames)
            if error is not None:
                self._redis_failed(error)
                return
            self.redis_breaker.success()
            if spool.empty:
                logger.info("spool drained: %d frames replayed so far", self.stats.frames_replayed)
            if time.monotonic() > deadline:
                return

    def _drain(self, spool: Spool, deadline: float) -> None:
        """At exit: publish what was read and spooled until done or ``deadline``; the rest stays spooled."""
        while True:
            self._replay(spool, deadline)
            if self.publisher.has_pending and spool.empty and self.redis_breaker.allow():
                self._send_direct()
            if self.publisher.has_pending:
                self._spool_pending(spool)
            left = deadline - time.monotonic()
            if (spool.empty and not self.publisher.has_pending) or left <= 0:
                return
            time.sleep(min(left, max(0.05, self.redis_breaker.retry_in())))

    def _spool_failed(self, exc: SpoolUnavailableError) -> None:
        """The spool's filesystem refuses writes (read-only after an SD-card error): go on without it."""
        logger.error("%s; running WITHOUT a spool: reading now waits while Redis is down", exc)
        self.stats.spool_available = False
        spool, self.spool = self.spool, None
        if spool is not None:
            with contextlib.suppress(OSError):
                spool.release()

    def _checkpoint(self) -> None:
        """Persist the sequence state: numbers below ``durable`` are published, spooled or counted."""
        if self.spool is not None:
            pending = self.publisher.pending
            durable = min(f.seq for f in pending) if pending else self.publisher.next_seq
            try:
                self.spool.save_seq(self.publisher.next_seq, durable)
            except SpoolUnavailableError as exc:
                self._spool_failed(exc)

    # ---- Redis ----------------------------------------------------------------------
    def _redis_failed(self, exc: RedisError) -> None:
        self.stats.redis_errors += 1
        was_open = self.redis_breaker.opened
        self.redis_breaker.failure()
        if self.redis_breaker.opened != was_open:
            where = "frames go to the spool" if self.spool is not None else "reading waits for Redis (no spool)"
            logger.warning("redis unavailable (%s): breaker open, %s", exc, where)
        else:
            logger.info("redis publish failed: %s", exc)

    def _send_blocking(self, stop: threading.Event, deadline: float | None) -> None:
        """No spool: retry Redis with backoff until the frames are sent, ``stop`` or ``deadline``."""
        while self.publisher.has_pending:
            before = self._pending_by_priority()
            try:
                self.publisher.send()
                self.redis_breaker.success()
                self.redis_backoff.reset()
            except RedisError as exc:
                self._redis_failed(exc)
                delay = max(self.redis_backoff.next_delay(), self.redis_breaker.retry_in())
                logger.warning("%d frames pending, retry in %.2fs", len(self.publisher.pending), delay)
                if deadline is not None and time.monotonic() + delay > deadline:
                    return
                if stop.wait(delay) and deadline is None:
                    return
            finally:
                self._count_sent(before)
