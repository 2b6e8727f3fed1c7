"""CanSource: the run loop's view of the can source (producers/base.py Source). It pulls messages
from a feed (producers/can/feeds.py) for up to ``timeout`` seconds (at most MAX_BATCH) and hands
each to the pure CanDecoder. Counts (messages, decoded, suppressed, remote) are in ``counts``,
exported by ``counters()`` to /metrics (``telemetry_producer_source_events_total``, device empty);
rejections reach ProducerStats.parse_errors by kind through the run loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Protocol

from common.clock import Clock, SystemClock
from common.errors import ParseError
from common.schema import Frame
from producers.can.decode import CanDecoder, RawMessage

logger = logging.getLogger(__name__)

MAX_BATCH = 5000
"""Most messages handled in one ``read`` (the loop publishes in between)."""


class Feed(Protocol):
    exhausted: bool

    def open(self) -> None: ...

    def recv(self, timeout: float) -> RawMessage | ParseError | None: ...

    def close(self) -> None: ...


class CanSource:
    source = "can"

    def __init__(self, feed: Feed, decoder: CanDecoder, device: str, clock: Clock | None = None) -> None:
        self.feed, self.decoder, self.device = feed, decoder, device
        self.clock = clock or SystemClock()
        self.counts = decoder.counts

    @property
    def exhausted(self) -> bool:
        return self.feed.exhausted

    def counters(self) -> dict[tuple[str, str], int]:
        """("", event) -> count for /metrics: the decoder's ``counts`` (source-wide)."""
        return {("", event): n for event, n in dict(self.counts).items()}

    def open(self) -> None:
        self.feed.open()

    def close(self) -> None:
        self.feed.close()
        counts = ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
        logger.info("%s: %s", self.device, counts or "no messages")

    def read(self, timeout: float) -> Sequence[Frame | ParseError]:
        out: list[Frame | ParseError] = []
        deadline = time.monotonic() + timeout
        for _ in range(MAX_BATCH):
            item = self.feed.recv(max(0.0, deadline - time.monotonic()))
            if item is None:
                if self.feed.exhausted or time.monotonic() >= deadline:
                    break
                continue
            if isinstance(item, ParseError):
                out.append(item)
                continue
            out.extend(self.decoder.decode(item, self.clock.now(), self.clock.monotonic_ns()))
            if time.monotonic() >= deadline:
                break
        return out
