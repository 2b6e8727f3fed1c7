"""ProducerStats: what a producer's run loop and outbox have done, read live by the metrics exporter."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from common.breaker import BreakerState


@dataclass
class ProducerStats:
    """What the loop has done; exported as metrics by the operations layer."""

    read_by_priority: Counter[str] = field(default_factory=Counter)
    """Frames read and validated, by priority; updated by the outbox as the loop hands them over."""
    published_by_priority: Counter[str] = field(default_factory=Counter)
    """Frames Redis accepted (sent directly or replayed from the spool), by priority; updated by the
    outbox, the only caller of the publisher. The one count of published frames."""
    parse_errors: Counter[str] = field(default_factory=Counter)
    """Rejected input by kind (every rejection, dead-lettered or only counted)."""
    rejections_sent: int = 0
    """Rejection entries published (or spooled) for the writer to dead-letter."""
    connects: int = 0
    outages: int = 0
    """Times a connected source was lost (unplugged, link down)."""
    open_failures: int = 0
    redis_errors: int = 0
    frames_unsent: int = 0
    """Frames read but neither published nor spooled when the process stopped."""
    connected: bool = False
    frames_spooled: int = 0
    """Frames written to the on-disk spool while Redis was down or refused writes."""
    frames_replayed: int = 0
    """Spooled frames published later (also counted in published_by_priority)."""
    spooled: Counter[str] = field(default_factory=Counter)
    """frames_spooled by priority."""
    dropped: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Frames given up, by (reason, priority): spool_full, evicted, oversize, unsent_at_exit."""
    frames_lost_in_crash: int = 0
    """Frames the previous run (killed) read but neither published nor spooled: sequence gaps."""
    spool_records: int = 0
    spool_bytes: int = 0
    spool_limit_bytes: int = 0
    """Bytes the spool may use now (its maximum, or less when the filesystem has less free); 0 = no spool."""
    spool_torn_bytes: int = 0
    """Bytes of torn or corrupt spool tail skipped at start."""
    spool_available: bool = True
    """False when a spool is configured but its filesystem refuses writes (read-only, I/O error):
    the producer then runs without one (reading waits for Redis)."""
    spool_full_writes: int = 0
    """Spool writes the filesystem refused for lack of space (ENOSPC, short write)."""
    read_blocked: bool = False
    """Reading paused: Redis is down and the spool is full of critical/high frames."""
    redis_breaker: BreakerState = BreakerState.CLOSED
    device_breaker: BreakerState = BreakerState.CLOSED

    @property
    def frames_read(self) -> int:
        return sum(self.read_by_priority.values())

    @property
    def frames_published(self) -> int:
        return sum(self.published_by_priority.values())
