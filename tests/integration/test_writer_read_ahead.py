"""Read-ahead (writer/read_ahead.py) on real Redis: a lane draining a backlog sends its next read
while it commits, and keeps every guarantee: each frame stored exactly once (real PostgreSQL),
poison dead-lettered with its reason, nothing left pending, and at a clean stop the entries
already read ahead are committed, not stranded."""

from __future__ import annotations

import threading

import pytest
from redis import Redis

from common.redis_client import connect_redis
from common.schema import Priority
from common.settings import Settings
from tests.conftest import settings_for
from tests.helpers import pg_query, wait_for
from tests.integration.pipeline import frame, publish
from tests.integration.test_writer_sink import FakeSink
from writer import deadletter
from writer.loop import Writer

pytestmark = pytest.mark.integration

LIVE = (Priority.NORMAL, Priority.LOW)


def _pending(settings: Settings, redis: Redis) -> int:
    names = settings.redis.names
    return sum(int(redis.xpending(names.stream(p), names.group)["pending"]) for p in LIVE)  # the lane's streams


def _run(lane: Writer) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(target=lane.run, args=(stop,), daemon=True)
    thread.start()
    return stop, thread


def test_a_backlog_drained_with_read_ahead_is_stored_exactly_once(
    redis_url: str, pg_dsn: str, namespace: str, pg_schema: str, redis: Redis
) -> None:
    """READ_COUNT 7 and 300 frames: every read but the last is full, so reads go ahead. A poison
    entry and a frame sent twice sit in the backlog."""
    settings = settings_for(redis_url, pg_dsn, namespace, pg_schema, read_count=7, batch_max_rows=60)
    names = settings.redis.names
    publish(settings, redis, [frame("dev", i, x=float(i), y=-float(i)) for i in range(150)])
    key = names.stream(Priority.NORMAL)
    redis.xadd(key, {"v": "1", "src": "simulate", "dev": "d"})  # poison: fields missing
    [fifth] = [fields for _, fields in redis.xrange(key, count=10) if fields[b"seq"] == b"5"]
    redis.xadd(key, fifth)  # the same frame again: a duplicate, stored once
    publish(settings, redis, [frame("dev2", i, x=float(i), y=0.5) for i in range(150)])
    lane = Writer(settings, connect_redis(settings.redis), "c1", priorities=LIVE)
    stop, thread = _run(lane)
    try:
        wait_for(lambda: lane.stats.frames >= 300 and redis.xlen(names.deadletter) >= 1, 60, what="backlog drained")
        wait_for(lambda: _pending(settings, redis) == 0, 30, what="all acked")
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert lane.ahead.sent > 0, "reads were sent ahead"
    total, distinct = pg_query(settings, "SELECT count(*), count(DISTINCT (producer, seq, channel)) FROM readings")[0]
    assert total == distinct == 600
    assert pg_query(settings, "SELECT count(*) FROM frame_keys")[0][0] == 300
    assert lane.stats.duplicates == 1
    [(_, dead)] = deadletter.list_dead(redis, names)
    assert dead["error_class"] == "DecodeError" and "missing field" in dead["error"]
    values = pg_query(settings, "SELECT value FROM readings WHERE device = 'dev' AND channel = 'y' ORDER BY seq")
    assert [v for (v,) in values] == [-float(i) for i in range(150)]


def test_a_clean_stop_commits_the_entries_read_ahead(redis_url: str, namespace: str, redis: Redis) -> None:
    """Whatever the lane read (ahead or not) when it stops is committed and acked: nothing of
    it is left pending, and the entries it never read are still there for the next reader."""
    settings = settings_for(
        redis_url, "postgresql://nobody@127.0.0.1:1/none", namespace, "unused", read_count=5, batch_max_rows=10
    )  # a batch is due every two reads, so the lane stops with a read ahead outstanding
    names = settings.redis.names
    publish(settings, redis, [frame("dev", i) for i in range(200)])
    stop = threading.Event()
    # commits everything and asks the lane to stop at its first write
    sink = FakeSink(fail=lambda frames: stop.set() if frames else None)
    lane = Writer(settings, connect_redis(settings.redis), "c1", priorities=LIVE, sink=sink)
    thread = threading.Thread(target=lane.run, args=(stop,), daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    assert lane.ahead.sent > 0, "reads were sent ahead"
    assert _pending(settings, redis) == 0, "nothing read is left pending at a clean stop"
    committed = {f.seq for f in sink.committed}
    assert len(committed) == len(sink.committed) > 5
    rest = redis.xreadgroup(names.group, "c2", {names.stream(Priority.NORMAL): ">"}, count=1000)
    unread = {int(fields[b"seq"]) for _, msgs in rest for _, fields in msgs}
    assert committed | unread == set(range(1, 201)) and not committed & unread
