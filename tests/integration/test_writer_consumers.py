"""Consumers of gone replicas leave the writer group (issue 10.7): on a clean stop at once, after a
crash once their entries were claimed and they have been idle past CONSUMER_FORGET_IDLE_S."""

from __future__ import annotations

import time

import pytest
from redis import Redis

from common.schema import Priority
from common.settings import Settings
from tests.conftest import settings_for
from tests.helpers import count_readings, running_writer, wait_for
from tests.integration.pipeline import frame, publish
from writer.consumers import forget_idle_consumers

pytestmark = pytest.mark.integration


def consumers(redis: Redis, settings: Settings) -> dict[str, dict[str, int]]:
    """stream -> {consumer name: pending}"""
    names = settings.redis.names
    out: dict[str, dict[str, int]] = {}
    for key in names.streams:
        if redis.exists(key):
            out[key] = {c["name"].decode(): int(c["pending"]) for c in redis.xinfo_consumers(key, names.group)}
    return out


def test_a_cleanly_stopped_replica_removes_its_consumer(settings: Settings, redis: Redis) -> None:
    publish(settings, redis, [frame("d", i, x=float(i)) for i in range(20)])
    with running_writer(settings, consumer="short-lived") as live:
        wait_for(lambda: live.frames == 20, 30)
        assert "short-lived" in consumers(redis, settings)[settings.redis.names.stream(Priority.NORMAL)]
    assert all("short-lived" not in c for c in consumers(redis, settings).values()), consumers(redis, settings)


def test_a_dead_replicas_consumer_is_forgotten_only_after_its_entries_are_claimed(
    redis_url: str, pg_dsn: str, namespace: str, pg_schema: str, redis: Redis
) -> None:
    s = settings_for(redis_url, pg_dsn, namespace, pg_schema, claim_idle_ms=100, consumer_forget_idle_s=0.3)
    names, key = s.redis.names, s.redis.names.stream(Priority.NORMAL)
    publish(s, redis, [frame("d", i, x=float(i)) for i in range(10)])
    redis.xgroup_create(key, names.group, id="0", mkstream=True)
    redis.xreadgroup(names.group, "crashed", {key: ">"}, count=4)  # read, never acked: a kill -9
    redis.xgroup_createconsumer(key, names.group, "idle-ghost")
    time.sleep(0.4)  # both idle past CONSUMER_FORGET_IDLE_S
    # Not the writer: nothing claimed yet, so the consumer holding 4 entries must stay.
    gone = forget_idle_consumers(redis, names, [key], 300, keep="me")
    assert gone == [(key, "idle-ghost")]
    assert consumers(redis, s)[key] == {"crashed": 4}
    with running_writer(s, consumer="rescuer") as live:
        wait_for(lambda: live.frames == 10, 30, what="all frames, the crashed replica's claimed")
        wait_for(lambda: "crashed" not in consumers(redis, s)[key], 30, what="the crashed consumer forgotten")
    assert count_readings(s) == 10
