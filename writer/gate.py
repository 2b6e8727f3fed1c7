"""UrgentGate: strict priority between a replica's two lanes, inside one process.

While the urgent lane handles critical or high frames (read to ack), the main lane pauses
at its next checkpoint (every few hundred frames of decoding or COPY) until the urgent lane
is done, so the CPU, the GIL and PostgreSQL go to the urgent frames first. A pause is
bounded (``max_pause_s``), so the main lane is slowed, never starved. Pure threading.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

CHECK_EVERY = 256
"""Frames between two checkpoints of the main lane."""


class UrgentGate:
    def __init__(self, max_pause_s: float = 0.2) -> None:
        self._idle = threading.Event()
        self._idle.set()
        self.max_pause_s = max_pause_s
        self.pauses = 0

    @contextmanager
    def urgent(self) -> Iterator[None]:
        """Held by the urgent lane while it has frames in hand."""
        self._idle.clear()
        try:
            yield
        finally:
            self._idle.set()

    def checkpoint(self) -> None:
        """Called by the main lane; waits while urgent work is in progress."""
        if not self._idle.is_set():
            self.pauses += 1
            self._idle.wait(self.max_pause_s)


class NoGate(UrgentGate):
    """For a lane that must never pause (the urgent lane itself, tests)."""

    def checkpoint(self) -> None:
        pass
