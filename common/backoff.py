"""Reconnect and retry delays: exponential backoff with jitter, as a pure object.

Modelled on psycopg_pool's AttemptWithBackoff. It only computes delays; callers sleep.
"""

from __future__ import annotations

import math
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
        """The delay to wait before the next attempt; counts the attempt.

        Never overflows however long an outage lasts: once the delay has reached the cap the
        exponent is no longer evaluated (``factor ** 1024`` is an ``OverflowError``).
        """
        raw = self.cap if self._capped() else min(self.cap, self.base * self.factor**self.attempts)
        self.attempts += 1
        return raw * (1.0 - self.jitter * self.rng.random())

    def _capped(self) -> bool:
        """Whether ``base * factor**attempts`` has reached the cap (decided without computing it)."""
        if self.factor <= 1 or self.base <= 0:
            return False  # the delay never grows, so the power cannot overflow (factor**n <= 1)
        return self.attempts >= math.log(max(self.cap / self.base, 1.0)) / math.log(self.factor)

    def reset(self) -> None:
        """Call after a success."""
        self.attempts = 0
