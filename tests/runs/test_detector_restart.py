"""The detector's exactly-once boundaries, deterministically, on the real servers: a crash after the
commit but before the XACK, and a failure inside the transaction, each leave exactly one run with
the right boundaries. (The end-to-end test SIGKILLs a real process at an arbitrary moment.)"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from redis import Redis

from common.schema import Channel, Frame
from common.settings import Settings
from runs import detector as detector_module
from runs.detector import Detector
from tests.integration.pipeline import publish
from writer.pg import connect_pg

pytestmark = pytest.mark.integration
T0 = datetime(2026, 5, 1, 10, 0, 0, tzinfo=UTC)
RULE = {"name": "pull", "channel": "rpm", "start_above": 2000, "start_for_s": 1, "stop_below": 1500, "stop_for_s": 2}


def _frames(values: list[float], first: int = 0) -> list[Frame]:
    out = []
    for i, v in enumerate(values, start=first):
        at = T0 + timedelta(seconds=i * 0.5)
        out.append(Frame("simulate", "dyno1", at, at, i, (Channel("rpm", v, "rpm"),)))
    return out


PULL = [900.0] * 4 + [3000.0] * 6  # above from frame 4 (T0 + 2 s); confirmed at frame 6
COAST = [1000.0] * 6  # below from frame 10 (T0 + 5 s); confirmed at frame 14


@pytest.fixture
def det_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"runs": settings.runs.model_validate({"rules": [RULE], "block_ms": 10})})


@pytest.fixture
def conns(det_settings: Settings) -> Iterator[list[psycopg.Connection[tuple[object, ...]]]]:
    made: list[psycopg.Connection[tuple[object, ...]]] = []
    yield made
    for c in made:
        c.close()


def _detector(s: Settings, redis: Redis, conns: list[psycopg.Connection[tuple[object, ...]]], name: str) -> Detector:
    conn = connect_pg(s.postgres)
    conns.append(conn)
    d = Detector(redis, conn, s.redis.names, s, name)
    assert d.prepare(detector_module.threading.Event())
    return d


def _runs(conn: psycopg.Connection[tuple[object, ...]]) -> list[tuple[object, ...]]:
    return conn.execute("SELECT name, status, started_at, ended_at, start_key, end_key FROM runs").fetchall()


def test_crash_between_commit_and_ack(det_settings: Settings, redis: Redis, conns: list) -> None:  # type: ignore[type-arg]
    publish(det_settings, redis, _frames(PULL))
    first = _detector(det_settings, redis, conns, "one")
    entries = first.read(pending=False)
    assert len(entries) == len(PULL)
    first.apply(entries)  # committed: the run is open ...
    conns[0].close()  # ... and the process dies before XACK (the advisory lock goes with its session)
    second = _detector(det_settings, redis, conns, "two")
    assert second.stats["claimed"] == len(PULL)
    second.once()  # the pending entries again: all at or below the stored position
    assert second.stats["skipped_seen"] == len(PULL) and second.stats["runs_started"] == 0
    publish(det_settings, redis, _frames(COAST, first=len(PULL)))
    while second.once():
        pass
    rows = _runs(conns[1])
    assert len(rows) == 1
    assert rows[0][:4] == ("pull", "closed", T0 + timedelta(seconds=2), T0 + timedelta(seconds=5))
    pending = redis.xpending(det_settings.redis.names.streams[2], "runs")
    assert pending["pending"] == 0


def test_failure_inside_the_transaction_applies_nothing(
    det_settings: Settings,
    redis: Redis,
    conns: list,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[type-arg]
) -> None:
    publish(det_settings, redis, _frames(PULL + COAST))
    det = _detector(det_settings, redis, conns, "one")
    real_stop = detector_module.store.stop_run
    calls = []

    def failing_stop(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 1:
            raise psycopg.OperationalError("connection lost mid-transaction (injected)")
        return real_stop(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(detector_module.store, "stop_run", failing_stop)
    with pytest.raises(psycopg.OperationalError):
        det.once()  # the whole batch rolled back: no run, no state, no position
    assert _runs(conns[0]) == [] and det.states == {} and det.positions == {}
    while det.once():
        pass
    rows = _runs(conns[0])
    assert len(rows) == 1 and len(calls) == 2
    assert rows[0][:4] == ("pull", "closed", T0 + timedelta(seconds=2), T0 + timedelta(seconds=5))
    assert str(rows[0][4]).startswith("pull:dyno1:") and str(rows[0][5]).startswith("pull:dyno1:")


def test_a_second_detector_waits_for_the_first(det_settings: Settings, redis: Redis, conns: list) -> None:  # type: ignore[type-arg]
    _detector(det_settings, redis, conns, "one")
    conn = connect_pg(det_settings.postgres)
    conns.append(conn)
    other = Detector(redis, conn, det_settings.redis.names, det_settings, "two")
    stop = detector_module.threading.Event()
    stop.set()  # would wait; told to stop at the first wait
    assert other.prepare(stop) is False


def test_garbage_entries_are_counted_and_acked(det_settings: Settings, redis: Redis, conns: list) -> None:  # type: ignore[type-arg]
    key = det_settings.redis.names.streams[2]
    redis.xadd(key, {"not": "a frame"})
    redis.xadd(key, {b"v": b"\xff\xfe garbage", b"d": b"\x00" * 1000})
    publish(det_settings, redis, _frames(PULL + COAST) + _frames([5000.0]))  # the last one is older: ignored
    det = _detector(det_settings, redis, conns, "one")
    while det.once():
        pass
    assert det.stats["undecodable"] == 2 and det.stats["frames"] == len(PULL + COAST) + 1
    assert det.stats["out_of_order"] == 1
    assert det.stats["runs_started"] == det.stats["runs_ended"] == 1
    assert redis.xpending(key, "runs")["pending"] == 0


def test_trimming_waits_for_the_detector_on_real_redis(det_settings: Settings, redis: Redis, conns: list) -> None:  # type: ignore[type-arg]
    from writer.read import ensure_groups
    from writer.trim import trim_acked

    names = det_settings.redis.names
    key = names.streams[2]
    ensure_groups(redis, names)
    det = _detector(det_settings, redis, conns, "one")  # creates the runs group at 0
    publish(det_settings, redis, _frames(PULL + COAST))
    got = redis.xreadgroup(names.group, "w", {key: ">"})
    redis.xack(key, names.group, *[eid for eid, _ in got[0][1]])  # the writer has everything
    assert trim_acked(redis, names, exact=True) == 0 and redis.xlen(key) == len(PULL + COAST)
    while det.once():
        pass
    assert trim_acked(redis, names, exact=True) == len(PULL + COAST) and redis.xlen(key) == 0
