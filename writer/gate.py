"""PriorityGate: strict priority between a replica's lanes, inside one process.

Lanes are ranked (0 = urgent, 1 = live, 2 = bulk). While a lane has frames in hand (from
read to ack) it is *busy*; every lower lane pauses at its next checkpoint (every
CHECK_EVERY frames of decoding or COPY) until the higher lanes are done, so the CPU, the GIL
and PostgreSQL go to the more urgent frames first. Each pause is bounded (``max_pause_s``):
a lower lane is slowed, never starved. Pure threading.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

CHECK_EVERY = 256
"""Frames between two checkpoints of a lane."""


class PriorityGate:
    def __init__(self, lanes: int, max_pause_s: float = 0.2) -> None:
        self._idle = [threading.Event() for _ in range(lanes)]
        for event in self._idle:
            event.set()
        self.max_pause_s = max_pause_s
        self.pauses = 0

    @contextmanager
    def busy(self, rank: int) -> Iterator[None]:
        """Held by lane ``rank`` while it has frames in hand."""
        self._idle[rank].clear()
        try:
            yield
        finally:
            self._idle[rank].set()

    def checkpoint(self, rank: int) -> None:
        """Called by lane ``rank``; waits while any higher lane is busy (a no-op for rank 0)."""
        for higher in self._idle[:rank]:
            if not higher.is_set():
                self.pauses += 1
                higher.wait(self.max_pause_s)
