"""Read-ahead: XREADGROUP, and the decoding of its entries, done in a helper thread while the
lane commits a batch.

When a read returns a full READ_COUNT (a backlog), the lane sends the next reads (not blocking)
before it commits what it has, so it waits neither for Redis between batches nor, while
PostgreSQL works on a batch, with nothing to do: the helper reads and decodes the next entries
meanwhile (issue 15). Up to ``DEPTH`` reads are in flight, run one after the other in one thread
and taken in the order they were sent; the entries they hold (at most DEPTH x READ_COUNT) are
pending in the group like any others: the lane takes them at its next reads, a clean stop
ingests and commits them, a crash leaves them for XAUTOCLAIM. Errors of a read are raised where
the lane takes it, as a read's own. No other state. What "read" returns is the caller's
(writer/loop.py: decoded entries).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")

DEPTH = 2
"""Reads in flight at most. One is not enough: a lane that commits every other read would wait
for the helper's read and decode in between, with PostgreSQL idle."""


class ReadAhead(Generic[T]):
    def __init__(self, name: str, depth: int = DEPTH) -> None:
        self.name = name
        self.depth = depth
        self.sent = 0
        """Reads sent ahead so far."""
        self._pending: deque[Future[T]] = deque()
        self._pool: ThreadPoolExecutor | None = None

    def send(self, read: Callable[[], T]) -> None:
        """Queue ``read`` (a non-blocking XREADGROUP and what follows it) in the helper thread
        until ``depth`` reads are in flight."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix=self.name)
        while len(self._pending) < self.depth:
            self._pending.append(self._pool.submit(read))
            self.sent += 1

    def take(self) -> T | None:
        """What the oldest read in flight returned (waiting for it; raising its error), or None
        when none is."""
        return self._pending.popleft().result() if self._pending else None

    def forget(self) -> None:
        """Let go of the reads in flight (after a MemoryError): their entries stay pending."""
        self._pending.clear()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)  # a read sent ahead does not block: this ends soon
