"""Helpers shared by tests: waiting, running a writer in a thread, counting rows."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from redis import Redis

from common.publish import Publisher, new_producer_id
from common.settings import RangeSpec, Settings
from producers.base import ProducerStats, Source, run_producer
from producers.validate import RangeValidator


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


@contextmanager
def running_writer(settings: Settings, consumer: str = "test-writer", **replica: Any) -> Iterator[Any]:
    """Run the writer loop in a thread for the duration of the block; yields its stats.

    ``replica``: more arguments of run_writer (``clock``, ``upkeep_interval_s``).
    """
    from writer.replica import LANES, run_writer
    from writer.stats import WriterStats

    stop, stats = threading.Event(), WriterStats()
    thread = threading.Thread(
        target=run_writer,
        args=(settings, stop),
        kwargs={"consumer": consumer, "stats": stats, **replica},
        name=f"writer-{consumer}",
        daemon=True,
    )
    thread.start()
    wait_for(lambda: len(stats.lanes) == len(LANES) or not thread.is_alive(), 30, what="writer start")
    assert thread.is_alive(), "the writer stopped at start"
    try:
        yield stats
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive(), "writer thread did not stop"


def pg_query(settings: Settings, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Run ``query`` with search_path set to the test schema; return all rows."""
    with psycopg.connect(settings.postgres.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(settings.postgres.schema_name)))
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


def count_readings(settings: Settings) -> int:
    return int(pg_query(settings, "SELECT count(*) FROM readings")[0][0])


@dataclass
class RunningProducer:
    publisher: Publisher
    stats: ProducerStats
    """The stats the loop updates: live inside the ``with`` block, final after it."""


@contextmanager
def running_producer(
    source: Source,
    redis: Redis,
    settings: Settings,
    name: str,
    ranges: Mapping[str, RangeSpec] | None = None,
    **loop: Any,
) -> Iterator[RunningProducer]:
    """Run the producer loop for ``source`` in a thread for the duration of the block."""
    publisher = Publisher(redis, settings.redis.names, new_producer_id(name))
    stop = threading.Event()
    run = RunningProducer(publisher, ProducerStats())

    def target() -> None:
        run_producer(source, publisher, RangeValidator(ranges or {}), stop, stats=run.stats, **loop)

    thread = threading.Thread(target=target, name=f"producer-{name}", daemon=True)
    thread.start()
    try:
        yield run
    finally:
        stop.set()
        thread.join(10)
        assert not thread.is_alive(), "producer thread did not stop"


class ShiftedClock:
    """The system clock moved by ``offset`` (a clock jump), changeable while a writer runs."""

    def __init__(self, offset: timedelta = timedelta(0)) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()


def remove_rq_keys(redis: Redis, queue: str) -> int:
    """Delete every rq key a test's queue left in the shared Redis: the queue and its registries,
    its jobs and their results, and the workers that served it. Returns how many keys went.

    ``Queue.delete(delete_jobs=True)`` leaves the finished/failed registries, their jobs (kept
    for ``result_ttl``, 7 days) and worker records behind.
    """
    gone = 0
    job_ids: set[str] = set()
    for key in list(redis.scan_iter(match=f"rq:*{queue}*", count=1000)):
        kind = redis.type(key)
        if kind == b"zset":
            job_ids |= {m.decode().split(":")[0] for m in redis.zrange(key, 0, -1)}
        elif kind == b"list":
            job_ids |= {m.decode() for m in redis.lrange(key, 0, -1)}
        gone += int(redis.delete(key))
    for job_id in job_ids:
        gone += int(redis.delete(f"rq:job:{job_id}", f"rq:results:{job_id}", f"rq:job:{job_id}:dependents"))
    for key in list(redis.scan_iter(match="rq:worker:*", count=1000)):
        if redis.type(key) == b"hash" and redis.hget(key, "queues") == queue.encode():
            redis.srem("rq:workers", key)
            gone += int(redis.delete(key))
    redis.srem("rq:queues", f"rq:queue:{queue}")
    return gone
