"""Trimming waits for the run detector's group (fakeredis; the real-Redis check is in test_detector_e2e.py)."""

from __future__ import annotations

import fakeredis
from redis import Redis

from common.schema import Priority
from common.streams import RUNS_GROUP, StreamNames
from writer.read import ensure_groups, read_entries
from writer.trim import foreign_groups, trim_acked

NAMES = StreamNames("t")
KEY = NAMES.stream(Priority.NORMAL)


def test_trim_waits_for_the_slowest_known_group_and_ignores_foreign_ones() -> None:
    r: Redis = fakeredis.FakeRedis()
    ensure_groups(r, NAMES)
    ids = [r.xadd(KEY, {"n": str(i)}) for i in range(10)]
    r.xgroup_create(KEY, RUNS_GROUP, id="0")
    r.xgroup_create(KEY, "audit", id="0")  # foreign: never holds trimming back
    assert read_entries(r, NAMES, "w", count=10, block_ms=1)
    r.xack(KEY, NAMES.group, *ids)  # the writer has everything
    got = r.xreadgroup(RUNS_GROUP, "d", {KEY: ">"}, count=4)
    assert len(got[0][1]) == 4
    r.xack(KEY, RUNS_GROUP, *ids[:2])  # the detector acked 2, has 2 pending
    trim_acked(r, NAMES, exact=True)
    assert [eid for eid, _ in r.xrange(KEY)] == ids[2:]
    r.xack(KEY, RUNS_GROUP, *ids[2:4])
    trim_acked(r, NAMES, exact=True)
    assert [eid for eid, _ in r.xrange(KEY)] == ids[4:]  # not yet delivered to the detector: kept
    assert foreign_groups(r, NAMES) == [(KEY, "audit")]
    r.xgroup_destroy(KEY, RUNS_GROUP)  # detector retired: the writer's point alone
    trim_acked(r, NAMES, exact=True)
    assert r.xlen(KEY) == 0
