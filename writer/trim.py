"""Trim priority streams, deleting only entries every consumer group has acknowledged.

For each stream the safe point is the oldest pending entry of any group, or just past the
last delivered ID when nothing is pending; ``XTRIM MINID`` removes only entries below it.
Entries not yet delivered to a group are never trimmed. ``unread_deletions`` notices the
opposite: someone else deleting entries the group has not read (``XADD ... MAXLEN`` with a
stolen producer password, a manual ``XTRIM``). No PostgreSQL here.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def trim_acked(redis: Redis, names: StreamNames, keys: Sequence[str] | None = None, exact: bool = False) -> int:
    """Trim the priority streams ``keys`` (default all) to their safe point; return entries removed.

    Approximate by default (``XTRIM MINID ~``): Redis then removes only whole macro-nodes, at
    most 10,000 entries a call, so a trim never blocks the server for long (an exact trim of a
    big backlog stalls every other client, critical traffic included). It never removes an
    entry at or past the safe point either way.
    """
    removed = 0
    for key in keys or names.streams:
        point = safe_trim_point(redis, key)
        if point is not None and point != "0-1":
            removed += int(redis.xtrim(key, minid=point, approximate=not exact))
    return removed


def unread_deletions(redis: Redis, names: StreamNames, keys: Sequence[str] | None = None) -> list[str]:
    """Priority streams where entries were deleted before the writer group read them.

    The group's ``lag`` counts entries added but not yet delivered; if it exceeds what the
    stream still holds, some were deleted unread (Redis 7.0 does not mark MAXLEN trims in
    ``max-deleted-entry-id``). A null lag means the same (XDEL past the group's position).
    Our own trimming never deletes past the group's position. A deletion of only part of
    the undelivered entries is not always seen here; the sequence-gap metric
    (``producer_progress``) counts every lost frame either way.
    """
    hit = []
    for key in keys or names.streams:
        for group in redis.xinfo_groups(key):
            name = group["name"]
            if (name.decode() if isinstance(name, bytes) else name) != names.group:
                continue
            lag = group.get("lag", 0)
            if lag is None or lag > int(redis.xlen(key)):
                hit.append(key)
    return hit
