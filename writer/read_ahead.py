"""Read-ahead: one XREADGROUP sent from a helper thread while the lane commits a batch.

When a read returns a full READ_COUNT (a backlog), the lane sends the next read (not blocking)
before it decodes and commits what it has, so it does not wait for Redis between batches (a
third of a single writer's wall time when draining a backlog, issue 15). The entries read ahead
are pending in the group like any others: the lane takes them at its next read, a clean stop
ingests and commits them, a crash leaves them for XAUTOCLAIM. Errors of the read are raised
where the lane takes it, as a read's own. At most one read is in flight; no other state.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from writer.read import Entry


class ReadAhead:
    def __init__(self, name: str) -> None:
        self.name = name
        self.sent = 0
        """Reads sent ahead so far."""
        self._pending: Future[list[Entry]] | None = None
        self._pool: ThreadPoolExecutor | None = None

    def send(self, read: Callable[[], list[Entry]]) -> None:
        """Start ``read`` (a non-blocking XREADGROUP) in the helper thread; one at a time."""
        if self._pending is not None:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix=self.name)
        self._pending = self._pool.submit(read)
        self.sent += 1

    def take(self) -> list[Entry] | None:
        """The entries of the read sent ahead (waiting for it; raising its error), or None when
        none was sent."""
        pending, self._pending = self._pending, None
        return None if pending is None else pending.result()

    def forget(self) -> None:
        """Let go of the read sent ahead (after a MemoryError): its entries stay pending."""
        self._pending = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)  # a read sent ahead does not block: this ends at once
