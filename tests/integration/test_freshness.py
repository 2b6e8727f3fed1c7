"""Freshness and backlog against known traffic on the real Redis: the oldest unacknowledged entry
per priority (entries with chosen IDs, so ages are exact), Redis memory and its time until full
(a private redis-server with maxmemory), a producer spool's time until full, the status view.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from rich.console import Console

from admin.status import LazyPg, add_rates, render, sample
from common.fill import FillEstimator
from common.schema import Priority
from common.settings import Settings
from producers.base import ProducerStats
from producers.metrics import ProducerTelemetry
from writer.freshness import oldest_unacked
from writer.metrics import WriterTelemetry
from writer.pg import connect_pg
from writer.read import ensure_groups

pytestmark = pytest.mark.integration


def scrape(registry: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def test_oldest_unacked_follows_reads_and_acks(settings: Settings, redis: Redis) -> None:
    names = settings.redis.names
    normal, low = names.stream(Priority.NORMAL), names.stream(Priority.LOW)
    for ms in (1000, 2000, 3000):
        redis.xadd(normal, {"n": str(ms)}, id=f"{ms}-0")
    redis.xadd(low, {"n": "x"}, id="4000-0")  # no group on low yet: every entry waits
    now = 10_000
    assert oldest_unacked(redis, names, now) == {
        "critical": None, "high": None, "normal": 9.0, "low": 6.0, "bulk": None,
    }  # fmt: skip
    ensure_groups(redis, names)
    redis.xreadgroup(names.group, "c", {normal: ">"}, count=2)  # 1000 and 2000 pending, 3000 undelivered
    assert oldest_unacked(redis, names, now)["normal"] == 9.0
    redis.xack(normal, names.group, "1000-0")
    assert oldest_unacked(redis, names, now)["normal"] == 8.0  # the pending 2000
    redis.xack(normal, names.group, "2000-0")
    assert oldest_unacked(redis, names, now)["normal"] == 7.0  # the undelivered 3000
    redis.xreadgroup(names.group, "c", {normal: ">"}, count=5)
    redis.xack(normal, names.group, "3000-0")
    assert oldest_unacked(redis, names, now)["normal"] is None
    assert oldest_unacked(redis, names, 500)["low"] == 0.0  # an ID ahead of the clock is age 0, not negative


def test_writer_metrics_and_status_show_the_oldest_entry_and_memory(settings: Settings, redis: Redis) -> None:
    import time

    names = settings.redis.names
    ensure_groups(redis, names)
    added_ms = int(time.time() * 1000) - 30_000  # an entry 30 s old that no writer has read
    redis.xadd(names.stream(Priority.HIGH), {"n": "1"}, id=f"{added_ms}-0")
    wtel = WriterTelemetry(settings)
    try:
        got = scrape(wtel.registry)
    finally:
        wtel.close()
    age = got[("telemetry_stream_oldest_unacked_age_seconds", (("priority", "high"),))]
    assert 30.0 <= age < 90.0
    assert got[("telemetry_stream_oldest_unacked_age_seconds", (("priority", "critical"),))] == 0.0
    assert got[("telemetry_redis_memory_used_bytes", ())] > 0
    assert got[("telemetry_collector_up", (("part", "redis_freshness"),))] == 1
    pg = LazyPg(lambda: connect_pg(settings.postgres))
    data = add_rates(None, sample(redis, names, pg))
    if pg.conn is not None:
        pg.conn.close()
    high = next(p for p in data["priorities"] if p["priority"] == "high")
    assert 30.0 <= high["oldest_unacked_s"] < 90.0
    console = Console(record=True, width=200, file=io.StringIO())
    console.print(render(data))
    text = console.export_text()
    assert "oldest unacked s" in text and "redis memory" in text and " MiB " in text


def test_redis_memory_time_until_full_with_maxmemory(
    settings: Settings, redis_server_factory: Callable[..., Any]
) -> None:
    server = redis_server_factory("--maxmemory", "64mb", "--maxmemory-policy", "noeviction")
    private = settings.model_copy(update={"redis": settings.redis.model_copy(update={"url": server.url})})
    wtel = WriterTelemetry(private)
    client = Redis.from_url(server.url)
    try:
        first = scrape(wtel.registry)
        assert first[("telemetry_redis_memory_max_bytes", ())] == 64 * 2**20
        assert ("telemetry_redis_memory_full_seconds", ()) not in first  # one sample: no rate yet
        key = private.redis.names.stream(Priority.BULK)
        pipe = client.pipeline(transaction=False)
        for i in range(2000):
            pipe.xadd(key, {"blob": b"x" * 2000, "i": str(i)})  # ~4 MB of traffic
        pipe.execute()
        second = scrape(wtel.registry)
    finally:
        wtel.close()
        client.close()
    used = second[("telemetry_redis_memory_used_bytes", ())]
    growth = second[("telemetry_redis_memory_growth_bytes_per_second", ())]
    full = second[("telemetry_redis_memory_full_seconds", ())]
    assert used - first[("telemetry_redis_memory_used_bytes", ())] > 3_000_000
    assert growth > 0 and 0 < full < math.inf
    assert full == pytest.approx((64 * 2**20 - used) / growth, rel=1e-9)


def test_producer_spool_time_until_full() -> None:
    """The spool part of the producer's /metrics, with sample times chosen (synthetic levels)."""
    from fakeredis import FakeRedis

    from common.publish import Publisher
    from common.streams import StreamNames

    stats = ProducerStats()
    tel = ProducerTelemetry("gps_nmea", stats, Publisher(FakeRedis(), StreamNames("x"), "p/1"))
    clock = iter([0.0, 10.0])
    tel.spool_fill = FillEstimator(clock=lambda: next(clock))
    stats.spool_bytes, stats.spool_limit_bytes = 100_000, 1_000_000
    first = scrape(tel.registry)
    assert first[("telemetry_producer_spool_limit_bytes", (("source", "gps_nmea"),))] == 1_000_000
    assert ("telemetry_producer_spool_full_seconds", (("source", "gps_nmea"),)) not in first
    stats.spool_bytes = 300_000  # 20 kB/s while Redis is down
    second = scrape(tel.registry)
    assert second[("telemetry_producer_spool_full_seconds", (("source", "gps_nmea"),))] == 35.0


def test_status_shows_the_writers_producer_to_commit_latency(settings: Settings, redis: Redis) -> None:
    import json
    import subprocess
    import threading
    from datetime import UTC, datetime

    from common.http import OpsServer
    from common.publish import Publisher, new_producer_id
    from common.schema import Channel, Frame
    from tests.conftest import env_for
    from tests.helpers import count_readings, wait_for
    from writer.freshness import writer_latency
    from writer.replica import run_writer

    names = settings.redis.names
    now = datetime.now(UTC)
    pub = Publisher(redis, names, new_producer_id("lat"))
    pub.stamp([Frame("simulate", "d", now, now, i, (Channel("x", 1.0),), priority=Priority.HIGH) for i in range(20)])
    pub.send()
    wtel, stop = WriterTelemetry(settings), threading.Event()
    server = OpsServer("127.0.0.1", 0, wtel.endpoints()).start()
    url = f"http://127.0.0.1:{server.port}"
    thread = threading.Thread(
        target=run_writer, args=(settings, stop, "lat-writer"), kwargs={"stats": wtel.stats, "observe": wtel.observe}
    )
    thread.start()
    try:
        wait_for(lambda: count_readings(settings) == 20, 30, what="20 frames committed")
        latency = writer_latency(url)
        assert latency is not None and latency["high"]["count"] == 20 and latency["high"]["p50_ms"] > 0
        proc = subprocess.run(
            ["telemetry-admin", "status", "--json", "--sample-s", "0", "--writer-url", url],
            env=env_for(settings), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        high = next(p for p in json.loads(proc.stdout)["priorities"] if p["priority"] == "high")
        assert high["e2e_p50_ms"] == pytest.approx(latency["high"]["p50_ms"])
        assert high["e2e_p99_ms"] >= high["e2e_p50_ms"] > 0
    finally:
        stop.set()
        thread.join(30)
        server.close()
        wtel.close()
    assert writer_latency(url, 0.2) is None  # nobody answers: the column stays empty
