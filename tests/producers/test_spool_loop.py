"""The run loop with a spool and breakers, on fakeredis: outage, replay, blocked reads, restart."""

from __future__ import annotations

import threading
from pathlib import Path

import fakeredis

from common.breaker import Breaker, BreakerState
from common.publish import Publisher
from common.schema import Priority
from common.settings import DEFAULT_RANGES
from common.streams import StreamNames
from producers.base import ProducerStats, run_producer
from producers.simulate import SimulateSource
from producers.spool import Spool
from producers.validate import RangeValidator
from tests.helpers import wait_for

NAMES = StreamNames("t")


def start(
    redis: fakeredis.FakeRedis,
    spool: Spool,
    count: int,
    priority: Priority = Priority.NORMAL,
    rate: float = 0,
    stop_grace: float = 0.5,
) -> tuple[threading.Thread, threading.Event, ProducerStats, Publisher]:
    source = SimulateSource(1, 2, rate_hz=rate, count=count, priority=priority, burst=50)
    publisher = Publisher(redis, NAMES, "sim/run1")
    stats, stop = ProducerStats(), threading.Event()
    kwargs = {
        "spool": spool,
        "stats": stats,
        "redis_breaker": Breaker("redis", failures=2, open_s=0.05, successes=1),
        "read_timeout": 0.02,
        "stop_grace": stop_grace,
    }
    thread = threading.Thread(
        target=run_producer, args=(source, publisher, RangeValidator(DEFAULT_RANGES), stop), kwargs=kwargs
    )
    thread.start()
    return thread, stop, stats, publisher


def seqs(redis: fakeredis.FakeRedis, priority: Priority = Priority.NORMAL) -> list[int]:
    return [int(f[b"seq"]) for _, f in redis.xrange(NAMES.stream(priority))]


def test_outage_spools_without_blocking_reads_then_replays_in_order(tmp_path: Path) -> None:
    server = fakeredis.FakeServer()
    redis = fakeredis.FakeRedis(server=server)
    server.connected = False
    # A long grace: the drain at exit ends as soon as the spool is empty; on a loaded machine
    # replaying 3,000 frames can take longer than the default 0.5 s used elsewhere here.
    thread, _stop, stats, _ = start(redis, Spool(tmp_path, 1 << 24, 1 << 16, 0.05), 3000, stop_grace=30)
    wait_for(lambda: stats.frames_spooled >= 2000, 20, what="frames spooled while Redis is down")
    # Open, or half-open when the export came open_s after the last failed probe (a loaded machine).
    assert stats.redis_breaker is not BreakerState.CLOSED and stats.frames_published == 0
    server.connected = True
    thread.join(30)
    assert not thread.is_alive()
    assert seqs(redis) == list(range(1, 3001))  # no loss, no duplicate, order and keys kept
    assert stats.frames_replayed == stats.frames_spooled and stats.frames_published == 3000
    assert stats.redis_breaker is BreakerState.CLOSED and not stats.dropped


def test_full_spool_of_critical_frames_pauses_reading_and_loses_nothing(tmp_path: Path) -> None:
    server = fakeredis.FakeServer()
    redis = fakeredis.FakeRedis(server=server)
    server.connected = False
    spool = Spool(tmp_path, 40_000, 4_000, 0.05)
    thread, _stop, stats, _ = start(redis, spool, 2000, Priority.CRITICAL)
    wait_for(lambda: stats.read_blocked, 20, what="reading paused")
    read = stats.frames_read
    threading.Event().wait(0.3)
    assert stats.frames_read == read  # the device is not read while nothing can be kept
    server.connected = True
    thread.join(30)
    assert seqs(redis, Priority.CRITICAL) == list(range(1, 2001)) and not stats.dropped


def test_restart_continues_producer_and_replays_what_the_last_run_spooled(tmp_path: Path) -> None:
    server = fakeredis.FakeServer()
    redis = fakeredis.FakeRedis(server=server)
    server.connected = False
    thread, stop, stats, _ = start(redis, Spool(tmp_path, 1 << 24), 0, rate=2000)
    wait_for(lambda: stats.frames_spooled >= 200, 20)
    stop.set()
    thread.join(30)
    first = stats.frames_read
    server.connected = True
    thread, stop, stats2, publisher = start(redis, Spool(tmp_path, 1 << 24), 100)
    thread.join(30)
    assert publisher.producer_id == "sim/run1" and stats2.frames_lost_in_crash == 0
    assert seqs(redis) == list(range(1, first + 101))
