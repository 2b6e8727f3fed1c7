"""Issue 11, points 5, 10 and 11 with Redis at maxmemory (noeviction, as deploy/redis/redis.conf
ships) and with a dead letter Redis refuses. Each OOM test runs its own redis-server with a small
maxmemory, filled by keys outside the namespace that only the test frees; the machine's Redis is
never reconfigured.
"""

from __future__ import annotations

import json
import logging
import signal
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from redis import Redis
from redis.exceptions import OutOfMemoryError

from common.schema import Priority
from common.settings import Settings
from tests.conftest import settings_for
from tests.helpers import pg_query, running_writer, wait_for
from tests.integration.pipeline import frame, publish, start_writer, stop_process
from tests.integration.servers import free_port

pytestmark = pytest.mark.integration

OOM = ("--maxmemory", "4mb", "--maxmemory-policy", "noeviction")


def fill_until_oom(r: Redis) -> int:
    """SET filler keys (outside the namespace) until Redis refuses even a small write; returns how many.

    Values shrink from 64 KiB to 16 bytes: a big command's own bytes count while Redis checks memory.
    Then maxmemory is lowered 256 KiB below what is used, so that nothing the writer may free (it
    trims a few KiB of acknowledged entries) brings Redis back under it: only ``free_memory`` does.
    """
    n = 0
    for size in (65_536, 1_024, 16):
        while True:
            try:
                r.set(f"filler:{n}", b"x" * size)
            except OutOfMemoryError:
                break
            n += 1
    r.config_set("maxmemory", int(r.info("memory")["used_memory"]) - (256 << 10))
    return n


def free_memory(r: Redis, n: int) -> None:
    r.delete(*[f"filler:{i}" for i in range(n)])


def prepare(server: Any, settings: Settings, **writer: Any) -> tuple[Settings, Redis]:
    """Settings on the private server; groups exist; 20 normal + 5 critical frames and one poison entry."""
    s = settings_for(
        server.url, settings.postgres.dsn, settings.redis.namespace, settings.postgres.schema_name, **writer
    )
    r = Redis.from_url(server.url)
    names = s.redis.names
    for key in names.streams:  # as a writer that ran before the restart left them
        r.xgroup_create(key, names.group, id="0", mkstream=True)
    publish(s, r, [frame("live", i) for i in range(20)])
    r.xadd(names.stream(Priority.NORMAL), {"hello": "world"})  # poison: no schema
    from dataclasses import replace

    publish(s, r, [replace(frame("crit", i), priority=Priority.CRITICAL) for i in range(5)], name="crit")
    return s, r


def frames_committed(s: Settings) -> int:
    return int(pg_query(s, "SELECT count(*) FROM frame_keys")[0][0])


def get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return int(resp.status), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read())


def test_a_writer_restarted_while_redis_is_full_commits_acks_reports_the_stuck_lane_and_stops_on_sigterm(
    settings: Settings, redis_server_factory: Any
) -> None:
    server = redis_server_factory(*OOM)
    s, r = prepare(server, settings)
    names = s.redis.names
    fill_until_oom(r)
    with pytest.raises(OutOfMemoryError):
        r.xadd(names.stream(Priority.LOW), {"x": "1"})
    port = free_port()
    env = {"TELEMETRY_HTTP__PORT": str(port), "TELEMETRY_WRITER__STALL_S": "1", "TELEMETRY_LOG_LEVEL": "INFO"}
    writer = start_writer(s, "oom-writer", env)
    try:
        wait_for(lambda: frames_committed(s) == 25, 60, what="frames committed while Redis is full")
        crit, normal = names.stream(Priority.CRITICAL), names.stream(Priority.NORMAL)
        wait_for(lambda: r.xpending(crit, names.group)["pending"] == 0, 30, what="critical frames acked")
        wait_for(lambda: r.xpending(normal, names.group)["pending"] == 1, 30, what="all but the poison acked")
        assert r.xlen(names.deadletter) == 0  # refused (OOM): it stays pending, nothing half done
        _, body = wait_for(lambda: (got := get(port, "/readyz"))[0] == 503 and got, 30, what="readyz 503")
        assert body["checks"]["lane_live_progress"] is False and body["checks"]["lane_urgent_progress"] is True
        assert get(port, "/healthz")[0] == 200  # the loop still turns: alive, not ready
        t0 = time.monotonic()
        out = stop_process(writer, signal.SIGTERM, timeout=30)
        assert time.monotonic() - t0 < 15, "SIGTERM during an OOM was not honoured promptly"
    finally:
        if writer.poll() is None:
            out = stop_process(writer, signal.SIGKILL)
    assert writer.returncode == 0, out[-3000:]
    assert "Traceback" not in out and "dead-lettered" not in out, out[-3000:]
    assert r.xpending(names.stream(Priority.NORMAL), names.group)["pending"] == 1  # still pending for later


def test_a_dead_letter_refused_while_redis_is_full_goes_through_once_when_memory_frees(
    settings: Settings, redis_server_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = redis_server_factory(*OOM)
    s, r = prepare(server, settings)
    names = s.redis.names
    fillers = fill_until_oom(r)
    caplog.set_level(logging.INFO)
    with running_writer(s) as live:
        wait_for(lambda: live.frames == 25, 60, what="frames committed while Redis is full")
        wait_for(lambda: live.lanes["live"].deferred == 1, 30, what="the dead letter refused and kept aside")
        errors = live.redis_errors
        wait_for(lambda: live.redis_errors > errors, 30, what="a retry refused again")
        assert sum("refused" in m for m in caplog.messages) == 1  # logged once, not once per retry
        assert not [m for m in caplog.messages if m.startswith("dead-lettered")]  # never logged before success
        free_memory(r, fillers)
        wait_for(lambda: r.xlen(names.deadletter) == 1, 30, what="the dead letter once memory is free")
        wait_for(lambda: live.lanes["live"].deferred == 0, 30)
        assert r.xpending(names.stream(Priority.NORMAL), names.group)["pending"] == 0
    assert len([m for m in caplog.messages if m.startswith("dead-lettered")]) == 1
    assert dict(live.dead_letters) == {"DecodeError": 1}


def test_a_dead_letter_stream_of_the_wrong_type_neither_blocks_the_lane_nor_loses_the_entry(
    settings: Settings, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    names = settings.redis.names
    redis.set(names.deadletter, "not a stream")  # any refusal of the dead-letter write
    redis.xadd(names.stream(Priority.NORMAL), {"hello": "world"})
    caplog.set_level(logging.INFO, logger="writer.deadletter")
    with running_writer(settings) as live:
        wait_for(lambda: live.lanes["live"].deferred == 1, 30, what="refused dead letter kept aside")
        publish(settings, redis, [frame("after", i) for i in range(10)])
        wait_for(lambda: live.frames == 10, 30, what="the lane goes on")  # the old writer looped forever
        assert redis.xpending(names.stream(Priority.NORMAL), names.group)["pending"] == 1  # not lost
        redis.delete(names.deadletter)
        wait_for(lambda: redis.xlen(names.deadletter) == 1, 30)
    assert len([m for m in caplog.messages if m.startswith("dead-lettered")]) == 1
