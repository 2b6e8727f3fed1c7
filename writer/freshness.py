"""Freshness and backlog: the oldest unacknowledged entry per priority, and Redis memory. Read-only.

``oldest_unacked`` is the age of the oldest entry the writer group has not acknowledged: the
first pending one (XPENDING summary) or, if older, the first not yet delivered (XRANGE after the
group's last-delivered-id; every entry when there is no group yet). An entry's age comes from
its ID (the XADD time in ms): a forged ID ahead of the clock counts as age 0. ``redis_memory``
reads INFO memory (used_memory, maxmemory; 0 = no limit). ``families`` turns both, with a
FillEstimator, into Prometheus gauges for the writer's /metrics.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from redis import Redis
from redis.exceptions import RedisError, ResponseError

from common.fill import FillEstimator
from common.metrics import gauge
from common.streams import StreamNames, parse_entry_id, reply_text


def _oldest_ms(redis: Redis, key: str, group: str) -> int | None:
    """ms part of the oldest unacknowledged entry ID of ``key``; None when everything is acked."""
    candidates: list[int] = []
    last_delivered = None
    try:
        for g in redis.xinfo_groups(key):
            if reply_text(g["name"]) == group:
                last_delivered = reply_text(g["last-delivered-id"])
    except ResponseError:
        return None  # no such stream
    if last_delivered is not None:
        summary: Any = redis.xpending(key, group)
        if summary and summary.get("pending") and summary.get("min") is not None:
            candidates.append(parse_entry_id(summary["min"])[0])
        after = redis.xrange(key, min="(" + last_delivered, count=1)
    else:
        after = redis.xrange(key, count=1)
    if after:
        candidates.append(parse_entry_id(after[0][0])[0])
    return min(candidates) if candidates else None


def oldest_unacked(redis: Redis, names: StreamNames, now_ms: int | None = None) -> dict[str, float | None]:
    """Seconds since the oldest unacknowledged entry of each priority was added (None: nothing waits)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    out: dict[str, float | None] = {}
    for key in names.streams:
        ms = _oldest_ms(redis, key, names.group)
        out[names.priority_of(key).value] = None if ms is None else max(0, now_ms - ms) / 1000
    return out


def redis_memory(redis: Redis) -> tuple[int, int]:
    """(used_memory, maxmemory) in bytes; maxmemory 0 = no limit."""
    info: Any = redis.info("memory")
    return int(info["used_memory"]), int(info.get("maxmemory") or 0)


def writer_latency(url: str, timeout_s: float = 0.5) -> dict[str, dict[str, float]] | None:
    """Producer-to-commit latency per priority from a writer's ``/summary`` (None if it does not answer)."""
    import json
    import urllib.request
    from urllib.error import URLError

    try:
        with urllib.request.urlopen(url.rstrip("/") + "/summary", timeout=timeout_s) as resp:
            data = json.loads(resp.read())
    except (URLError, OSError, ValueError):
        return None
    writer = data.get("writer") if isinstance(data, dict) else None
    latency = writer.get("e2e_latency") if isinstance(writer, dict) else None
    return latency if isinstance(latency, dict) else None


def memory_view(prev: dict[str, Any] | None, cur: dict[str, Any]) -> str | None:
    """The status view's Redis memory line from two snapshots' ``redis_memory`` (pure); sets growth and full_s."""
    mem = cur.get("redis_memory")
    if not mem:
        return None
    old, dt = (prev or {}).get("redis_memory"), cur["at"] - (prev or {}).get("at", cur["at"])
    est = FillEstimator()
    if old:
        est.add(old["used"], old["max"], at=0.0)
    est.add(mem["used"], mem["max"], at=dt)
    mem["growth_bytes_s"], mem["full_s"] = est.rate(), est.seconds_until_full()
    text = f"redis memory {mem['used'] / 2**20:,.1f} MiB " + (
        f"of {mem['max'] / 2**20:,.0f} MiB" if mem["max"] else "(maxmemory not set: no time until full)"
    )
    if mem["growth_bytes_s"] is not None:
        text += f", {mem['growth_bytes_s'] / 1024:+,.1f} KiB/s"
    if mem["full_s"] is not None:
        text += ", not filling" if mem["full_s"] == float("inf") else f", full in {mem['full_s']:,.0f} s"
    return text


def families(redis: Redis, names: StreamNames, memory: FillEstimator, up: GaugeMetricFamily) -> Iterator[Metric]:
    """The freshness and memory gauges (each part marks collector_up{part} 1 or 0)."""
    oldest = gauge(
        "stream_oldest_unacked_age_seconds",
        "Age of the oldest entry not yet acknowledged by the writer group (0: nothing waits).",
        ["priority"],
    )
    try:
        ages = oldest_unacked(redis, names)
    except RedisError:
        up.add_metric(["redis_freshness"], 0)
    else:
        up.add_metric(["redis_freshness"], 1)
        for prio, age in ages.items():
            oldest.add_metric([prio], 0.0 if age is None else age)
    yield oldest
    used = gauge("redis_memory_used_bytes", "Redis used_memory (INFO memory).")
    limit = gauge("redis_memory_max_bytes", "Redis maxmemory (0: no limit).")
    growth = gauge("redis_memory_growth_bytes_per_second", "Change of used_memory over the last minute of scrapes.")
    full = gauge(
        "redis_memory_full_seconds", "Seconds until used_memory reaches maxmemory at its growth (+Inf: not growing)."
    )
    try:
        used_b, max_b = redis_memory(redis)
    except RedisError:  # the ACL user may lack +info
        up.add_metric(["redis_memory"], 0)
    else:
        up.add_metric(["redis_memory"], 1)
        memory.add(used_b, max_b)
        used.add_metric([], used_b)
        limit.add_metric([], max_b)
        rate, until = memory.rate(), memory.seconds_until_full()
        if rate is not None:
            growth.add_metric([], rate)
        if until is not None:
            full.add_metric([], until)
    yield from (used, limit, growth, full)
