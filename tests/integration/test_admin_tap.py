"""``telemetry-admin tap`` against the real Redis while a real writer consumes the same frames.

The tap must show every frame, and leave the writer group's counters (entries-read, pending,
last-delivered-id, consumers) exactly as the writer alone leaves them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from redis import Redis

from common.publish import Publisher, new_producer_id
from common.schema import Channel, Frame, Priority
from common.settings import Settings
from tests.conftest import REPO, env_for
from tests.helpers import count_readings, running_writer, wait_for

pytestmark = pytest.mark.integration


def frames(device: str, n: int, priority: Priority) -> list[Frame]:
    now = datetime.now(UTC)
    return [
        Frame(
            "simulate",
            device,
            now,
            now,
            i,
            (Channel("rpm", 1000.0 + i, "rpm"), Channel("temp", 20.5, "degC")),
            priority=priority,
        )
        for i in range(n)
    ]


def start_tap(settings: Settings, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "admin.cli", "tap", "--timeout", "60", *args],
        env=env_for(settings),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    first = proc.stderr.readline()  # the tap has resolved `$`: what is published from now on is shown
    assert first.startswith("tap: following"), first
    return proc


def finish(proc: subprocess.Popen[str]) -> tuple[list[dict[str, Any]], str]:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return [json.loads(line) for line in out.splitlines()], err


def group_state(redis: Redis, settings: Settings) -> dict[str, tuple[Any, ...]]:
    names = settings.redis.names
    state = {}
    for key in names.streams:
        if not redis.exists(key):
            continue
        groups = redis.xinfo_groups(key)
        state[key] = tuple(
            (g["name"], g["pending"], g["entries-read"], g["last-delivered-id"], g["consumers"]) for g in groups
        )
    return state


def test_tap_shows_frames_the_writer_consumes_and_leaves_the_group_alone(settings: Settings, redis: Redis) -> None:
    names = settings.redis.names
    pub = Publisher(redis, names, new_producer_id("taptest"))
    redis.xadd(names.stream(Priority.NORMAL), {"before": "the tap"})  # older than `$`: never shown
    with running_writer(settings):
        tap = start_tap(settings, "--count", "30")
        pub.stamp(frames("dev-a", 20, Priority.NORMAL) + frames("dev-b", 10, Priority.CRITICAL))
        redis.xadd(names.stream(Priority.HIGH), {"not": "a frame"})
        pub.send()
        shown, notices = finish(tap)
        wait_for(lambda: count_readings(settings) == 60, 30, what="writer commits 30 frames x 2 channels")
    assert len(shown) == 30
    assert {(f["device"], f["priority"]) for f in shown} == {("dev-a", "normal"), ("dev-b", "critical")}
    assert sorted(f["seq"] for f in shown) == list(range(1, 31))
    a1 = next(f for f in shown if f["device"] == "dev-a" and f["seq"] == 1)
    assert a1["channels"] == {"rpm": {"value": 1000.0, "unit": "rpm", "quality": "good"},
                              "temp": {"value": 20.5, "unit": "degC", "quality": "good"}}  # fmt: skip
    assert a1["stream"] == names.stream(Priority.NORMAL) and a1["id"].count("-") == 1
    assert "undecodable entry" in notices and "missing field 'v'" in notices
    # The writer alone read everything: 1 old + 20 normal, 10 critical, 1 garbage high; all acked.
    after = group_state(redis, settings)
    assert after[names.stream(Priority.NORMAL)][0][:3] == (b"writer", 0, 21)
    assert after[names.stream(Priority.CRITICAL)][0][:3] == (b"writer", 0, 10)
    assert after[names.stream(Priority.HIGH)][0][:3] == (b"writer", 0, 1)
    assert all(len(groups) == 1 for groups in after.values())  # the tap made no group


def test_tap_without_a_writer_changes_no_group_counter(settings: Settings, redis: Redis) -> None:
    names = settings.redis.names
    from writer.read import ensure_groups

    ensure_groups(redis, names)  # what a writer does first (then it stops; the group stays)
    pub = Publisher(redis, names, new_producer_id("taptest"))
    before = group_state(redis, settings)
    assert before  # every priority stream has its group
    tap = start_tap(settings, "--count", "3", "--device", "dev-b*", "--channel", "rpm", "--priority", "low")
    pub.stamp(frames("dev-a", 5, Priority.LOW) + frames("dev-b1", 3, Priority.LOW) + frames("dev-b2", 2, Priority.HIGH))
    pub.send()
    shown, notices = finish(tap)
    assert [(f["device"], list(f["channels"])) for f in shown] == [("dev-b1", ["rpm"])] * 3
    assert group_state(redis, settings) == before  # pending, entries-read, last-delivered-id, consumers
    assert redis.xinfo_groups(names.stream(Priority.LOW))[0]["lag"] == 8  # unread by the group, as before
    assert "3 frames shown, 5 filtered out" in notices


def test_tap_bad_priority_is_a_usage_error(settings: Settings) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "admin.cli", "tap", "--priority", "urgent"],
        env=env_for(settings), cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2 and "invalid choice: 'urgent'" in proc.stderr


def test_tap_survives_a_redis_restart_and_misses_nothing(
    settings: Settings, redis_server_factory: Callable[..., Any]
) -> None:
    """A private redis-server (append-only file: entries survive the restart) stops under the tap."""
    import threading

    server = redis_server_factory("--appendonly", "yes")
    private = settings.model_copy(update={"redis": settings.redis.model_copy(update={"url": server.url})})
    client = Redis.from_url(server.url)
    pub = Publisher(client, private.redis.names, new_producer_id("outage"))
    tap = start_tap(private, "--count", "4")
    notices: list[str] = []
    assert tap.stderr is not None
    reader = threading.Thread(target=lambda: notices.extend(iter(tap.stderr.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    pub.stamp(frames("dev", 2, Priority.NORMAL))
    pub.send()
    client.close()
    server.stop()  # SIGTERM: the append-only file is flushed
    wait_for(lambda: any("retrying" in n for n in notices), 30, what="the tap's notice of the lost link")
    server.start()
    client = Redis.from_url(server.url)
    pub.redis = client
    pub.stamp(frames("dev", 2, Priority.NORMAL))
    pub.send()
    assert tap.stdout is not None
    out = tap.stdout.read()  # until the tap exits after 4 frames (stderr is drained by the reader)
    tap.wait(60)
    reader.join(10)
    tap.stdout.close()
    tap.stderr.close()
    client.close()
    assert tap.returncode == 0, notices
    shown = [json.loads(line) for line in out.splitlines()]
    assert [f["seq"] for f in shown] == [1, 2, 3, 4]  # each once: it went on from the last entry it printed
    assert any(n.startswith("tap: Redis:") for n in notices)
