"""Producers ride out Redis outages with the on-disk spool; the writer rides out Redis restarts.

Every test runs its own redis-server on a free loopback port (tests.integration.servers), so it
can kill and restart it; PostgreSQL is the shared test server (a schema per test).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from common.breaker import Breaker, BreakerState
from common.publish import Publisher
from common.schema import Priority
from common.settings import Settings
from producers.base import ProducerStats, run_producer
from producers.simulate import SimulateSource
from producers.spool import Spool
from producers.validate import RangeValidator
from tests.conftest import REPO, env_for, settings_for
from tests.helpers import pg_query, running_writer, wait_for
from tests.integration.pipeline import start_writer, stop_process
from tests.integration.servers import RedisServer

pytestmark = pytest.mark.integration

AOF = ("--appendonly", "yes", "--appendfsync", "always")


def private_settings(server: RedisServer, settings: Settings, **writer: Any) -> Settings:
    return settings_for(
        server.url, settings.postgres.dsn, settings.redis.namespace, settings.postgres.schema_name, **writer
    )


class Producer:
    """run_producer in a thread: simulate source, a spool in ``folder``, a fast Redis breaker."""

    def __init__(self, s: Settings, folder: Path, name: str, rate: float, max_bytes: int = 1 << 26) -> None:
        self.redis = Redis.from_url(s.redis.url, socket_timeout=2, socket_connect_timeout=1)
        self.source = SimulateSource(2, 4, rate_hz=rate, device_prefix=name)
        self.publisher = Publisher(self.redis, s.redis.names, f"{name}/run1")
        self.stats, self.stop = ProducerStats(), threading.Event()
        spool = Spool(folder / name, max_bytes, max(4096, max_bytes // 16), fsync_interval_s=0.2)
        kwargs = {"spool": spool, "stats": self.stats, "redis_breaker": Breaker("redis", 2, 0.5, 1), "stop_grace": 15}
        args = (self.source, self.publisher, RangeValidator(s.producer.ranges), self.stop)
        self.thread = threading.Thread(target=run_producer, args=args, kwargs=kwargs, daemon=True)
        self.thread.start()

    def finish(self) -> ProducerStats:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()
        return self.stats


def committed(s: Settings, producer: str) -> tuple[int, int, int]:
    """(frames committed, max seq, readings rows) of one producer."""
    frames, max_seq = pg_query(s, "SELECT coalesce(sum(frames), 0), coalesce(max(max_seq), 0) FROM producer_progress"
                                  " WHERE producer = %s", [producer])[0]  # fmt: skip
    rows = pg_query(
        s, "SELECT count(*), count(DISTINCT (seq, device, channel)) FROM readings WHERE producer = %s", [producer]
    )[0]
    assert rows[0] == rows[1], "duplicate readings"
    return int(frames), int(max_seq), int(rows[0])


@pytest.mark.slow
def test_redis_down_30s_spool_replays_with_zero_loss(
    settings: Settings, redis_server_factory: Any, tmp_path: Path
) -> None:
    server = redis_server_factory(*AOF)
    s = private_settings(server, settings)
    with running_writer(s) as live:
        producers = [Producer(s, tmp_path, f"p{i}", rate=50) for i in range(2)]
        wait_for(lambda: live.frames >= 200, 20, what="frames flowing before the outage")
        server.stop(signal.SIGKILL)
        t0 = time.monotonic()
        wait_for(lambda: all(p.stats.redis_breaker is BreakerState.OPEN for p in producers), 10)
        time.sleep(max(0.0, 30 - (time.monotonic() - t0)))
        spooled = [p.stats.frames_spooled for p in producers]
        assert min(spooled) >= 2 * 50 * 25, spooled  # reads went on at full rate during the outage
        server.start()
        wait_for(lambda: all(p.stats.frames_replayed >= n for p, n in zip(producers, spooled, strict=True)), 60)
        stats = [p.finish() for p in producers]
        total = sum(st.frames_read for st in stats)
        wait_for(lambda: sum(committed(s, p.publisher.producer_id)[0] for p in producers) >= total, 60)
    for p, st in zip(producers, stats, strict=True):
        frames, max_seq, rows = committed(s, p.publisher.producer_id)
        assert frames == max_seq == st.frames_read and rows == 4 * frames  # 0 loss, 0 gaps, 0 duplicates
        assert not st.dropped and st.frames_unsent == 0 and st.spool_records == 0
        assert st.redis_breaker is BreakerState.CLOSED


def test_spool_too_small_drops_are_counted_exactly(
    settings: Settings, redis_server_factory: Any, tmp_path: Path
) -> None:
    server = redis_server_factory(*AOF)
    s = private_settings(server, settings)
    server.stop()
    p = Producer(s, tmp_path, "tiny", rate=200, max_bytes=64 << 10)
    wait_for(lambda: sum(p.stats.dropped.values()) >= 500, 20, what="drops while the spool is full")
    server.start()
    wait_for(lambda: p.stats.spool_records == 0 and p.stats.frames_replayed > 0, 30)
    st = p.finish()
    dropped = sum(st.dropped.values())
    assert set(st.dropped) == {("spool_full", "normal")}
    with running_writer(s):
        wait_for(lambda: committed(s, p.publisher.producer_id)[0] == st.frames_read - dropped, 30)
    frames, max_seq, _ = committed(s, p.publisher.producer_id)
    assert max_seq == st.frames_read and max_seq - frames == dropped  # the gap metric says the same


def produce_process(s: Settings, spool: Path, name: str, rate: int) -> subprocess.Popen[str]:
    env = env_for(s)
    env.update(
        TELEMETRY_PRODUCER__NAME=name,
        TELEMETRY_PRODUCER__SPOOL_DIR=str(spool),
        TELEMETRY_PRODUCER__SPOOL_FSYNC_INTERVAL_S="0.5",
        TELEMETRY_PRODUCER__BREAKER_OPEN_S="0.5",
        TELEMETRY_SIMULATE__RATE_HZ=str(rate),
        TELEMETRY_SIMULATE__DEVICES="1",
        TELEMETRY_SIMULATE__CHANNELS="2",
        TELEMETRY_HTTP__ENABLED="false",
        TELEMETRY_REDIS__CONNECT_TIMEOUT="1",
    )
    cmd = [sys.executable, "-m", "producers.cli", "simulate"]
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_producer_kill_9_during_outage_loses_at_most_one_fsync_interval_and_counts_it(
    settings: Settings, redis_server_factory: Any, tmp_path: Path
) -> None:
    rate, fsync_s = 200, 0.5
    server = redis_server_factory(*AOF)
    s = private_settings(server, settings)
    server.stop()
    first = produce_process(s, tmp_path, "victim", rate)
    wait_for(lambda: sum(1 for _ in tmp_path.rglob("*.seg")) and time.sleep(2) is None, 20)
    os.kill(first.pid, signal.SIGKILL)
    first.communicate(timeout=10)
    second = produce_process(s, tmp_path, "victim", rate)
    time.sleep(1.5)
    server.start()
    with running_writer(s):
        wait_for(lambda: not list(tmp_path.rglob("*.seg")), 30, what="spool replayed")
        log = stop_process(second)
        assert second.returncode == 0, log
        match = re.search(
            r"producer (\S+) resumes at seq (\d+): (\d+) spooled frames to replay, (\d+) frames lost", log
        )
        assert match, log
        producer, lost = match.group(1), int(match.group(4))
        read_total = int(re.search(r"read=(\d+)", log).group(1))  # type: ignore[union-attr]
        want = int(match.group(2)) - 1 + read_total - lost
        wait_for(lambda: committed(s, producer)[0] >= want, 30, what="all frames but the lost ones")
    frames, max_seq, _ = committed(s, producer)
    assert lost <= rate * fsync_s
    assert max_seq - frames == lost  # the loss is exactly the sequence gap the writer reports


@pytest.mark.parametrize("aof", [True, False], ids=["aof", "no-aof"])
def test_redis_restart_with_aof_loses_nothing_and_without_aof_loss_equals_gap_metric(
    settings: Settings, redis_server_factory: Any, aof: bool
) -> None:
    server = redis_server_factory(*(AOF if aof else ()))
    s = private_settings(server, settings)
    publisher = Publisher(Redis.from_url(server.url), s.redis.names, f"restart-{aof}/1")
    writer = start_writer(s, "restart-writer", {"TELEMETRY_HTTP__ENABLED": "false"})
    try:
        batch(publisher, 100)
        wait_for(lambda: committed(s, publisher.producer_id)[0] == 100, 30)
        os.kill(writer.pid, signal.SIGSTOP)  # so the next 50 frames are still unread when Redis dies
        batch(publisher, 50)
        lost = unread(publisher.redis, s)  # not yet delivered to the writer: what a restart without AOF loses
        assert 45 <= lost <= 50  # a read blocked before the SIGSTOP may still be answered with a few
        server.stop(signal.SIGKILL)
        server.start()
        os.kill(writer.pid, signal.SIGCONT)
        publisher.redis = Redis.from_url(server.url)
        batch(publisher, 30)
        wait_for(lambda: committed(s, publisher.producer_id)[1] == 180, 30, what="frames after the restart")
        time.sleep(0.5)
    finally:
        os.kill(writer.pid, signal.SIGCONT)
        out = stop_process(writer)
    frames, max_seq, _ = committed(s, publisher.producer_id)
    assert writer.returncode == 0, out
    assert max_seq - frames == (0 if aof else lost), (frames, max_seq, lost)  # the gap metric equals the true loss
    if not aof:
        assert "recreating at 0" in out  # NOGROUP noticed, group recreated by the writer itself


def unread(client: Redis, s: Settings) -> int:
    """Entries of the normal stream after the writer group's last-delivered ID."""
    key = s.redis.names.stream(Priority.NORMAL)
    group = next(g for g in client.xinfo_groups(key) if g["name"] == b"writer")
    return len(client.xrange(key, "(" + group["last-delivered-id"].decode(), "+"))


def batch(publisher: Publisher, n: int) -> None:
    from tests.integration.pipeline import frame

    publisher.stamp([frame("restart", i) for i in range(n)])
    publisher.send()
