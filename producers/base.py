"""The runtime every producer uses: the Source interface and the run loop.

The loop opens the source (reconnecting with backoff and a circuit breaker), reads frames and
parse errors, counts errors, validates ranges, stamps and publishes frames pipelined, and stops
cleanly when ``stop`` is set (SIGTERM): what was read is published (or spooled) before it returns.
With a spool (producers.spool), frames go to disk while the Redis breaker is open or Redis refuses
writes, and are replayed in order, keys unchanged, once it heals (the replay always runs before
new frames are appended); reading never waits for Redis unless the spool is full of critical/high
frames. A spool whose filesystem refuses writes (read-only) is dropped with an error log and
``spool_available`` false: the loop goes on without it. Without a spool, reading waits until Redis
takes the frames. It does not parse device bytes (sources do) and builds no Redis names.

Rejected input never ends the loop: a ParseError is counted by kind; one that carries the raw
input (data: a jsonl line) is also sent as a rejection entry the writer dead-letters, and
logged with its line number (rate-limited). A frame the writer would refuse (common.schema
``validate_frame``) is such a rejection too, and so is any unexpected exception of a source's
``read``: only SourceUnavailableError reaches the reconnect logic.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from redis.exceptions import RedisError

from common.backoff import Backoff
from common.breaker import Breaker, BreakerState
from common.errors import DecodeError, ParseError, SourceUnavailableError, SpoolUnavailableError
from common.publish import REJECTION_PRIORITY, Publisher
from common.schema import Frame, Rejection, encode, validate_frame
from producers.spool import Append, Spool
from producers.validate import RangeValidator

logger = logging.getLogger(__name__)


class Source(Protocol):
    """A device or input, opened and read by the run loop.

    * ``open()`` connects; raises SourceUnavailableError if the device is not there.
    * ``read(timeout)`` returns within about ``timeout`` seconds with the frames and
      ParseErrors decoded since the last call (possibly none). It raises
      SourceUnavailableError when the link breaks; the loop then closes and reopens it.
    * ``exhausted`` is true once a finite input (file, count) has nothing more to give.
    * ``close()`` releases the device; safe to call twice.
    """

    source: str

    def open(self) -> None: ...

    def read(self, timeout: float) -> Sequence[Frame | ParseError]: ...

    def close(self) -> None: ...

    @property
    def exhausted(self) -> bool: ...


@dataclass
class ProducerStats:
    """What the loop has done; exported as metrics by the operations layer."""

    frames_read: int = 0
    frames_published: int = 0
    parse_errors: Counter[str] = field(default_factory=Counter)
    """Rejected input by kind (every rejection, dead-lettered or only counted)."""
    rejections_sent: int = 0
    """Rejection entries published (or spooled) for the writer to dead-letter."""
    connects: int = 0
    outages: int = 0
    """Times a connected source was lost (unplugged, link down)."""
    open_failures: int = 0
    redis_errors: int = 0
    frames_unsent: int = 0
    """Frames read but neither published nor spooled when the process stopped."""
    connected: bool = False
    frames_spooled: int = 0
    """Frames written to the on-disk spool while Redis was down or refused writes."""
    frames_replayed: int = 0
    """Spooled frames published later (also counted in frames_published)."""
    spooled: Counter[str] = field(default_factory=Counter)
    """frames_spooled by priority."""
    dropped: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Frames given up, by (reason, priority): spool_full, evicted, oversize, unsent_at_exit."""
    frames_lost_in_crash: int = 0
    """Frames the previous run (killed) read but neither published nor spooled: sequence gaps."""
    spool_records: int = 0
    spool_bytes: int = 0
    spool_torn_bytes: int = 0
    """Bytes of torn or corrupt spool tail skipped at start."""
    spool_available: bool = True
    """False when a spool is configured but its filesystem refuses writes (read-only, I/O error):
    the producer then runs without one (reading waits for Redis)."""
    spool_full_writes: int = 0
    """Spool writes the filesystem refused for lack of space (ENOSPC, short write)."""
    read_blocked: bool = False
    """Reading paused: Redis is down and the spool is full of critical/high frames."""
    redis_breaker: BreakerState = BreakerState.CLOSED
    device_breaker: BreakerState = BreakerState.CLOSED


REPLAY_BATCH = 500
"""Spooled entries sent per pipeline during a replay."""


class RateLimitedLog:
    """At most ``burst`` log lines per ``window_s``; then one line saying how many were not logged."""

    def __init__(self, burst: int = 10, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.burst, self.window_s, self.clock = burst, window_s, clock
        self._start = -window_s
        self._logged = 0
        self.suppressed = 0

    def warning(self, msg: str, *args: object) -> None:
        now = self.clock()
        if now - self._start >= self.window_s:
            if self.suppressed:
                logger.warning("%d more rejections in the last %.0fs were not logged", self.suppressed, self.window_s)
            self._start, self._logged, self.suppressed = now, 0, 0
        if self._logged < self.burst:
            self._logged += 1
            logger.warning(msg, *args)
        else:
            self.suppressed += 1


def run_producer(
    source: Source,
    publisher: Publisher,
    validator: RangeValidator,
    stop: threading.Event,
    read_timeout: float = 0.2,
    reconnect_max: float = 10.0,
    stop_grace: float = 10.0,
    *,
    spool: Spool | None = None,
    redis_breaker: Breaker | None = None,
    device_breaker: Breaker | None = None,
    stats: ProducerStats | None = None,
) -> ProducerStats:
    """Run until ``stop`` is set or the source is exhausted; return the stats.

    ``spool`` (optional) takes frames while Redis is unavailable; the run continues the
    spool's producer id and sequence (see Spool.resume). ``stats`` may be passed in to be
    read live by a metrics exporter.
    """
    loop = _Loop(source, publisher, validator, stop, read_timeout, reconnect_max, stats or ProducerStats())
    loop.spool = spool
    loop.redis_breaker = redis_breaker or Breaker("redis", open_s=min(5.0, reconnect_max))
    loop.device_breaker = device_breaker or Breaker("device", open_s=min(5.0, reconnect_max))
    return loop.run(stop_grace)


class _Loop:
    def __init__(
        self,
        source: Source,
        publisher: Publisher,
        validator: RangeValidator,
        stop: threading.Event,
        read_timeout: float,
        reconnect_max: float,
        stats: ProducerStats,
    ) -> None:
        self.source, self.publisher, self.validator, self.stop = source, publisher, validator, stop
        self.read_timeout = read_timeout
        self.stats = stats
        self.device_backoff = Backoff(base=0.1, cap=reconnect_max)
        self.redis_backoff = Backoff(base=0.05, cap=reconnect_max)
        self.spool: Spool | None = None
        self.redis_breaker = Breaker("redis")
        self.device_breaker = Breaker("device")
        self.reject_log = RateLimitedLog()

    def run(self, stop_grace: float) -> ProducerStats:
        if self.spool is not None:
            try:
                self._resume(self.spool)
            except SpoolUnavailableError as exc:
                self._spool_failed(exc)
        try:
            while not self.stop.is_set():
                if not self.publisher.has_pending and (self.stats.connected or self._open()):
                    frames = self._read()
                    if frames:
                        self.publisher.stamp(frames)
                        self._checkpoint()
                self._deliver()
                if not self.publisher.has_pending:
                    self._commit_source()
                self._export()
                if self.source.exhausted:
                    break
        finally:
            self._finish(time.monotonic() + stop_grace)
        return self.stats

    # ---- device ---------------------------------------------------------------------
    def _open(self) -> bool:
        if not self.device_breaker.allow():
            self.stop.wait(min(self.device_breaker.retry_in(), self.read_timeout))
            return False
        try:
            self.source.open()
        except SourceUnavailableError as exc:
            self.stats.open_failures += 1
            self.device_breaker.failure()
            delay = self.device_backoff.next_delay()
            logger.warning("%s: cannot open (%s); retry in %.1fs", self.source.source, exc, delay)
            self.stop.wait(delay)
            return False
        self.device_backoff.reset()
        self.stats.connects += 1
        self.stats.connected = True
        logger.info("%s: connected", self.source.source)
        return True

    def _read(self) -> list[Frame]:
        try:
            items = self.source.read(self.read_timeout)
        except SourceUnavailableError as exc:
            logger.warning("%s: source lost: %s; reconnecting", self.source.source, exc)
            self.stats.outages += 1
            self.stats.connected = False
            self.device_breaker.failure()
            self.source.close()
            return []
        except Exception as exc:  # a bug in a decoder must not end the producer (issue 12)
            logger.exception("%s: unexpected error while reading; input skipped", self.source.source)
            self._rejected(ParseError(f"unexpected {type(exc).__name__}: {str(exc)[:200]}", "internal"))
            return []
        self.device_breaker.success()
        frames = []
        for item in items:
            if isinstance(item, ParseError):
                self._rejected(item)
                continue
            frame = self.validator.check(item)
            try:
                validate_frame(frame)
            except DecodeError as exc:
                self._rejected(ParseError(f"{frame.device[:60]}: {exc}", "schema"))
                continue
            frames.append(frame)
        self.stats.frames_read += len(frames)
        return frames

    def _rejected(self, error: ParseError) -> None:
        """Count a rejection; dead-letter it (via a rejection entry) when it carries its input."""
        self.stats.parse_errors[error.kind] += 1
        if error.raw is None:
            return
        device = getattr(self.source, "device", "")
        rejection = Rejection(
            self.source.source,
            device if isinstance(device, str) else "",
            error.kind,
            str(error),
            error.raw,
            error.size,
            error.file,
            error.line or 0,
        )
        self.publisher.reject(rejection)
        self.stats.rejections_sent += 1
        where = f"{error.file}:{error.line}" if error.file else f"line {error.line}"
        self.reject_log.warning("%s: rejected %s (%s): %s", self.source.source, where, error.kind, str(error)[:300])

    def _commit_source(self) -> None:
        """Tell a resumable source (jsonl on a regular file) that everything it returned is delivered."""
        commit = getattr(self.source, "commit", None)
        if commit is not None:
            try:
                commit()
            except OSError as exc:
                logger.error("%s: cannot save the read position: %s", self.source.source, exc)

    # ---- Redis and the spool --------------------------------------------------------
    def _deliver(self) -> None:
        if self.spool is None:
            self._send_blocking(self.stop, None)
            return
        try:
            self._deliver_spooled(self.spool)
        except SpoolUnavailableError as exc:
            self._spool_failed(exc)

    def _deliver_spooled(self, spool: Spool) -> None:
        # Replay first: the spool holds older frames, and on a full disk (a restart after an
        # outage) new frames only fit once the old ones are out.
        self._replay(spool, time.monotonic() + self.read_timeout)
        if self.publisher.has_pending and spool.empty and self.redis_breaker.allow():
            self._send_direct()
        if self.publisher.has_pending:
            self._spool_pending(spool)
        self._checkpoint()
        spool.sync()
        if self.publisher.has_pending:  # blocked: wait for Redis rather than spin
            self.stop.wait(max(0.05, min(self.redis_breaker.retry_in(), self.read_timeout)))

    def _send_direct(self) -> None:
        before = self.publisher.published
        try:
            self.publisher.send()
            self.redis_breaker.success()
        except RedisError as exc:
            self._redis_failed(exc)
        self.stats.frames_published += self.publisher.published - before

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
            self.stats.frames_replayed += sent
            self.stats.frames_published += sent
            if error is not None:
                self._redis_failed(error)
                return
            self.redis_breaker.success()
            if spool.empty:
                logger.info("spool drained: %d frames replayed so far", self.stats.frames_replayed)
            if time.monotonic() > deadline:
                return

    def _spool_failed(self, exc: SpoolUnavailableError) -> None:
        """The spool's filesystem refuses writes (read-only after an SD-card error): go on without it."""
        logger.error("%s; running WITHOUT a spool: reading now waits while Redis is down", exc)
        self.stats.spool_available = False
        spool, self.spool = self.spool, None
        if spool is not None:
            with contextlib.suppress(OSError):
                spool.release()

    def _redis_failed(self, exc: RedisError) -> None:
        self.stats.redis_errors += 1
        was_open = self.redis_breaker.opened
        self.redis_breaker.failure()
        if self.redis_breaker.opened != was_open:
            logger.warning("redis unavailable (%s): breaker open, frames go to the spool", exc)
        else:
            logger.info("redis publish failed: %s", exc)

    def _checkpoint(self) -> None:
        """Persist the sequence state: numbers below ``durable`` are published, spooled or counted."""
        if self.spool is not None:
            pending = self.publisher.pending
            durable = min(f.seq for f in pending) if pending else self.publisher.next_seq
            try:
                self.spool.save_seq(self.publisher.next_seq, durable)
            except SpoolUnavailableError as exc:
                self._spool_failed(exc)

    def _resume(self, spool: Spool) -> None:
        spool.on_drop = lambda reason, priority, n: self.stats.dropped.update({(reason, priority.value): n})
        producer, seq, lost = spool.resume(self.publisher.producer_id)
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

    def _export(self) -> None:
        self.stats.redis_breaker = self.redis_breaker.state
        self.stats.device_breaker = self.device_breaker.state
        if self.spool is not None:
            self.stats.spool_records = self.spool.records
            self.stats.spool_bytes = self.spool.bytes
            self.stats.spool_full_writes = self.spool.full_writes

    def _finish(self, deadline: float) -> None:
        self.source.close()
        self.stats.connected = False
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
        if not self.publisher.has_pending:
            self._commit_source()
        self.stats.frames_unsent = len(self.publisher.pending)
        if self.publisher.rejections:
            self.stats.dropped[("unsent_at_exit", REJECTION_PRIORITY.value)] += len(self.publisher.rejections)
            logger.error("%d rejection entries not sent at exit", len(self.publisher.rejections))
        if self.stats.frames_unsent:
            logger.error("%s: %d frames read but not published at exit", self.source.source, self.stats.frames_unsent)
        if self.spool is not None:
            self.publisher.pending = []  # counted above: the state may call every number accounted for
            self._checkpoint()
            self._export()
        if self.spool is not None:
            try:
                self.spool.close()
            except SpoolUnavailableError as exc:
                logger.error("%s: the spool's state may be stale at the next start", exc)

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

    def _send_blocking(self, stop: threading.Event, deadline: float | None) -> None:
        """No spool: retry Redis with backoff until the frames are sent, ``stop`` or ``deadline``."""
        while self.publisher.has_pending:
            before = self.publisher.published
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
                self.stats.frames_published += self.publisher.published - before
