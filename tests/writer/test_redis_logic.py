"""Redis-side writer logic on fakeredis: trimming only what is acked, replay and purge checks.

Real-Redis versions of these checks live in tests/integration/test_streams_real.py; dead-lettering
runs a Lua script, so it is tested on real Redis only (tests/integration/test_deadletter_real.py).
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


def test_existing_groups_are_not_created_again(r: Redis) -> None:
    ensure_groups(r, NAMES)
    calls: list[str] = []
    real_create = r.xgroup_create

    def create(*args: object, **kwargs: object) -> object:
        calls.append(str(args[0]))
        return real_create(*args, **kwargs)  # type: ignore[arg-type]

    r.xgroup_create = create  # type: ignore[method-assign]
    ensure_groups(r, NAMES)
    assert calls == []  # XGROUP CREATE needs memory: never sent for a group that exists
    r.delete(KEY)
    ensure_groups(r, NAMES)
    assert calls == [KEY] and r.xinfo_groups(KEY)[0]["name"] == NAMES.group.encode()
