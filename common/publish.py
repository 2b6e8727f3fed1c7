"""Publisher: stamps frames with the producer key and XADDs them, pipelined.

The only producer-side Redis write. Never trims (``XADD MAXLEN`` would delete entries no
writer has read). A failed send keeps the stamped frames, so a retry re-sends the same
idempotency keys; the writer deduplicates them. Rejection entries (``reject``) travel in the
same pipeline, to the bulk stream, for the writer to dead-letter (they carry no sequence number).
It counts nothing: what was sent is its return value and what is left in ``pending`` (a producer's
counts live in producers.stats.ProducerStats, updated by the outbox).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace

from redis import Redis
from redis.exceptions import RedisError

from common.errors import ConfigError
from common.schema import MAX_NAME_LEN, Frame, Priority, Rejection, encode, encode_rejection
from common.streams import StreamNames

RUN_ID_RESERVE = 32
"""Characters of a producer id taken by ``/<run>`` (``/`` + 11 hex ms + ``-`` + 16 hex, rounded up)."""

MAX_PRODUCER_NAME = MAX_NAME_LEN - RUN_ID_RESERVE
"""Longest producer name: the id ``<name>/<run>`` must fit the writer's MAX_NAME_LEN."""

REJECTION_PRIORITY = Priority.BULK
"""Stream rejection entries go to: never urgent, and the one stream every producer user may write."""


def check_producer_name(name: str, setting: str = "TELEMETRY_PRODUCER__NAME") -> str:
    """``name`` if it can make producer ids the writer accepts; ConfigError (one line) otherwise."""
    if not name or len(name) > MAX_PRODUCER_NAME or "\x00" in name:
        raise ConfigError(
            f"{setting}: a producer name must be 1-{MAX_PRODUCER_NAME} characters without NUL "
            f"(got {len(name)}): the writer refuses longer producer ids"
        )
    return name


def new_producer_id(name: str) -> str:
    """``<name>/<run>``: the run part is new on every start, so keys are never reused."""
    # ms timestamp + 64 random bits: two starts in the same millisecond still differ.
    run = f"{time.time_ns() // 1_000_000:x}-{os.urandom(8).hex()}"
    return f"{name}/{run}"


class Publisher:
    """Assigns ``(producer, seq)`` and sends frames to their priority streams."""

    def __init__(self, redis: Redis, names: StreamNames, producer_id: str) -> None:
        self.redis = redis
        self.names = names
        self.producer_id = producer_id
        self.next_seq = 1
        self.pending: list[Frame] = []
        self.rejections: list[dict[str, str | bytes]] = []
        """Encoded rejection entries not yet sent."""

    @property
    def has_pending(self) -> bool:
        return bool(self.pending or self.rejections)

    def reject(self, rejection: Rejection) -> None:
        """Queue a rejection entry for ``send`` (the writer dead-letters it)."""
        self.rejections.append(encode_rejection(rejection, self.producer_id))

    def stamp(self, frames: Sequence[Frame]) -> None:
        """Give each frame the next sequence number and queue it for ``send``."""
        for frame in frames:
            self.pending.append(replace(frame, producer=self.producer_id, seq=self.next_seq))
            self.next_seq += 1

    def send(self) -> int:
        """XADD every pending frame and rejection in one pipeline; return how many frames were sent.

        Entries Redis accepted leave ``pending``/``rejections``; the rest stay (in order) and the
        first error is raised, so a retry or the spool re-sends only what Redis refused (OOM, NOPERM).
        """
        if not self.has_pending:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for frame in self.pending:
            pipe.xadd(self.names.stream(frame.priority), encode(frame))  # type: ignore[arg-type]
        for fields in self.rejections:
            pipe.xadd(self.names.stream(REJECTION_PRIORITY), fields)  # type: ignore[arg-type]
        results = pipe.execute(raise_on_error=False)
        n = len(self.pending)
        failed = [f for f, r in zip(self.pending, results[:n], strict=True) if isinstance(r, Exception)]
        kept = [f for f, r in zip(self.rejections, results[n:], strict=True) if isinstance(r, Exception)]
        sent = len(self.pending) - len(failed)
        self.pending, self.rejections = failed, kept
        for r in results:
            if isinstance(r, Exception):
                raise r
        return sent

    def send_entries(self, entries: Sequence[tuple[Priority, Mapping[bytes, bytes]]]) -> tuple[int, RedisError | None]:
        """XADD already-encoded entries (a spool replay) in order.

        Returns how many leading entries Redis accepted and the first error, if any; entries
        after the first refused one are sent again later (the writer drops the duplicates).
        """
        if not entries:
            return 0, None
        pipe = self.redis.pipeline(transaction=False)
        for priority, fields in entries:
            pipe.xadd(self.names.stream(priority), fields)  # type: ignore[arg-type]
        try:
            results = pipe.execute(raise_on_error=False)
        except RedisError as exc:
            return 0, exc
        for i, r in enumerate(results):
            if isinstance(r, Exception):
                return i, r if isinstance(r, RedisError) else RedisError(str(r))
        return len(entries), None
