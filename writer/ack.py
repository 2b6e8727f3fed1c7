"""XACK after commit, never before; and retrying the acks of committed frames.

No PostgreSQL here. An ack that fails on a Redis error is retried until it succeeds or the
writer stops: a dropped ack only leaves an entry pending (redelivered later, harmless thanks
to the idempotency ledger). XACK needs no memory, so it goes through while Redis is at
``maxmemory``. Dead letters are not retried here (writer/deadletter.py: a refused one stays
pending and the lane moves on).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from redis import Redis
from redis.exceptions import RedisError

from common.backoff import Backoff
from common.streams import StreamNames
from writer.read import Entry

logger = logging.getLogger(__name__)


def ack(redis: Redis, names: StreamNames, entries: Iterable[Entry]) -> int:
    """XACK the entries, one XACK per stream, in one pipeline; returns how many were given."""
    by_stream: dict[str, list[bytes]] = {}
    n = 0
    for e in entries:
        by_stream.setdefault(e.stream, []).append(e.id)
        n += 1
    if by_stream:
        pipe = redis.pipeline(transaction=False)
        for stream, ids in by_stream.items():
            pipe.xack(stream, names.group, *ids)
        pipe.execute()
    return n


def until_done(
    fn: Callable[[], object], on_error: Callable[[], None] | None = None, stop: threading.Event | None = None
) -> bool:
    """Call ``fn`` until it stops raising RedisError, backing off between attempts.

    Returns False, without finishing, once ``stop`` is set: a retry never outlives SIGTERM.
    """
    backoff = Backoff(base=0.05, cap=5.0)
    stop = stop or threading.Event()
    while True:
        try:
            fn()
            return True
        except RedisError as exc:
            if on_error is not None:
                on_error()
            delay = backoff.next_delay()
            logger.warning("redis error while acking (%s); retry in %.2fs", exc, delay)
            if stop.wait(delay):
                return False
