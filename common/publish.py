"""Publisher: stamps frames with the producer key and XADDs them, pipelined.

The only producer-side Redis write. Never trims (``XADD MAXLEN`` would delete entries no
writer has read). A failed send keeps the stamped frames, so a retry re-sends the same
idempotency keys; the writer deduplicates them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace

from redis import Redis
from redis.exceptions import RedisError

from common.schema import Frame, Priority, encode
from common.streams import StreamNames


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
        self.published = 0

    def stamp(self, frames: Sequence[Frame]) -> None:
        """Give each frame the next sequence number and queue it for ``send``."""
        for frame in frames:
            self.pending.append(replace(frame, producer=self.producer_id, seq=self.next_seq))
            self.next_seq += 1

    def send(self) -> int:
        """XADD every pending frame in one pipeline; return how many were sent.

        Frames Redis accepted leave ``pending``; the rest stay (in order) and the first error
        is raised, so a retry or the spool re-sends only what Redis refused (OOM, NOPERM).
        """
        if not self.pending:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for frame in self.pending:
            pipe.xadd(self.names.stream(frame.priority), encode(frame))  # type: ignore[arg-type]
        results = pipe.execute(raise_on_error=False)
        failed = [f for f, r in zip(self.pending, results, strict=True) if isinstance(r, Exception)]
        sent = len(self.pending) - len(failed)
        self.published += sent
        self.pending = failed
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
                self.published += i
                return i, r if isinstance(r, RedisError) else RedisError(str(r))
        self.published += len(entries)
        return len(entries), None
