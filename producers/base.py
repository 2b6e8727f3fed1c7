"""The runtime every producer uses: the Source interface and the run loop.

The loop opens the source (reconnecting with backoff), reads frames and parse errors,
counts errors, validates ranges, stamps and publishes frames pipelined, and stops cleanly
when ``stop`` is set (SIGTERM): what was read is published before it returns.
It does not parse device bytes (sources do) and builds no Redis names (common.streams does).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from redis.exceptions import RedisError

from common.backoff import Backoff
from common.errors import ParseError, SourceUnavailableError
from common.publish import Publisher
from common.schema import Frame
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
    connects: int = 0
    outages: int = 0
    """Times a connected source was lost (unplugged, link down)."""
    open_failures: int = 0
    redis_errors: int = 0
    frames_unsent: int = 0
    """Frames read but not published when the process stopped (Redis down at exit)."""
    connected: bool = False


def run_producer(
    source: Source,
    publisher: Publisher,
    validator: RangeValidator,
    stop: threading.Event,
    read_timeout: float = 0.2,
    reconnect_max: float = 10.0,
    stop_grace: float = 10.0,
    stats: ProducerStats | None = None,
) -> ProducerStats:
    """Run until ``stop`` is set or the source is exhausted; return the stats.

    Pass ``stats`` to watch them live from another thread (the metrics endpoint does).
    """
    stats = stats if stats is not None else ProducerStats()
    device_backoff = Backoff(base=0.1, cap=reconnect_max)
    redis_backoff = Backoff(base=0.05, cap=reconnect_max)
    try:
        while not stop.is_set():
            if not stats.connected and not _open(source, stats, device_backoff, stop):
                continue
            try:
                items = source.read(read_timeout)
            except SourceUnavailableError as exc:
                logger.warning("%s: source lost: %s; reconnecting", source.source, exc)
                stats.outages += 1
                stats.connected = False
                source.close()
                continue
            frames = []
            for item in items:
                if isinstance(item, ParseError):
                    stats.parse_errors[item.kind] += 1
                else:
                    frames.append(validator.check(item))
            stats.frames_read += len(frames)
            publisher.stamp(frames)
            _send(publisher, stats, redis_backoff, stop, deadline=None)
            if source.exhausted:
                break
    finally:
        source.close()
        stats.connected = False
        _send(publisher, stats, redis_backoff, threading.Event(), deadline=time.monotonic() + stop_grace)
        stats.frames_unsent = len(publisher.pending)
        if stats.frames_unsent:
            logger.error("%s: %d frames read but not published at exit", source.source, stats.frames_unsent)
    return stats


def _open(source: Source, stats: ProducerStats, backoff: Backoff, stop: threading.Event) -> bool:
    try:
        source.open()
    except SourceUnavailableError as exc:
        stats.open_failures += 1
        delay = backoff.next_delay()
        logger.warning("%s: cannot open (%s); retry in %.1fs", source.source, exc, delay)
        stop.wait(delay)
        return False
    backoff.reset()
    stats.connects += 1
    stats.connected = True
    logger.info("%s: connected", source.source)
    return True


def _send(
    publisher: Publisher,
    stats: ProducerStats,
    backoff: Backoff,
    stop: threading.Event,
    deadline: float | None,
) -> None:
    """Send pending frames, retrying Redis errors with backoff until sent, stop or deadline."""
    while publisher.pending:
        try:
            stats.frames_published += publisher.send()
            backoff.reset()
            return
        except RedisError as exc:
            stats.redis_errors += 1
            delay = backoff.next_delay()
            logger.warning(
                "redis publish failed (%s); %d frames pending, retry in %.2fs",
                exc,
                len(publisher.pending),
                delay,
            )
            if deadline is not None and time.monotonic() + delay > deadline:
                return
            if stop.wait(delay) and deadline is None:
                return
