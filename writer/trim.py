"""Trim priority streams, deleting only entries every consumer group has acknowledged.

For each stream the safe point is the oldest pending entry of any group, or just past the
last delivered ID when nothing is pending; ``XTRIM MINID`` removes only entries below it.
Entries not yet delivered to a group are never trimmed. No PostgreSQL here.
"""

from __future__ import annotations

from redis import Redis

from common.streams import StreamNames


def _parse_id(raw: bytes | str) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def safe_trim_point(redis: Redis, key: str) -> str | None:
    """The MINID below which every entry of ``key`` is acknowledged by every group."""
    groups = redis.xinfo_groups(key)
    if not groups:
        return None
    points = []
    for group in groups:
        name = group["name"]
        pending = redis.xpending(key, name)
        if pending["pending"]:
            points.append(_parse_id(pending["min"]))
        else:
            ms, seq = _parse_id(group["last-delivered-id"])
            points.append((ms, seq + 1))
    ms, seq = min(points)
    return f"{ms}-{seq}"


def trim_acked(redis: Redis, names: StreamNames) -> int:
    """Trim every priority stream to its safe point; return the number of entries removed."""
    removed = 0
    for key in names.streams:
        point = safe_trim_point(redis, key)
        if point is not None and point != "0-1":
            removed += int(redis.xtrim(key, minid=point, approximate=False))
    return removed
