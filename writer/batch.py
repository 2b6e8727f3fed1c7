"""Batcher: collects decoded frames until a batch is due, by size or by age. Pure.

Critical and high frames are kept apart and are due at once: they never wait for the
batching delay and never sit behind a bulk backlog.
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

    def add(self, entry: Entry, frame: Frame, now: float) -> None:
        if entry.priority in URGENT:
            self.urgent.append((entry, frame))
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
        return items

    def take_normal(self) -> list[Item]:
        items, self.normal = self.normal, []
        self.rows = 0
        self.first_at = None
        return items
