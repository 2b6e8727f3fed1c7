"""A zombie writer (SIGSTOP longer than the claim idle time, then SIGCONT) inserts nothing twice."""

from __future__ import annotations

import os
import re
import signal

import pytest
from redis import Redis

from common.settings import Settings
from tests.helpers import count_readings, pg_query, running_writer, wait_for
from tests.integration.pipeline import frame, publish, start_writer, stop_process

pytestmark = pytest.mark.integration


def pending_of(redis: Redis, settings: Settings, consumer: str) -> int:
    total = 0
    for key in settings.redis.names.streams:
        for c in redis.xinfo_consumers(key, "writer") if redis.exists(key) else []:
            if c["name"].decode() == consumer:
                total += int(c["pending"])
    return total


def test_zombie_writer_resuming_after_its_entries_were_claimed_inserts_no_duplicate(
    settings: Settings, redis: Redis
) -> None:
    # The zombie holds what it reads for 3 s before committing, so it is stopped mid-batch.
    zombie = start_writer(
        settings,
        "zombie",
        {"TELEMETRY_WRITER__BATCH_MAX_AGE_MS": "3000", "TELEMETRY_HTTP__ENABLED": "false"},
    )
    try:
        wait_for(lambda: redis.exists(*settings.redis.names.streams) == 5, 20, what="zombie created the group")
        publish(settings, redis, [frame("z", i) for i in range(2000)])
        wait_for(lambda: pending_of(redis, settings, "zombie") == 2000, 20, what="zombie read the batch")
        os.kill(zombie.pid, signal.SIGSTOP)
        assert count_readings(settings) == 0
        # claim_idle_ms is 2000 in the test settings: the rescuer claims and commits everything.
        with running_writer(settings, consumer="rescuer") as live:
            wait_for(lambda: count_readings(settings) == 2000, 30, what="rescuer committed the claimed batch")
            assert live.claimed >= 2000
            os.kill(zombie.pid, signal.SIGCONT)  # the zombie wakes up and commits its stale batch
            wait_for(lambda: pending_of(redis, settings, "zombie") == 0, 20, what="zombie flushed and acked")
    finally:
        os.kill(zombie.pid, signal.SIGCONT)
        out = stop_process(zombie)
    total, distinct = pg_query(settings, "SELECT count(*), count(DISTINCT (producer, seq)) FROM readings")[0]
    assert total == distinct == 2000
    stopped = re.search(r"writer zombie stopped: frames=(\d+) rows=\d+ duplicates=(\d+)", out)
    assert stopped and stopped.group(1) == "0" and stopped.group(2) == "2000", out[-2000:]
