"""Trim priority streams, deleting only entries every known group has acknowledged.

For each stream the safe point is the writer group's oldest pending entry, or just past its last
delivered ID when nothing is pending; ``XTRIM MINID`` removes only entries below it. Where the
run detector's group (``runs``, telemetry-runs) exists too, the safe point is the lower of the
two groups' points, so the detector never misses an entry (a stopped detector then holds entries
back: retire it with XGROUP DESTROY). Groups the project did not create (``XGROUP CREATE … audit
0`` with a stolen writer password, or a forgotten consumer of someone's) are ignored: they would
pin the trim point forever and fill Redis. ``foreign_groups`` lists them so the writer logs an
error and exports a metric. Entries not yet delivered to a group are never trimmed. One pass
repeats the approximate ``XTRIM`` while calls still remove entries, so what Redis holds of
acknowledged entries stays at a few seconds of ingest however fast producers write. It also
drops the dead-letter index members of entries no longer in their stream. ``unread_deletions``
notices the opposite: someone else deleting entries the group has not read (``XADD ... MAXLEN``
with a stolen producer password, a manual ``XTRIM``). No PostgreSQL here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis import Redis
from redis.exceptions import ResponseError

from common.streams import KNOWN_GROUPS, StreamNames, parse_entry_id, reply_text


def foreign_groups(redis: Redis, names: StreamNames, keys: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """(stream, group) for every consumer group on the priority streams other than the known ones."""
    out = []
    for key in keys or names.streams:
        try:
            groups = redis.xinfo_groups(key)
        except ResponseError:  # no such stream yet
            continue
        out += [(key, reply_text(g["name"])) for g in groups if reply_text(g["name"]) not in KNOWN_GROUPS]
    return out


def safe_trim_point(redis: Redis, key: str, group_name: str | tuple[str, ...]) -> str | None:
    """The MINID below which every entry of ``key`` is acknowledged by the group ``group_name`` (by
    every existing one of several); None when the (first) group does not exist."""
    wanted = (group_name,) if isinstance(group_name, str) else group_name
    groups = [g for g in redis.xinfo_groups(key) if reply_text(g["name"]) in wanted]
    if not any(reply_text(g["name"]) == wanted[0] for g in groups):
        return None
    points = []
    for group in groups:
        name = group["name"]
        pending = redis.xpending(key, name)
        if pending["pending"]:
            points.append(parse_entry_id(pending["min"]))
        else:
            ms, seq = parse_entry_id(group["last-delivered-id"])
            points.append((ms, seq + 1))
    ms, seq = min(points)
    return f"{ms}-{seq}"


MAX_CALLS_PER_PASS = 1000
"""XTRIM calls per stream in one pass (each removes at most ~10,000 entries): 10 million entries."""


def trim_acked(redis: Redis, names: StreamNames, keys: Sequence[str] | None = None, exact: bool = False) -> int:
    """Trim the priority streams ``keys`` (default all) to their safe point; return entries removed.

    Approximate by default (``XTRIM MINID ~``): Redis then removes only whole macro-nodes, at
    most 10,000 entries a call, so one call never blocks the server for long (an exact trim of
    a big backlog stalls every other client, critical traffic included). The call is repeated
    while it still removes entries, so a pass keeps up with any ingest rate. It never removes
    an entry at or past the safe point either way.
    """
    removed = 0
    for key in keys or names.streams:
        point = safe_trim_point(redis, key, KNOWN_GROUPS)
        if point is None or point == "0-1":
            continue
        for _ in range(MAX_CALLS_PER_PASS):
            n = int(redis.xtrim(key, minid=point, approximate=not exact))
            removed += n
            if n == 0 or exact:
                break
        prune_deadletter_index(redis, names, key, point)
    return removed


def prune_deadletter_index(redis: Redis, names: StreamNames, key: str, point: str) -> int:
    """Forget dead-letter index members of ``key``'s entries that are no longer in the stream.

    Only looks at the stream (XRANGE COUNT 1, for its first entry ID) when the index holds a
    member below the trim point, so a pass without old dead letters costs one ZRANGEBYLEX.
    """
    prefix = names.priority_of(key).value + ":"
    oldest = redis.zrangebylex(names.deadletter_index, f"[{prefix}", f"({prefix}{_padded(point)}", start=0, num=1)
    if not oldest:
        return 0
    first: list[tuple[bytes, Any]] = redis.xrange(key, count=1)  # type: ignore[assignment]
    upto = _padded(first[0][0]) if first else _padded(point)
    return int(redis.zremrangebylex(names.deadletter_index, f"[{prefix}", f"({prefix}{upto}"))


def _padded(raw: bytes | str) -> str:
    ms, seq = parse_entry_id(raw)
    return f"{ms:020d}-{seq:020d}"


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
