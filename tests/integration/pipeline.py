"""Helpers for integration tests: publish synthetic frames, run writers as real processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime

from redis import Redis

from common.publish import Publisher, new_producer_id
from common.schema import Channel, Frame, Priority
from common.settings import Settings
from producers.base import ProducerStats, run_producer
from producers.simulate import SimulateSource
from producers.validate import RangeValidator
from tests.conftest import REPO, env_for


def produce_simulated(
    settings: Settings,
    redis: Redis,
    count: int,
    devices: int = 2,
    channels: int = 8,
    name: str = "sim",
    priority: Priority = Priority.NORMAL,
) -> ProducerStats:
    """Run one simulate producer flat out until ``count`` frames are published."""
    source = SimulateSource(devices, channels, rate_hz=0, count=count, priority=priority, device_prefix=name)
    publisher = Publisher(redis, settings.redis.names, new_producer_id(name))
    return run_producer(source, publisher, RangeValidator(settings.producer.ranges), threading.Event())


def frame(device: str, n: int, observed_at: datetime | None = None, **values: float) -> Frame:
    now = datetime.now(UTC)
    chans = tuple(Channel(k, v, "") for k, v in (values or {"x": float(n)}).items())
    return Frame("simulate", device, observed_at or now, now, n, chans)


def publish(settings: Settings, redis: Redis, frames: Sequence[Frame], name: str = "test") -> Publisher:
    publisher = Publisher(redis, settings.redis.names, new_producer_id(name))
    publisher.stamp(frames)
    publisher.send()
    return publisher


def start_writer(settings: Settings, consumer: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``telemetry-write`` as a real process, logging to a pipe."""
    env = env_for(settings)
    env.update(extra_env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "writer", "--consumer", consumer],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop_process(
    proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 20, wait_first: float = 0
) -> str:
    """Its output, after it exits by itself within ``wait_first`` s or else is sent ``sig``.

    The process never outlives the call: if it ignores ``sig`` for ``timeout`` s it is killed.
    """
    if wait_first:
        with contextlib.suppress(subprocess.TimeoutExpired):
            out, _ = proc.communicate(timeout=wait_first)
            return out
    if proc.poll() is None:
        os.kill(proc.pid, sig)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=10)
    return out
