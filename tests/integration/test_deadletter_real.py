"""Dead letters on real Redis: exactly one per poison entry, a bounded stream whose overflow is
counted, entries too large to copy kept by reference; and trimming that keeps up with ingest."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis import Redis

from common.schema import Priority
from common.streams import StreamNames
from writer import deadletter
from writer.read import ensure_groups, read_entries, reclaim
from writer.trim import trim_acked

pytestmark = pytest.mark.integration


@pytest.fixture
def names(redis: Redis, namespace: str) -> Iterator[StreamNames]:
    names = StreamNames(namespace)
    ensure_groups(redis, names)
    yield names


def test_dead_letter_keeps_a_small_entry_byte_for_byte_and_acks_it(redis: Redis, names: StreamNames) -> None:
    key = names.stream(Priority.CRITICAL)
    redis.xadd(key, {"v": "1", "weird": b"\xff\x00bytes"})
    (entry,) = read_entries(redis, names, "c1", count=10, block_ms=1)
    (result,) = deadletter.dead_letter(redis, names, [(entry, "DecodeError", "missing field 'src'")], "c1")
    assert result.outcome is deadletter.Outcome.DEAD_LETTERED
    assert redis.xpending(key, names.group)["pending"] == 0
    ((did, summary),) = deadletter.list_dead(redis, names)
    assert summary["error_class"] == "DecodeError" and summary["stream"] == key
    assert summary["entry_id"] == entry.id.decode() and summary["size"] == str(entry.size)
    raw = deadletter.show_dead(redis, names, did)
    assert raw is not None and raw[b"orig.weird"] == b"\xff\x00bytes"
    deadletter.replay(redis, names, [did])
    ((_, fields),) = redis.xrange(key, min="(" + entry.id.decode())
    assert fields == {b"v": b"1", b"weird": b"\xff\x00bytes"}  # back to its priority, byte for byte


def test_a_replica_resuming_after_its_entry_was_claimed_does_not_dead_letter_it_again(
    redis: Redis, names: StreamNames
) -> None:
    key = names.stream(Priority.NORMAL)
    redis.xadd(key, {"hello": "world"})
    (stale,) = read_entries(redis, names, "paused", count=10, block_ms=1)  # then SIGSTOPped
    (claimed,) = reclaim(redis, names, "rescuer", min_idle_ms=0, count=10)
    deadletter.dead_letter(redis, names, [(claimed, "DecodeError", "x")], "rescuer")
    late = deadletter.dead_letter(redis, names, [(stale, "DecodeError", "x")], "paused")  # it wakes up
    assert redis.xlen(names.deadletter) == 1
    assert late[0].outcome is deadletter.Outcome.NOT_PENDING


def test_a_group_recreated_after_nogroup_does_not_dead_letter_twice(redis: Redis, names: StreamNames) -> None:
    key = names.stream(Priority.LOW)
    redis.xadd(key, {"hello": "world"})
    (entry,) = read_entries(redis, names, "c", count=10, block_ms=1)
    deadletter.dead_letter(redis, names, [(entry, "DecodeError", "x")], "c")
    redis.xgroup_destroy(key, names.group)  # NOGROUP: the writer recreates the group at 0
    ensure_groups(redis, names)
    (again,) = read_entries(redis, names, "c", count=10, block_ms=1)  # not trimmed yet: delivered again
    result = deadletter.dead_letter(redis, names, [(again, "DecodeError", "x")], "c")
    assert redis.xlen(names.deadletter) == 1 and redis.xpending(key, names.group)["pending"] == 0
    assert result[0].outcome is deadletter.Outcome.ALREADY_DEAD


def test_the_dead_letter_stream_is_bounded_and_every_drop_is_counted(redis: Redis, names: StreamNames) -> None:
    key = names.stream(Priority.BULK)
    for i in range(600):
        redis.xadd(key, {"n": str(i)})
    entries = read_entries(redis, names, "c", count=1000, block_ms=1)
    results = deadletter.dead_letter(redis, names, [(e, "DecodeError", "x") for e in entries], "c", max_len=50)
    assert all(r.outcome is deadletter.Outcome.DEAD_LETTERED for r in results)
    kept = redis.xlen(names.deadletter)
    assert kept < 600 and sum(r.dropped for r in results) == 600 - kept  # nothing dropped silently


def test_an_entry_too_large_to_copy_is_dead_lettered_by_reference(redis: Redis, names: StreamNames) -> None:
    key = names.stream(Priority.NORMAL)
    redis.xadd(key, {"v": "1", "prod": "p/1", "seq": "7", "ch": b"[" * (deadletter.COPY_MAX_BYTES + 10)})
    (entry,) = read_entries(redis, names, "c", count=10, block_ms=1)
    deadletter.dead_letter(redis, names, [(entry, "EntryTooLarge", "too large")], "c")
    ((did, summary),) = deadletter.list_dead(redis, names)
    raw = deadletter.show_dead(redis, names, did)
    assert raw is not None and b"orig.ch" not in raw and raw[b"orig.seq"] == b"7"
    assert summary["omitted"] == f"ch:{deadletter.COPY_MAX_BYTES + 10}" and summary["size"] == str(entry.size)
    with pytest.raises(ValueError, match="by reference"):
        deadletter.replay(redis, names, [did])


def test_one_trim_pass_removes_every_acknowledged_entry_however_many(redis: Redis, names: StreamNames) -> None:
    key = names.stream(Priority.BULK)
    pipe = redis.pipeline(transaction=False)
    for i in range(60_000):
        pipe.xadd(key, {"n": str(i)})
    pipe.execute()
    while entries := read_entries(redis, names, "c", count=10_000, block_ms=1, keys=[key]):
        redis.xack(key, names.group, *[e.id for e in entries])
    trim_acked(redis, names, keys=[key])  # approximate: one XTRIM call removes at most ~10,000
    assert redis.xlen(key) < 1_000  # whole macro-nodes only: less than one node may remain


def test_trimming_forgets_the_dead_letter_index_of_entries_no_longer_in_the_stream(
    redis: Redis, names: StreamNames
) -> None:
    key = names.stream(Priority.HIGH)
    redis.xadd(key, {"hello": "world"})
    (entry,) = read_entries(redis, names, "c", count=10, block_ms=1)
    deadletter.dead_letter(redis, names, [(entry, "DecodeError", "x")], "c")
    assert redis.zcard(names.deadletter_index) == 1
    trim_acked(redis, names, exact=True)
    assert redis.xlen(key) == 0 and redis.zcard(names.deadletter_index) == 0
