"""Reconnect and retry delays: exponential backoff with jitter, as a pure object.

Modelled on psycopg_pool's AttemptWithBackoff. It only computes delays; callers sleep.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delay before attempt n is ``min(cap, base * factor**n)``, shrunk by up to ``jitter``."""

    base: float = 0.1
    cap: float = 10.0
    factor: float = 2.0
    jitter: float = 0.25
    rng: random.Random = field(default_factory=random.Random)
    attempts: int = 0

    def next_delay(self) -> float:
        """The delay to wait before the next attempt; counts the attempt."""
        raw = min(self.cap, self.base * self.factor**self.attempts)
        self.attempts += 1
        return raw * (1.0 - self.jitter * self.rng.random())

    def reset(self) -> None:
        """Call after a success."""
        self.attempts = 0
