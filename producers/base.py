"""The runtime every producer uses: the Source interface and the run loop (device I/O only).

The loop opens the source (reconnecting with backoff and a circuit breaker), reads frames and
parse errors, counts errors, validates ranges and hands the frames to the outbox
(producers.outbox), which owns delivery: stamping, Redis, the spool, replay and drain. It stops
cleanly when ``stop`` is set (SIGTERM): what was read is published (or spooled) before it returns.
Reading pauses while the outbox is ``blocked``. After each turn in which everything read was
delivered, a resumable source (jsonl on a regular file) is told to persist its position
(``commit``). It does not parse device bytes (sources do) and builds no Redis names.

Rejected input never ends the loop: a ParseError is counted by kind; one that carries the raw
input (data: a jsonl line) is also sent as a rejection entry the writer dead-letters, and
logged with its line number (rate-limited). A frame the writer would refuse (common.schema
``validate_frame``) is such a rejection too, and so is any unexpected exception of a source's
``read``: only SourceUnavailableError reaches the reconnect logic.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable

from common.backoff import Backoff
from common.breaker import Breaker
from common.errors import DecodeError, ParseError, SourceUnavailableError
from common.publish import Publisher
from common.schema import Frame, Rejection, validate_frame
from producers.outbox import REPLAY_BATCH, Outbox
from producers.spool import Spool
from producers.stats import ProducerStats
from producers.validate import RangeValidator

__all__ = ["REPLAY_BATCH", "CountingSource", "ProducerStats", "RateLimitedLog", "Source", "run_producer"]

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


@runtime_checkable
class CountingSource(Protocol):
    """A source that keeps counts of its own events (reconnects of one scale, GPS week rollovers).

    Optional: a source that has such counts adds ``counters()``; the producer exports them as
    ``telemetry_producer_source_events_total{source,device,event}`` at scrape time. Keys are
    ``(device, event)``, device ``""`` for a count of the whole source; values only grow. It is
    called from the metrics thread: return a copy, never a live dict.
    """

    def counters(self) -> Mapping[tuple[str, str], int]: ...


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
    stats = stats or ProducerStats()
    outbox = Outbox(publisher, stats, spool, redis_breaker, reconnect_max, poll_s=read_timeout)
    device_breaker = device_breaker or Breaker("device", open_s=min(5.0, reconnect_max))
    return _Loop(source, outbox, validator, stop, read_timeout, reconnect_max, device_breaker).run(stop_grace)


class _Loop:
    """Device I/O and rejections; everything about delivery is the outbox's."""

    def __init__(
        self,
        source: Source,
        outbox: Outbox,
        validator: RangeValidator,
        stop: threading.Event,
        read_timeout: float,
        reconnect_max: float,
        device_breaker: Breaker,
    ) -> None:
        self.source, self.outbox, self.validator, self.stop = source, outbox, validator, stop
        self.read_timeout = read_timeout
        self.stats = outbox.stats
        self.device_backoff = Backoff(base=0.1, cap=reconnect_max)
        self.device_breaker = device_breaker
        self.reject_log = RateLimitedLog()

    def run(self, stop_grace: float) -> ProducerStats:
        self.outbox.resume()
        try:
            while not self.stop.is_set():
                if not self.outbox.blocked and (self.stats.connected or self._open()):
                    frames = self._read()
                    if frames:
                        self.outbox.add(frames)
                if self.outbox.deliver(self.stop):
                    self._commit_source()
                self.outbox.export()
                self.stats.device_breaker = self.device_breaker.state
                if self.source.exhausted:
                    break
        finally:
            self._finish(time.monotonic() + stop_grace)
        return self.stats

    def _finish(self, deadline: float) -> None:
        self.source.close()
        self.stats.connected = False
        if self.outbox.finish(deadline):
            self._commit_source()
        self.stats.device_breaker = self.device_breaker.state
        if self.stats.frames_unsent:
            logger.error("%s: %d frames read but not published at exit", self.source.source, self.stats.frames_unsent)

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
        self.outbox.reject(rejection)
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
