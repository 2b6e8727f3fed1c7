"""The pipeline unchanged on a real 3-master Redis Cluster on loopback, with two writer replicas."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from common.publish import Publisher, new_producer_id
from common.redis_client import connect_redis
from common.schema import Priority
from common.settings import RedisSettings, Settings
from producers.base import run_producer
from producers.simulate import SimulateSource
from producers.validate import RangeValidator
from tests.conftest import unavailable
from tests.helpers import pg_query, running_writer, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def free_port() -> int:
    """A free port whose cluster bus port (+10000) is free too; Redis wants the port <= 55535."""
    import random

    for _ in range(200):
        port = random.randint(20000, 55535)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[int]]:
    if not shutil.which("redis-server") or not shutil.which("redis-cli"):
        unavailable("redis-server/redis-cli not installed")
    ports = [free_port() for _ in range(3)]
    procs = []
    for port in ports:
        d = tmp_path / str(port)
        d.mkdir()
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", str(d / "nodes.conf"), "--dir", str(d), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))  # fmt: skip
    try:
        for port in ports:
            wait_for(lambda p=port: _ping(p), 10, what=f"cluster node {port}")  # type: ignore[misc]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports], "--cluster-replicas", "0",
             "--cluster-yes"], check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        wait_for(lambda: _cluster_ok(ports[0]), 20, what="cluster_state:ok")
        yield ports
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)


def _cluster_ok(port: int) -> bool:
    out = subprocess.run(["redis-cli", "-p", str(port), "cluster", "info"], capture_output=True, text=True).stdout
    return "cluster_state:ok" in out


def _ping(port: int) -> bool:
    try:
        return bool(Redis(port=port, socket_connect_timeout=0.5).ping())
    except Exception:
        return False


def test_two_writers_on_a_3_master_cluster_store_exactly_once(cluster: list[int], settings: Settings) -> None:
    csettings = settings.model_copy(update={"redis": RedisSettings(
        url=f"redis://127.0.0.1:{cluster[1]}/0", namespace=settings.redis.namespace, cluster=True)})  # fmt: skip
    names = csettings.redis.names
    client = connect_redis(csettings.redis)
    keys = (*names.streams, names.deadletter, names.deadletter_index)
    nodes = {client.cluster_keyslot(k) for k in keys}  # type: ignore[attr-defined]
    assert len(nodes) == 1, "all keys must share one hash slot"
    frames_per_producer, producers = 3000, 3

    def produce(i: int) -> None:
        src = SimulateSource(devices=3, channels=4, rate_hz=0, count=frames_per_producer, device_prefix=f"c{i}")
        pub = Publisher(connect_redis(csettings.redis), names, new_producer_id(f"cl{i}"))
        run_producer(src, pub, RangeValidator(csettings.producer.ranges), threading.Event())

    with running_writer(csettings, consumer="wa") as a, running_writer(csettings, consumer="wb") as b:
        threads = [threading.Thread(target=produce, args=(i,)) for i in range(producers)]
        for t in threads:
            t.start()
        client.xadd(names.stream(Priority.NORMAL), {"hello": "world"})  # poison: the dead-letter script on a cluster
        for t in threads:
            t.join(120)
        total = frames_per_producer * producers
        wait_for(lambda: a.frames + b.frames >= total, 120, what="all frames committed")
        wait_for(lambda: client.xlen(names.deadletter) == 1, 30, what="one dead letter")
        time.sleep(0.5)
        assert a.frames > 0 and b.frames > 0, "both replicas should share the work"
        assert a.duplicates + b.duplicates == 0
    rows, distinct = pg_query(csettings, "SELECT count(*), count(DISTINCT (producer, seq, channel)) FROM readings")[0]
    assert rows == distinct == total * 4
    assert pg_query(csettings, "SELECT sum(max_seq - frames) FROM producer_progress")[0][0] == 0
