"""Unit tests of the operations layer: summaries, readiness, the producer collector, the endpoint.

No servers: the producer's Redis is fakeredis; the HTTP endpoint binds 127.0.0.1 on a free port.
"""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from urllib.error import HTTPError

import fakeredis
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from common.breaker import BreakerState
from common.http import Endpoints, OpsServer, readiness, serve
from common.metrics import OpSummary, breaker_state_name, new_registry
from common.publish import Publisher
from common.schema import Channel, Frame, Priority, Quality
from common.settings import HttpSettings
from common.streams import StreamNames
from producers.base import ProducerStats
from producers.metrics import ProducerTelemetry
from producers.outbox import Outbox


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status), resp.read()
    except HTTPError as exc:
        return exc.code, exc.read()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Exposition text -> {(sample name, sorted labels): value}."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_op_summary_percentiles_and_bounded_memory() -> None:
    summary = OpSummary()
    values = [i / 1000 for i in range(1, 10_001)]  # 1..10000 ms, shuffled
    random.Random(2).shuffle(values)
    for i, v in enumerate(values):
        summary.observe("copy", v, ok=i % 100 != 0, rows=10)
    copy = summary.as_dict()["copy"]
    assert copy["count"] == 10_000 and copy["errors"] == 100 and copy["rows"] == 100_000
    assert copy["error_rate"] == 0.01
    assert len(summary._ops["copy"].durations.counts) == 420  # bounded, whatever the count
    assert copy["min_ms"] == 1.0 and copy["max_ms"] == 10_000.0
    assert abs(copy["avg_ms"] - 5000.5) < 1e-6
    # Log buckets 4 % wide: each percentile within one bucket above the exact value.
    assert 5000 <= copy["p50_ms"] <= 5000 * 1.05
    assert 9500 <= copy["p95_ms"] <= 9500 * 1.05 and 9900 <= copy["p99_ms"] <= 10_000


def test_readiness_needs_connections_and_closed_breakers() -> None:
    assert readiness({"device_connected": True}).ok
    assert not readiness({"device_connected": False}).ok
    assert readiness({"db": True}, lambda: {"redis": "closed"}).ok
    half = readiness({"db": True}, lambda: {"redis": "HALF_OPEN"})
    assert not half.ok and half.checks["breaker_redis_closed"] is False

    def broken() -> dict[str, str]:
        raise RuntimeError("probe")

    assert not readiness({"db": True}, broken).ok
    assert [breaker_state_name(s) for s in ("closed", "half-open", "OPEN", "weird")] == [
        "closed",
        "half_open",
        "open",
        "open",
    ]


def test_spool_and_drop_counters_of_the_stats_reach_metrics() -> None:
    """The collector reads ProducerStats' own fields (no adapter, no fallback for absent ones)."""
    stats = ProducerStats(spooled=Counter({"normal": 3}), dropped=Counter({("spool_full", "bulk"): 2}))
    stats.spool_records, stats.spool_available = 3, False
    telemetry = ProducerTelemetry("simulate", stats, Publisher(fakeredis.FakeRedis(), StreamNames("u"), "p/1"))
    got = samples(generate_latest(telemetry.registry).decode())
    src = ("source", "simulate")
    assert got[("telemetry_producer_frames_spooled_total", (("priority", "normal"), src))] == 3
    assert got[("telemetry_producer_frames_dropped_total", (("priority", "bulk"), ("reason", "spool_full"), src))] == 2
    assert got[("telemetry_producer_spool_records", (src,))] == 3
    assert got[("telemetry_producer_spool_available", (src,))] == 0


def _frame(priority: Priority, n: int) -> Frame:
    now = datetime.now(UTC)
    return Frame(
        "simulate", "sim-0", now, now, n, (Channel("rpm", 1000.0 + n, "rpm", Quality.GOOD),), priority=priority
    )


def test_producer_metrics_count_by_priority_and_endpoint_answers() -> None:
    """/metrics reads the ProducerStats the outbox updates: the one count of frames read and published."""
    redis = fakeredis.FakeRedis()
    publisher = Publisher(redis, StreamNames("unit"), "simulate@test/1")
    stats = ProducerStats(connected=True)
    stats.parse_errors.update({"checksum": 2, "json": 1})
    telemetry = ProducerTelemetry("simulate", stats, publisher)
    outbox = Outbox(publisher, stats)
    outbox.add([_frame(Priority.NORMAL, i) for i in range(7)] + [_frame(Priority.CRITICAL, 9)])
    assert outbox.deliver(threading.Event())
    assert stats.frames_published == 8 == redis.xlen(StreamNames("unit").stream(Priority.NORMAL)) + 1
    outbox.add([_frame(Priority.BULK, 10)])  # read, not yet sent
    server = OpsServer("127.0.0.1", 0, telemetry.endpoints()).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        status, body = _get(base + "/metrics")
        got = samples(body.decode())
        assert status == 200
        src = ("source", "simulate")
        assert got[("telemetry_producer_frames_read_total", (("priority", "normal"), src))] == 7
        assert got[("telemetry_producer_frames_read_total", (("priority", "bulk"), src))] == 1
        assert got[("telemetry_producer_frames_published_total", (("priority", "critical"), src))] == 1
        assert ("telemetry_producer_frames_published_total", (("priority", "bulk"), src)) not in got
        assert got[("telemetry_producer_parse_errors_total", (("kind", "checksum"), src))] == 2
        assert got[("telemetry_producer_device_connected", (src,))] == 1
        assert got[("telemetry_producer_publish_pending", (src,))] == 1
        assert got[("telemetry_breaker_state", (("link", "device"),))] == 0
        assert _get(base + "/healthz")[0] == 200
        assert json.loads(_get(base + "/readyz")[1])["ready"] is True
        stats.connected = False
        status, body = _get(base + "/readyz")
        assert status == 503 and json.loads(body)["checks"] == {
            "device_connected": False,
            "breaker_device_closed": True,
            "breaker_redis_closed": True,
        }
        # breaker states reach /metrics and /readyz by one route: the stats the run loop updates
        stats.connected, stats.redis_breaker = True, BreakerState.OPEN
        status, body = _get(base + "/readyz")
        assert status == 503 and json.loads(body)["checks"]["breaker_redis_closed"] is False
        assert samples(_get(base + "/metrics")[1].decode())[("telemetry_breaker_state", (("link", "redis"),))] == 2
        stats.redis_breaker = BreakerState.HALF_OPEN
        assert samples(_get(base + "/metrics")[1].decode())[("telemetry_breaker_state", (("link", "redis"),))] == 1
        status, body = _get(base + "/nope")
        assert status == 404 and json.loads(body)["paths"] == ["/metrics", "/healthz", "/readyz"]  # no /summary here
    finally:
        server.close()


def test_port_in_use_is_logged_not_fatal() -> None:
    endpoints = Endpoints(registry=new_registry(), live=lambda: True, ready=lambda: readiness({}))
    first = serve(HttpSettings(port=0), 0, endpoints)
    assert first is not None
    try:
        assert serve(HttpSettings(port=first.port), 0, endpoints) is None
        assert serve(HttpSettings(enabled=False), 0, endpoints) is None
    finally:
        first.close()


def test_summary_observe_is_thread_safe() -> None:
    summary = OpSummary()
    threads = [
        threading.Thread(target=lambda: [summary.observe("ack", 0.001, True, 1) for _ in range(2000)]) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert summary.as_dict()["ack"]["count"] == 8000


def test_idle_connections_cannot_pile_up_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13.5: 1,000 idle sockets held 1,000 threads in the writer."""
    import socket

    import common.http

    monkeypatch.setattr(common.http, "CONNECTION_TIMEOUT_S", 1.0)
    endpoints = Endpoints(registry=new_registry(), live=lambda: True, ready=lambda: readiness({}))
    server = OpsServer("127.0.0.1", 0, endpoints).start()
    before = threading.active_count()
    socks: list[socket.socket] = []
    try:
        for _ in range(1000):
            socks.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        peak = threading.active_count()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the accept loop works through the backlog
            peak = max(peak, threading.active_count())
            time.sleep(0.01)
        assert peak - before <= common.http.MAX_CONNECTIONS, (before, peak)
        assert server.httpd.refused > 500  # type: ignore[attr-defined]
        for s in socks:
            s.close()
        socks.clear()
        # Idle connections time out; then the endpoint answers again.
        deadline = time.monotonic() + 10
        while threading.active_count() > before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert threading.active_count() <= before
        assert _get(f"http://127.0.0.1:{server.port}/healthz")[0] == 200
    finally:
        for s in socks:
            s.close()
        server.close()


def test_an_idle_connection_is_closed_after_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    import common.http

    monkeypatch.setattr(common.http, "CONNECTION_TIMEOUT_S", 0.5)
    endpoints = Endpoints(registry=new_registry(), live=lambda: True, ready=lambda: readiness({}))
    server = OpsServer("127.0.0.1", 0, endpoints).start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            t0 = time.monotonic()
            assert s.recv(1) == b""  # the server closed it
            assert time.monotonic() - t0 < 4
    finally:
        server.close()
