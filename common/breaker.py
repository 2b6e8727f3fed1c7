"""Circuit breaker: stop hammering a link that keeps failing, probe it again later.

closed --(``failures`` failures in a row)--> open --(``open_s`` seconds)--> half_open
half_open --(``successes`` successes in a row)--> closed;  half_open --(one failure)--> open

Pure: time comes from an injected ``clock`` (seconds, monotonic); nothing sleeps here.
The caller asks ``allow()`` before using the link and reports ``success()`` / ``failure()``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class Breaker:
    """One link's breaker. ``state`` is exported as a metric label (closed/open/half_open)."""

    name: str = "link"
    failures: int = 5
    """Consecutive failures that open the breaker."""
    open_s: float = 5.0
    """Seconds the breaker stays open before letting probes through (half-open)."""
    successes: int = 2
    """Consecutive successes in half-open that close it again."""
    clock: Callable[[], float] = time.monotonic
    opened: int = 0
    """Times the breaker has opened (a counter for metrics)."""
    _state: BreakerState = field(default=BreakerState.CLOSED, repr=False)
    _failed: int = field(default=0, repr=False)
    _succeeded: int = field(default=0, repr=False)
    _opened_at: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        if self.failures < 1 or self.successes < 1 or self.open_s < 0:
            raise ValueError("breaker needs failures >= 1, successes >= 1, open_s >= 0")

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker turns half-open once ``open_s`` has passed."""
        if self._state is BreakerState.OPEN and self.clock() - self._opened_at >= self.open_s:
            self._state = BreakerState.HALF_OPEN
            self._succeeded = 0
        return self._state

    def allow(self) -> bool:
        """May the link be used now? False only while open."""
        return self.state is not BreakerState.OPEN

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when not open)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.open_s - self.clock())

    def success(self) -> None:
        state = self.state
        self._failed = 0
        if state is BreakerState.HALF_OPEN:
            self._succeeded += 1
            if self._succeeded >= self.successes:
                self._state = BreakerState.CLOSED

    def failure(self) -> None:
        state = self.state
        if state is BreakerState.HALF_OPEN:
            self._trip()
            return
        self._failed += 1
        if state is BreakerState.CLOSED and self._failed >= self.failures:
            self._trip()

    def _trip(self) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self.clock()
        self._failed = 0
        self._succeeded = 0
        self.opened += 1
