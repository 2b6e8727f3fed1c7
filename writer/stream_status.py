"""stream_status(): length, lag and pending per priority stream and consumer, as plain data.

Read-only Redis calls (XLEN, XINFO STREAM, XINFO GROUPS, XINFO CONSUMERS); used by
``telemetry-admin streams|status`` and the writer's metrics collector.
"""

from __future__ import annotations

import time
from typing import Any

from redis import Redis
from redis.exceptions import ResponseError

from common.streams import KNOWN_GROUPS, StreamNames, parse_entry_id
from writer.stream_ids import AHEAD_TOLERANCE_MS


def _text(v: Any) -> Any:
    return v.decode() if isinstance(v, bytes) else v


def stream_status(redis: Redis, names: StreamNames, now_ms: int | None = None) -> dict[str, Any]:
    """Per priority stream: length, lag, pending, entries ever added (XINFO STREAM ``entries-added``,
    Redis 7+), consumers, groups that are not the writer's, and whether the last entry ID is ahead
    of the clock (``now_ms``, default this host's) by more than ``stream_ids.AHEAD_TOLERANCE_MS``."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    rows = []
    for key in names.streams:
        length = int(redis.xlen(key))
        lag: int | None = None
        pending = 0
        added: int | None = None
        consumers: list[dict[str, Any]] = []
        foreign: list[str] = []
        ahead = False
        try:
            info = redis.xinfo_stream(key)
            added = None if info.get("entries-added") is None else int(info["entries-added"])
            ahead = parse_entry_id(info.get("last-generated-id"))[0] > now_ms + AHEAD_TOLERANCE_MS
            for group in redis.xinfo_groups(key):
                if _text(group["name"]) != names.group:
                    if _text(group["name"]) not in KNOWN_GROUPS:  # the run detector's group is ours
                        foreign.append(_text(group["name"]))
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
                "foreign_groups": foreign,
                "id_ahead": ahead,
            }
        )
    return {"streams": rows, "deadletter": int(redis.xlen(names.deadletter))}
