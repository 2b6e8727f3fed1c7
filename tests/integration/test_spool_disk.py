"""The spool on a small or read-only filesystem (issue 12, findings 4 and 6).

A real tmpfs is mounted for each test (root only; skipped with a message elsewhere, a failure
under CI) and always unmounted. Redis is a private redis-server (tests.integration.servers),
stopped for the outage; the shared servers are never touched.

* Full disk: a producer whose spool fills a 4 MiB tmpfs during a Redis outage never exits,
  counts every frame it could not keep, and restarted on the still-full disk replays first.
  ``TELEMETRY_TEST_OUTAGE_S=60`` holds the outage that long and prints the loss figures.
* Read-only: a producer whose spool directory is read-only starts, says so and runs without it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from common.breaker import Breaker
from common.publish import Publisher
from common.schema import Priority
from common.settings import Settings
from producers.base import ProducerStats, run_producer
from producers.cli import produce
from producers.simulate import SimulateSource
from producers.spool import Spool
from producers.validate import RangeValidator
from tests.conftest import settings_for, unavailable
from tests.helpers import pg_query, running_writer, wait_for

pytestmark = pytest.mark.integration

OUTAGE_S = float(os.environ.get("TELEMETRY_TEST_OUTAGE_S", "0"))


@contextmanager
def tmpfs(path: Path, size: str = "4m") -> Iterator[Callable[[str], None]]:
    """Mount a tmpfs of ``size`` at ``path``; yields ``remount(options)``; always unmounted."""
    path.mkdir(parents=True, exist_ok=True)
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mount.returncode != 0:
        unavailable(f"cannot mount a tmpfs (needs root): {mount.stderr.decode(errors='replace').strip()}")

    def remount(options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True, capture_output=True)

    try:
        yield remount
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=True)


class Producer:
    """run_producer in a thread: 2 simulated devices x 8 channels, spool in ``folder``."""

    def __init__(self, s: Settings, folder: Path, rate: float) -> None:
        self.redis = Redis.from_url(s.redis.url, socket_timeout=2, socket_connect_timeout=1)
        self.source = SimulateSource(2, 8, rate_hz=rate, device_prefix="full")
        self.publisher = Publisher(self.redis, s.redis.names, "full-disk/run1")
        self.stats, self.stop = ProducerStats(), threading.Event()
        # max_bytes far above the filesystem: the limit must come from the free space.
        self.spool = Spool(folder, 1 << 30, 64 << 10, fsync_interval_s=0.2)
        kwargs = {"spool": self.spool, "stats": self.stats, "redis_breaker": Breaker("redis", 2, 0.5, 1)}
        args = (self.source, self.publisher, RangeValidator(s.producer.ranges), self.stop)
        self.error: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, args=args, kwargs={**kwargs, "stop_grace": 1}, daemon=True)
        self.thread.start()

    def _run(self, *args: Any, **kwargs: Any) -> None:
        try:
            run_producer(*args, **kwargs)
        except BaseException as exc:
            self.error.append(exc)
            raise

    def finish(self) -> ProducerStats:
        assert self.thread.is_alive() and not self.error, self.error  # it never exited on its own
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive() and not self.error, self.error
        return self.stats


def test_full_spool_disk_during_an_outage_counts_every_loss_and_replays_first_after_restart(
    settings: Settings, redis_server_factory: Any, tmp_path: Path
) -> None:
    server = redis_server_factory("--appendonly", "yes")
    s = settings_for(server.url, settings.postgres.dsn, settings.redis.namespace, settings.postgres.schema_name)
    folder = tmp_path / "spoolfs"
    with tmpfs(folder, "4m"):
        server.stop(signal.SIGKILL)
        t0 = time.monotonic()
        p = Producer(s, folder / "p", rate=300)
        wait_for(lambda: sum(p.stats.dropped.values()) >= 200 or p.error, 60, what="the spool filesystem full")
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - t0)))
        first = p.finish()
        lost = sum(first.dropped.values())
        kept = first.spool_records
        assert first.frames_read == kept + lost and first.frames_published == 0  # every frame accounted for
        assert set(first.dropped) <= {("spool_full", "normal"), ("unsent_at_exit", "normal")}
        assert first.spool_full_writes >= 1 or first.spool_records > 0
        print(
            f"\nfull-disk outage {time.monotonic() - t0:.0f}s, 4 MiB tmpfs, 2x8 channels at 300 Hz: "
            f"read {first.frames_read} frames, kept {kept}, lost {lost} ({dict(first.dropped)})"
        )
        server.start()  # restart on the still-full disk, Redis healthy
        with running_writer(s):
            q = Producer(s, folder / "p", rate=50)
            wait_for(lambda: q.stats.frames_replayed >= kept, 60, what="the old spool replayed")
            second = q.finish()
            # Replayed before appending: on the full disk an append first would have evicted old frames.
            assert second.frames_replayed >= kept and not second.dropped and second.spool_records == 0
            total = first.frames_read + second.frames_read
            query = "SELECT coalesce(sum(frames), 0), coalesce(max(max_seq), 0) FROM producer_progress"
            wait_for(lambda: pg_query(s, query)[0][0] == total - lost, 60, what="every kept frame committed")
            frames, max_seq = pg_query(s, query)[0]
            assert max_seq - frames == lost  # the writer's gap metric says the same


def test_read_only_spool_filesystem_runs_without_spool_and_says_so(
    settings: Settings, redis: Redis, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "rofs"
    with tmpfs(folder, "1m") as remount:
        (folder / "spool").mkdir()
        remount("ro")  # what ext4 errors=remount-ro does after an SD-card error
        s = settings.model_copy(
            update={
                "producer": settings.producer.model_copy(update={"spool_dir": folder / "spool", "name": "ro-test"}),
                "simulate": settings.simulate.model_copy(update={"count": 40, "rate_hz": 0.0, "devices": 1}),
                "http": settings.http.model_copy(update={"enabled": False}),
            }
        )
        stats = produce("simulate", s, threading.Event())
    assert not stats.spool_available and stats.frames_published == 40 and stats.frames_unsent == 0
    assert redis.xlen(s.redis.names.stream(Priority.NORMAL)) == 40
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("WITHOUT a spool" in m and "Read-only" in m for m in errors), errors
