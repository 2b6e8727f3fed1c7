"""XACK after commit, never before; and retrying Redis writes that must not be dropped.

No PostgreSQL here. An ack or a dead letter that fails on a Redis error is retried until
it succeeds: dropping it would leave an entry pending (redelivered later, harmless thanks
to the idempotency ledger) but a dead letter must never be lost.
"""

from __future__ import annotations

import logging
import time
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


def until_done(fn: Callable[[], object], on_error: Callable[[], None] | None = None) -> None:
    """Call ``fn`` until it stops raising RedisError, backing off between attempts."""
    backoff = Backoff(base=0.05, cap=5.0)
    while True:
        try:
            fn()
            return
        except RedisError as exc:
            if on_error is not None:
                on_error()
            delay = backoff.next_delay()
            logger.warning("redis error while acking or dead-lettering (%s); retry in %.2fs", exc, delay)
            time.sleep(delay)
