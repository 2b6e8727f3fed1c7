"""FillEstimator: how long until a level (bytes) reaches its capacity at the current rate. Pure.

Fed with (time, level, capacity) samples (a scrape, a status refresh); the rate is the level's
change over the samples of the last ``window_s`` seconds. ``seconds_until_full`` is None while
there is no capacity or fewer than two samples, +inf while the level is not growing, 0 when
full. Used for Redis memory (writer metrics, status view) and a producer's spool.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable


class FillEstimator:
    def __init__(self, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self.clock = clock
        self.samples: deque[tuple[float, float]] = deque()
        self.capacity: float | None = None

    def add(self, level: float, capacity: float | None, at: float | None = None) -> None:
        now = self.clock() if at is None else at
        self.samples.append((now, float(level)))
        self.capacity = capacity if capacity else None
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window_s:
            self.samples.popleft()  # keep one sample at least window_s old: the rate spans the window

    @property
    def level(self) -> float | None:
        return self.samples[-1][1] if self.samples else None

    def rate(self) -> float | None:
        """Change of the level per second over the window; None with fewer than two samples."""
        if len(self.samples) < 2:
            return None
        (t0, v0), (t1, v1) = self.samples[0], self.samples[-1]
        return (v1 - v0) / (t1 - t0) if t1 > t0 else None

    def seconds_until_full(self) -> float | None:
        rate, level = self.rate(), self.level
        if self.capacity is None or rate is None or level is None:
            return None
        if level >= self.capacity:
            return 0.0
        return (self.capacity - level) / rate if rate > 0 else math.inf
