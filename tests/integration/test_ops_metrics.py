"""Metrics, /readyz, /summary, the status view and the Grafana dashboard, against known traffic.

One scenario (module fixture) on the real Redis and PostgreSQL: a jsonl producer publishes 45
frames (30 normal, 10 high, 5 critical; 2 channels each) and meets 3 bad lines (2 ``json``, 1
``schema``); a second producer skips 4 sequence numbers (a synthetic gap); one hand-written
entry with no schema is poison. A writer commits it all. Each test reads the result from a
different window: the metrics endpoints, the status view (rich export, a pty, ``--json``), and
the dashboard's metric names.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.error import HTTPError

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from rich.console import Console

from admin.migrate import migrate
from admin.status import LazyPg, add_rates, render, sample
from common.http import OpsServer
from common.publish import Publisher
from common.schema import Channel, Frame, Priority, Quality
from producers.base import ProducerStats, run_producer
from producers.jsonl import JsonlSource
from producers.metrics import ProducerTelemetry
from producers.validate import RangeValidator
from tests.conftest import REPO, env_for, settings_for
from tests.helpers import count_readings, wait_for
from writer.metrics import WriterTelemetry
from writer.pg import connect_pg
from writer.replica import run_writer

pytestmark = pytest.mark.integration

PER_PRIORITY = {"normal": 30, "high": 10, "critical": 5}
GOOD = sum(PER_PRIORITY.values())
BAD_LINES = 3
"""Lines of the jsonl input the producer rejects: each is dead-lettered (as a rejection entry)."""
DEAD = 1 + BAD_LINES
"""Dead letters in all: the poison entry written by hand and the rejected lines."""
GAP_FRAMES, GAP_MISSING = 5, 4


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return int(resp.status), resp.read()
    except HTTPError as exc:
        return exc.code, exc.read()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def _jsonl(path: Path) -> None:
    lines = []
    for prio, n in PER_PRIORITY.items():
        for i in range(n):
            lines.append(json.dumps({"device": "pump-1", "priority": prio, "channels": {"pressure": i, "temp": 20.5}}))
    lines[3:3] = ["{not json", "[1, 2"]  # 2 x kind=json
    lines.append(json.dumps({"channels": {"x": 1}}))  # no device: kind=schema
    path.write_text("\n".join(lines) + "\n")


def _gap_frames(redis: Redis, names: Any) -> None:
    """A second producer whose sequence skips GAP_MISSING numbers (synthetic loss)."""
    pub = Publisher(redis, names, "simulate@ops/gap")
    now = datetime.now(UTC)
    frames = [Frame("simulate", "sim-0", now, now, i, (Channel("rpm", 1000.0, "rpm", Quality.GOOD),)) for i in range(5)]
    pub.stamp(frames[:2])
    pub.next_seq += GAP_MISSING
    pub.stamp(frames[2:])
    pub.send()


@pytest.fixture(scope="module")
def traffic(redis_url: str, pg_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    ns = "t" + uuid.uuid4().hex[:10]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        migrate(conn, ns)
    settings = settings_for(redis_url, pg_dsn, ns, ns)
    redis, names, stop = Redis.from_url(redis_url), settings.redis.names, threading.Event()
    path = tmp_path_factory.mktemp("ops") / "in.jsonl"
    _jsonl(path)
    stats = ProducerStats()
    publisher = Publisher(redis, names, "jsonl@ops/1")
    ptel = ProducerTelemetry("jsonl", stats, publisher)
    wtel = WriterTelemetry(settings)
    servers = [OpsServer("127.0.0.1", 0, ptel.endpoints()).start(), OpsServer("127.0.0.1", 0, wtel.endpoints()).start()]
    source = JsonlSource(str(path), follow=True)
    threads = [
        threading.Thread(
            target=run_producer, args=(source, publisher, RangeValidator({}), stop), kwargs={"stats": stats}
        ),
        threading.Thread(
            target=run_writer,
            args=(settings, stop, "ops-writer"),
            kwargs={"stats": wtel.stats, "observe": wtel.observe},
        ),
    ]
    for t in threads:
        t.start()
    _gap_frames(redis, names)
    redis.xadd(names.stream(Priority.NORMAL), {"v": "1", "junk": "no schema"})  # poison
    try:
        wait_for(lambda: count_readings(settings) == GOOD * 2 + GAP_FRAMES, 30, what="all readings committed")
        wait_for(lambda: redis.xlen(names.deadletter) == DEAD, 10, what="the poison and bad lines dead-lettered")
        wait_for(lambda: all(g["pending"] == 0 for s in names.streams for g in redis.xinfo_groups(s)), 10, what="acks")
        yield {
            "settings": settings,
            "redis": redis,
            "producer_url": f"http://127.0.0.1:{servers[0].port}",
            "writer_url": f"http://127.0.0.1:{servers[1].port}",
        }
    finally:
        stop.set()
        for t in threads:
            t.join(20)
        for s in servers:
            s.close()
        wtel.close()
        keys = list(redis.scan_iter(match="{" + ns + "}*"))
        if keys:
            redis.delete(*keys)
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(psycopg.sql.Identifier(ns)))


def test_producer_metrics_match_the_traffic(traffic: dict[str, Any]) -> None:
    status, body = get(traffic["producer_url"] + "/metrics")
    got = samples(body.decode())
    src = ("source", "jsonl")
    for prio, n in PER_PRIORITY.items():
        labels = frozenset({src, ("priority", prio)})
        assert got[("telemetry_producer_frames_read_total", labels)] == n
        assert got[("telemetry_producer_frames_published_total", labels)] == n
    assert got[("telemetry_producer_parse_errors_total", frozenset({src, ("kind", "json")}))] == 2
    assert got[("telemetry_producer_parse_errors_total", frozenset({src, ("kind", "schema")}))] == 1
    assert got[("telemetry_producer_device_connected", frozenset({src}))] == 1
    status, body = get(traffic["producer_url"] + "/readyz")
    assert status == 200 and json.loads(body)["ready"] is True


def test_writer_metrics_match_the_traffic(traffic: dict[str, Any]) -> None:
    got = samples(get(traffic["writer_url"] + "/metrics")[1].decode())
    none: frozenset[tuple[str, str]] = frozenset()
    assert got[("telemetry_writer_frames_committed_total", none)] == GOOD + GAP_FRAMES
    assert got[("telemetry_writer_rows_committed_total", none)] == GOOD * 2 + GAP_FRAMES
    assert got[("telemetry_writer_batch_rows_sum", none)] == GOOD * 2 + GAP_FRAMES
    assert got[("telemetry_writer_batch_rows_count", none)] == got[("telemetry_writer_batches_committed_total", none)]
    assert got[("telemetry_writer_op_seconds_count", frozenset({("op", "copy")}))] >= 1
    assert got[("telemetry_writer_dead_letters_total", frozenset({("reason", "DecodeError")}))] == DEAD
    assert got[("telemetry_deadletter_length", none)] == DEAD
    added = {p: n for p, n in PER_PRIORITY.items()}
    added["normal"] += GAP_FRAMES + 1  # the gap producer's frames and the poison entry
    for prio, n in added.items():
        labels = frozenset({("priority", prio)})
        assert got[("telemetry_stream_entries_added_total", labels)] == n
        assert got[("telemetry_stream_lag", labels)] == 0
        assert got[("telemetry_stream_pending", labels)] == 0
    assert got[("telemetry_sequence_missing_frames", frozenset({("source", "simulate")}))] == GAP_MISSING
    assert got[("telemetry_sequence_missing_frames", frozenset({("source", "jsonl")}))] == 0
    assert got[("telemetry_producers_with_gaps", frozenset({("source", "simulate")}))] == 1
    assert got[("telemetry_collector_up", frozenset({("part", "redis")}))] == 1
    assert got[("telemetry_breaker_state", frozenset({("link", "postgres")}))] == 0  # closed
    assert got[("telemetry_writer_e2e_latency_seconds", frozenset({("priority", "high"), ("quantile", "0.95")}))] > 0
    assert got[("telemetry_collector_up", frozenset({("part", "postgres")}))] == 1
    status, body = get(traffic["writer_url"] + "/readyz")
    assert status == 200 and json.loads(body)["checks"] == {
        "redis": True,
        "postgres": True,
        "breaker_postgres_closed": True,
        "lane_urgent_progress": True,
        "lane_live_progress": True,
        "lane_bulk_progress": True,
    }


def test_writer_summary_per_operation(traffic: dict[str, Any]) -> None:
    summary = json.loads(get(traffic["writer_url"] + "/summary")[1])
    ops = summary["operations"]
    assert {"read", "copy", "ack", "dead_letter"} <= set(ops)
    copy = ops["copy"]
    assert copy["count"] == summary["writer"]["batches"] and copy["errors"] == 0 and copy["error_rate"] == 0
    assert copy["rows"] == GOOD * 2 + GAP_FRAMES
    assert 0 < copy["min_ms"] <= copy["p50_ms"] <= copy["p95_ms"] <= copy["p99_ms"] <= copy["max_ms"]
    assert ops["dead_letter"]["rows"] == DEAD


def test_status_view_renders_streams_producers_gaps_dead_letters(traffic: dict[str, Any]) -> None:
    s = traffic["settings"]
    pg = LazyPg(lambda: connect_pg(s.postgres))
    data = add_rates(None, sample(traffic["redis"], s.redis.names, pg, top=5))
    assert pg.conn is not None
    pg.conn.close()
    console = Console(record=True, width=200, file=io.StringIO())
    console.print(render(data))
    text = console.export_text()
    for prio in ("critical", "high", "normal", "low", "bulk"):
        # priority │ length │ lag │ pending │ rate/s: all delivered and acked (length depends on trimming)
        assert re.search(rf"│ {prio}\s+│\s+\d+ │\s+(0|-) │\s+0 │\s+- │", text), prio
    assert "ops-writer" in text and "jsonl@ops/1" in text
    assert re.search(rf"│ simulate@ops/gap │ simulate │\s+{GAP_MISSING} │\s+9 │", text), text  # gaps (top)
    assert f"missing frames in all: {GAP_MISSING}" in text
    assert f"dead letters: {DEAD}" in text and "DecodeError" in text


def test_status_json_once(traffic: dict[str, Any]) -> None:
    env = env_for(traffic["settings"])
    run = subprocess.run(
        ["telemetry-admin", "status", "--json", "--sample-s", "0.3"], env=env, capture_output=True, timeout=30
    )
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    by_prio = {p["priority"]: p for p in data["priorities"]}
    assert by_prio["high"]["entries_added"] == PER_PRIORITY["high"] and by_prio["high"]["rate"] == 0.0
    assert data["producers"]["missing_total"] == GAP_MISSING
    assert data["deadletter"]["length"] == DEAD and data["deadletter"]["recent"][0]["reason"] == "DecodeError"
    assert [w["name"] for w in data["writers"]] == ["ops-writer"]


def test_status_view_refreshes_in_a_terminal(traffic: dict[str, Any]) -> None:
    env = {**env_for(traffic["settings"]), "TERM": "xterm-256color", "COLUMNS": "200", "LINES": "60"}
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 200, 0, 0))
    proc = subprocess.Popen(
        ["telemetry-admin", "status", "--interval", "0.3"], env=env, stdin=follower, stdout=follower, stderr=follower
    )
    os.close(follower)
    out = b""
    deadline = time.monotonic() + 15
    try:
        while time.monotonic() < deadline and out.count(b"telemetry status") < 3:
            if select.select([leader], [], [], 0.5)[0]:
                try:
                    out += os.read(leader, 65536)
                except OSError:
                    break
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()  # reaped here, not by Popen.__del__ in a later test
        os.close(leader)
    text = out.decode(errors="replace")
    assert text.count("telemetry status") >= 3, text[-2000:]  # redrawn in place, again and again
    assert "jsonl@ops/1" in text and f"dead letters: {DEAD}" in text


def test_grafana_dashboard_uses_only_exported_metrics(traffic: dict[str, Any]) -> None:
    exported = set()
    for url in (traffic["producer_url"], traffic["writer_url"]):
        exported |= {fam.name for fam in text_string_to_metric_families(get(url + "/metrics")[1].decode())}
    dashboard = json.loads((REPO / "deploy" / "grafana" / "dashboards" / "telemetry.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {
        re.sub(r"_(total|bucket|sum|count)$", "", m) for e in exprs for m in re.findall(r"\btelemetry_[a-z0-9_]+", e)
    }
    assert used and used <= exported, f"dashboard uses metrics no process exports: {sorted(used - exported)}"
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("committed", "lag", "dead letters", "drops", "latency", "device"):
        assert topic in titles, topic
