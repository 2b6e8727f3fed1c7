"""A writer lane against a fake PostgreSQL sink (writer/sink.py) and real Redis: bisection,
key reuse, transient errors never dead-lettered, stop during an outage leaves entries pending.
Fast: no PostgreSQL. The same rules on a real server: test_writer_pipeline.py, test_writer_storage.py."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import psycopg
import psycopg.errors as pgerr
import pytest
from redis import Redis

from common.schema import Frame, decode
from common.settings import Settings
from tests.conftest import settings_for
from tests.helpers import wait_for
from tests.integration.pipeline import frame, publish
from writer import deadletter
from writer.batch import Item
from writer.loop import Writer
from writer.pg_copy import BatchResult, Packed
from writer.read import ensure_groups, read_entries

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(redis_url: str, namespace: str) -> Settings:
    """This test's Redis namespace; a PostgreSQL nobody connects to (the sink is fake)."""
    return settings_for(redis_url, "postgresql://nobody@127.0.0.1:1/none", namespace, "unused")


class FakeSink:
    """Records committed frames; ``fail(frames)`` may return an exception to raise instead."""

    def __init__(self, fail: Callable[[Sequence[Frame]], BaseException | None] = lambda _: None) -> None:
        self.fail = fail
        self.committed: list[Frame] = []
        self.attempts = 0
        self.reused: set[int] = set()

    def connection(self) -> Any:
        self.attempts += 1
        exc = self.fail(())
        if exc is not None:
            raise exc
        return object()

    def write(
        self,
        conn: Any,
        frames: Sequence[Frame],
        snapshots: Sequence[Frame],
        checkpoint: Callable[[], None],
        state_horizon: datetime | None,
        packed: Sequence[Packed] | None = None,
    ) -> BatchResult:
        exc = self.fail(frames)
        if exc is not None:
            raise exc
        result = BatchResult()
        for i, f in enumerate(frames):
            if f.seq in self.reused:
                result.reused.append(i)
            else:
                self.committed.append(f)
                result.frames += 1
        return result

    def drop(self) -> None:
        pass

    def close(self) -> None:
        pass


def _lane(settings: Settings, redis: Redis, sink: FakeSink, n: int = 10) -> tuple[Writer, list[Item]]:
    names = settings.redis.names
    ensure_groups(redis, names)
    publish(settings, redis, [frame("dev", i, x=float(i)) for i in range(n)])
    entries = read_entries(redis, names, "c1", 1000, 1)
    lane = Writer(settings, redis, "c1", sink=sink)
    return lane, [(e, decode(e.fields, e.priority)) for e in entries]


def _pending(settings: Settings, redis: Redis) -> int:
    names = settings.redis.names
    return sum(int(redis.xpending(k, names.group)["pending"]) for k in names.streams)


def test_a_data_error_is_bisected_down_to_the_bad_frames(settings: Settings, redis: Redis) -> None:
    bad = {3, 7}
    sink = FakeSink(lambda fs: pgerr.CheckViolation("no partition") if bad & {f.seq for f in fs} else None)
    lane, items = _lane(settings, redis, sink)
    lane._commit(items, threading.Event())
    assert sorted(f.seq for f in sink.committed) == [s for s in range(1, 11) if s not in bad]
    dead = deadletter.list_dead(redis, settings.redis.names)
    assert len(dead) == 2 and {d["error_class"] for _, d in dead} == {"sqlstate:23514"}
    assert _pending(settings, redis) == 0


def test_key_reuse_reported_by_the_sink_is_dead_lettered(settings: Settings, redis: Redis) -> None:
    sink = FakeSink()
    sink.reused = {4}
    lane, items = _lane(settings, redis, sink)
    lane._commit(items, threading.Event())
    assert len(sink.committed) == 9
    [(_, dead)] = deadletter.list_dead(redis, settings.redis.names)
    assert dead["error_class"] == "KeyReuseError" and dead["error"].startswith("key reuse")
    assert _pending(settings, redis) == 0


@pytest.mark.parametrize(
    "error",
    [
        psycopg.OperationalError("connection refused"),
        pgerr.ReadOnlySqlTransaction("cannot execute COPY in a read-only transaction"),
        pgerr.LockNotAvailable("canceling statement due to lock timeout"),
    ],
)
def test_transient_errors_never_dead_letter_and_stop_leaves_entries_pending(
    settings: Settings, redis: Redis, error: BaseException
) -> None:
    sink = FakeSink(lambda _: error)
    lane, items = _lane(settings, redis, sink)
    stop = threading.Event()
    t = threading.Thread(target=lane._commit, args=(items, stop))
    t.start()
    wait_for(lambda: sink.attempts >= 3, 30, what="three attempts")
    stop.set()
    t.join(30)
    assert not t.is_alive()
    assert sink.committed == [] and lane.stats.pg_errors >= 3
    assert redis.xlen(settings.redis.names.deadletter) == 0
    assert _pending(settings, redis) == 10, "uncommitted entries stay pending for a replica to claim"
