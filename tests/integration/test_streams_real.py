"""Every stream command the writer relies on, once against real Redis (fakeredis is a reimplementation)."""

from __future__ import annotations

import time

import pytest
from redis import Redis

from common.schema import Priority
from common.settings import Settings
from writer import deadletter
from writer.read import ensure_groups, read_entries, reclaim
from writer.stream_status import stream_status
from writer.trim import trim_acked, unread_deletions

pytestmark = pytest.mark.integration


def test_group_is_created_at_zero_so_an_existing_backlog_is_read(redis: Redis, settings: Settings) -> None:
    names = settings.redis.names
    key = names.stream(Priority.LOW)
    ids = [redis.xadd(key, {"n": str(i)}) for i in range(3)]  # written before any writer existed
    ensure_groups(redis, names)
    ensure_groups(redis, names)  # idempotent (BUSYGROUP ignored)
    got = read_entries(redis, names, "c1", count=10, block_ms=10)
    assert [e.id for e in got] == ids


def test_one_xreadgroup_reads_every_priority_critical_first(redis: Redis, settings: Settings) -> None:
    names = settings.redis.names
    ensure_groups(redis, names)
    for p in reversed(Priority):
        redis.xadd(names.stream(p), {"p": p.value})
    got = read_entries(redis, names, "c1", count=10, block_ms=10)
    assert [e.priority for e in got] == list(Priority)


def test_pending_reread_and_xautoclaim_of_an_idle_consumer(redis: Redis, settings: Settings) -> None:
    names = settings.redis.names
    ensure_groups(redis, names)
    key = names.stream(Priority.NORMAL)
    ids = [redis.xadd(key, {"n": str(i)}) for i in range(5)]
    assert len(read_entries(redis, names, "dead", count=10, block_ms=10)) == 5
    assert [e.id for e in read_entries(redis, names, "dead", 10, 0, pending=True)] == ids
    assert reclaim(redis, names, "alive", min_idle_ms=60_000, count=100) == []
    time.sleep(0.06)
    claimed = reclaim(redis, names, "alive", min_idle_ms=50, count=100)
    assert [e.id for e in claimed] == ids
    consumers = {c["name"]: c["pending"] for c in redis.xinfo_consumers(key, names.group)}
    assert consumers[b"alive"] == 5 and consumers[b"dead"] == 0


def test_trim_keeps_unacked_and_undelivered_entries(redis: Redis, settings: Settings) -> None:
    names = settings.redis.names
    ensure_groups(redis, names)
    key = names.stream(Priority.BULK)
    ids = [redis.xadd(key, {"n": str(i)}) for i in range(10)]
    read_entries(redis, names, "c", count=6, block_ms=10)
    redis.xack(key, names.group, *ids[:4])
    redis.xack(key, names.group, ids[5])  # ids[4] still pending
    assert trim_acked(redis, names, exact=True) == 4
    assert [eid for eid, _ in redis.xrange(key)] == ids[4:]
    status = {s["stream"]: s for s in stream_status(redis, names)["streams"]}[key]
    assert status["length"] == 6 and status["pending"] == 1 and status["lag"] == 4


def test_dead_letter_and_replay_on_real_redis(redis: Redis, settings: Settings) -> None:
    names = settings.redis.names
    ensure_groups(redis, names)
    key = names.stream(Priority.HIGH)
    redis.xadd(key, {"v": "1", "junk": b"\x00\xff"})
    (entry,) = read_entries(redis, names, "c", count=10, block_ms=10)
    deadletter.dead_letter(redis, names, [(entry, "DecodeError", "missing field 'src'")], "c")
    assert redis.xpending(key, names.group)["pending"] == 0
    ((did, summary),) = deadletter.list_dead(redis, names)
    assert summary["error"] == "missing field 'src'"
    deadletter.replay(redis, names, [did])
    assert redis.xlen(names.deadletter) == 0
    (replayed,) = read_entries(redis, names, "c", count=10, block_ms=10)
    assert replayed.id != entry.id and replayed.stream == key
    assert replayed.fields == {b"v": b"1", b"junk": b"\x00\xff"}


def test_deletions_before_the_group_read_are_noticed(redis: Redis, settings: Settings) -> None:
    names = settings.redis.names
    ensure_groups(redis, names)
    key = names.stream(Priority.NORMAL)
    ids = [redis.xadd(key, {"n": str(i)}) for i in range(6)]
    read_entries(redis, names, "c", count=3, block_ms=10)
    redis.xack(key, names.group, *ids[:3])
    trim_acked(redis, names, exact=True)
    assert unread_deletions(redis, names) == []  # our own trimming never cuts unread entries
    redis.xadd(key, {"n": "x"}, maxlen=1, approximate=False)  # what a stolen producer password can do
    assert unread_deletions(redis, names) == [key]
