"""Publisher: stamps frames with the producer key and XADDs them, pipelined.

The only producer-side Redis write. Never trims (``XADD MAXLEN`` would delete entries no
writer has read). A failed send keeps the stamped frames, so a retry re-sends the same
idempotency keys; the writer deduplicates them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import replace

from redis import Redis

from common.schema import Frame, encode
from common.streams import StreamNames


def new_producer_id(name: str) -> str:
    """``<name>/<run>``: the run part is new on every start, so keys are never reused."""
    run = f"{time.time_ns() // 1_000_000:x}-{os.urandom(3).hex()}"
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
        """XADD every pending frame in one pipeline. Raises redis errors; pending is kept."""
        if not self.pending:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for frame in self.pending:
            pipe.xadd(self.names.stream(frame.priority), encode(frame))  # type: ignore[arg-type]
        pipe.execute()
        sent = len(self.pending)
        self.published += sent
        self.pending = []
        return sent
