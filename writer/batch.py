"""Batcher: collects decoded frames until a batch is due, by size or by age. Pure.

Critical and high frames are kept apart and are due at once: they never wait for the
batching delay and never sit behind a bulk backlog. ``max_rows`` is a bound, not a trigger
only: ``fits()`` says when a frame would take a batch past it, and the caller commits the
batch first. The one exception is a single frame with more channels than ``max_rows``: it
becomes a batch of its own (frames are never split; MAX_CHANNELS bounds them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from common.schema import Frame, Priority
from writer.read import Entry

URGENT = frozenset({Priority.CRITICAL, Priority.HIGH})

Item = tuple[Entry, Frame]


@dataclass
class Batcher:
    max_rows: int
    max_age_s: float
    urgent: list[Item] = field(default_factory=list)
    normal: list[Item] = field(default_factory=list)
    rows: int = 0
    first_at: float | None = None
    urgent_rows: int = 0

    def fits(self, priority: Priority, rows: int) -> bool:
        """False when a frame of ``rows`` channels would take its batch past ``max_rows``.

        An empty batch takes any frame, so a frame larger than ``max_rows`` is a batch of its own.
        """
        if priority in URGENT:
            return not self.urgent or self.urgent_rows + rows <= self.max_rows
        return not self.normal or self.rows + rows <= self.max_rows

    def add(self, entry: Entry, frame: Frame, now: float) -> None:
        if entry.priority in URGENT:
            self.urgent.append((entry, frame))
            self.urgent_rows += len(frame.channels)
            return
        if self.first_at is None:
            self.first_at = now
        self.normal.append((entry, frame))
        self.rows += len(frame.channels)

    def __len__(self) -> int:
        return len(self.urgent) + len(self.normal)

    def is_due(self, now: float) -> bool:
        """True when the normal batch is full or its oldest frame has waited ``max_age_s``."""
        if not self.normal:
            return False
        assert self.first_at is not None
        return self.rows >= self.max_rows or now - self.first_at >= self.max_age_s

    def wait_s(self, now: float, default: float) -> float:
        """How long a blocking read may wait without making the batch late."""
        if self.urgent:
            return 0.0
        if self.first_at is None:
            return default
        return max(0.0, min(default, self.first_at + self.max_age_s - now))

    def take_urgent(self) -> list[Item]:
        items, self.urgent = self.urgent, []
        self.urgent_rows = 0
        return items

    def take(self, priority: Priority) -> list[Item]:
        """The batch a frame of ``priority`` goes to (urgent or normal), emptied."""
        return self.take_urgent() if priority in URGENT else self.take_normal()

    def take_normal(self) -> list[Item]:
        items, self.normal = self.normal, []
        self.rows = 0
        self.first_at = None
        return items
