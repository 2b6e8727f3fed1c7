"""The outbox on its own (fakeredis + a spool): delivery has one owner, the loop only reads."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import fakeredis
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from common.breaker import Breaker
from common.publish import Publisher
from common.schema import Channel, Frame, Priority, Rejection
from common.streams import StreamNames
from producers.outbox import Outbox
from producers.spool import Spool
from producers.stats import ProducerStats
from tests.integration.servers import free_port

T = datetime(2026, 11, 23, tzinfo=UTC)
NAMES = StreamNames("t")


def unreachable() -> Redis:
    """A client of a port nothing listens on, failing at once (no retries)."""
    return Redis(port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))


def frames(n: int) -> list[Frame]:
    return [Frame("simulate", "d", T, T, 0, (Channel("x", float(i)),)) for i in range(n)]


def test_outbox_spools_while_redis_is_down_then_replays_in_order(tmp_path: Path) -> None:
    down = unreachable()
    stats, stop = ProducerStats(), threading.Event()
    spool = Spool(tmp_path, 1 << 20, 4096, fsync_interval_s=0)
    outbox = Outbox(Publisher(down, NAMES, "p/1"), stats, spool, Breaker("redis", 1, 0.0, 1), poll_s=0.01)
    outbox.resume()
    outbox.add(frames(5))
    outbox.reject(Rejection("jsonl", "", "json", "line 3: bad", b"{", 1, "f", 3))
    assert outbox.deliver(stop) and not outbox.blocked  # spooled: reading may go on
    assert stats.frames_spooled == 5 and stats.frames_published == 0
    healthy = fakeredis.FakeRedis()
    outbox.publisher.redis = healthy
    while not spool.empty:  # a turn replays for at most poll_s
        assert outbox.deliver(stop)
    assert [f[b"seq"] for _, f in healthy.xrange(NAMES.stream(Priority.NORMAL))] == [b"1", b"2", b"3", b"4", b"5"]
    assert [f[b"line"] for _, f in healthy.xrange(NAMES.stream(Priority.BULK))] == [b"3"]
    # the spooled rejection entry is delivered but is no published frame
    assert stats.frames_replayed == stats.frames_published == 5 and stats.published_by_priority == {"normal": 5}
    assert outbox.finish(0.0) and stats.frames_unsent == 0


def test_without_a_spool_the_outbox_blocks_reading_until_redis_takes_the_frames() -> None:
    down = unreachable()
    stats, stop = ProducerStats(), threading.Event()
    outbox = Outbox(Publisher(down, NAMES, "p/1"), stats, None, Breaker("redis", 1, 0.0, 1), reconnect_max=0.01)
    outbox.add(frames(2))
    stop.set()  # one attempt, then give up this turn
    assert not outbox.deliver(stop) and outbox.blocked
    assert not outbox.finish(0.0) and stats.frames_unsent == 2


def test_a_partly_refused_send_counts_only_what_redis_took_by_priority() -> None:
    """The one count of published frames (ProducerStats.published_by_priority) is what left the
    publisher's pending list; a stream Redis refuses (WRONGTYPE here) keeps its frames pending."""
    redis = fakeredis.FakeRedis()
    redis.set(NAMES.stream(Priority.NORMAL), "not a stream")  # every XADD to normal fails
    stats, stop = ProducerStats(), threading.Event()
    outbox = Outbox(Publisher(redis, NAMES, "p/1"), stats, None, Breaker("redis", 5, 0.0, 1), reconnect_max=0.01)
    critical = [Frame("simulate", "d", T, T, 0, (Channel("x", 1.0),), priority=Priority.CRITICAL)] * 3
    outbox.add(frames(2) + critical)
    stop.set()  # one attempt
    assert not outbox.deliver(stop)
    assert stats.published_by_priority == {"critical": 3} and stats.frames_published == 3
    assert stats.read_by_priority == {"normal": 2, "critical": 3} and stats.frames_read == 5
    assert [f.priority for f in outbox.publisher.pending] == [Priority.NORMAL] * 2 and stats.redis_errors == 1
