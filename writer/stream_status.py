"""stream_status(): length, lag and pending per priority stream and consumer, as plain data.

Read-only Redis calls (XLEN, XINFO STREAM, XINFO GROUPS, XINFO CONSUMERS); used by
``telemetry-admin streams|status`` and the writer's metrics collector.
"""

from __future__ import annotations

from typing import Any

from redis import Redis
from redis.exceptions import ResponseError

from common.streams import StreamNames


def _text(v: Any) -> Any:
    return v.decode() if isinstance(v, bytes) else v


def _entries_added(redis: Redis, key: str) -> int | None:
    """XINFO STREAM ``entries-added`` (Redis 7+): every XADD ever, trimmed or not; None before 7."""
    info = redis.xinfo_stream(key)
    value = info.get("entries-added")
    return None if value is None else int(value)


def stream_status(redis: Redis, names: StreamNames) -> dict[str, Any]:
    rows = []
    for key in names.streams:
        length = int(redis.xlen(key))
        lag: int | None = None
        pending = 0
        added: int | None = None
        consumers: list[dict[str, Any]] = []
        try:
            added = _entries_added(redis, key)
            for group in redis.xinfo_groups(key):
                if _text(group["name"]) != names.group:
                    continue
                lag = group.get("lag")
                pending = int(group["pending"])
                for c in redis.xinfo_consumers(key, names.group):
                    consumers.append(
                        {"name": _text(c["name"]), "pending": int(c["pending"]), "idle_ms": int(c["idle"])}
                    )
        except ResponseError:
            pass  # stream does not exist yet
        rows.append(
            {
                "stream": key,
                "length": length,
                "lag": lag,
                "pending": pending,
                "entries_added": added,
                "consumers": consumers,
            }
        )
    return {"streams": rows, "deadletter": int(redis.xlen(names.deadletter))}
