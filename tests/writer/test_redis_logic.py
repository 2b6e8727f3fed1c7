"""Redis-side writer logic on fakeredis: trimming only what is acked, dead letters, replay.

Real-Redis versions of these checks live in tests/integration/test_streams_real.py.
"""

from __future__ import annotations

import fakeredis
import pytest
from redis import Redis

from common.schema import Priority
from common.streams import StreamNames
from writer import deadletter
from writer.read import Entry, ensure_groups, read_entries
from writer.trim import trim_acked

NAMES = StreamNames("t")
KEY = NAMES.stream(Priority.NORMAL)


@pytest.fixture
def r() -> Redis:
    return fakeredis.FakeRedis()


def test_trim_removes_only_acknowledged_entries(r: Redis) -> None:
    ensure_groups(r, NAMES)
    ids = [r.xadd(KEY, {"n": str(i)}) for i in range(10)]
    got = read_entries(r, NAMES, "c1", count=6, block_ms=1)
    assert len(got) == 6
    r.xack(KEY, NAMES.group, *ids[:3])  # 3 acked, 3 pending, 4 never delivered
    trim_acked(r, NAMES, exact=True)
    remaining = [eid for eid, _ in r.xrange(KEY)]
    assert remaining == ids[3:]
    r.xack(KEY, NAMES.group, *ids[3:6])
    trim_acked(r, NAMES, exact=True)
    assert [eid for eid, _ in r.xrange(KEY)] == ids[6:]  # undelivered entries are kept


def test_dead_letter_keeps_the_entry_and_acks_it(r: Redis) -> None:
    ensure_groups(r, NAMES)
    r.xadd(KEY, {"v": "1", "weird": b"\xff\x00bytes"})
    (entry,) = read_entries(r, NAMES, "c1", count=10, block_ms=1)
    deadletter.dead_letter(r, NAMES, [(entry, "DecodeError", "missing field 'src'")], "c1")
    assert r.xpending(KEY, NAMES.group)["pending"] == 0
    ((did, summary),) = deadletter.list_dead(r, NAMES)
    assert summary["error_class"] == "DecodeError" and summary["stream"] == KEY
    assert summary["entry_id"] == entry.id.decode()
    raw = deadletter.show_dead(r, NAMES, did)
    assert raw is not None and raw[b"orig.weird"] == b"\xff\x00bytes"


def test_replay_restores_fields_byte_for_byte_to_the_original_priority(r: Redis) -> None:
    ensure_groups(r, NAMES)
    crit = NAMES.stream(Priority.CRITICAL)
    r.xadd(crit, {"v": "1", "blob": b"\x01\x02"})
    (entry,) = read_entries(r, NAMES, "c1", count=10, block_ms=1)
    deadletter.dead_letter(r, NAMES, [(entry, "sqlstate:23514", "no partition")], "c1")
    ((did, _),) = deadletter.list_dead(r, NAMES)
    deadletter.replay(r, NAMES, [did])
    assert r.xlen(NAMES.deadletter) == 0
    ((_, fields),) = r.xrange(crit, min="(" + entry.id.decode())
    assert fields == {b"v": b"1", b"blob": b"\x01\x02"}


def test_replay_refuses_a_foreign_target_stream(r: Redis) -> None:
    r.xadd(NAMES.deadletter, {"stream": "{t}:deadletter", "orig.v": "1"})
    ((did, _),) = deadletter.list_dead(r, NAMES)
    with pytest.raises(ValueError, match="not a priority stream"):
        deadletter.replay(r, NAMES, [did])


def test_purge_some_or_all(r: Redis) -> None:
    ids = [r.xadd(NAMES.deadletter, {"stream": KEY}).decode() for _ in range(3)]
    assert deadletter.purge(r, NAMES, ids[:1]) == 1
    assert deadletter.purge(r, NAMES) == 2
    assert r.xlen(NAMES.deadletter) == 0


def test_entries_hold_raw_bytes(r: Redis) -> None:
    ensure_groups(r, NAMES)
    r.xadd(KEY, {"k": b"\xff"})
    (e,) = read_entries(r, NAMES, "c", 10, 1)
    assert isinstance(e, Entry) and e.fields == {b"k": b"\xff"}
