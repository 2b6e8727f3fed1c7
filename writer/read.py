"""Reading the priority streams as a consumer group: create the group, read, reclaim.

Builds the XREADGROUP / XAUTOCLAIM calls and turns replies into Entry objects; decoding
the fields into frames is common/schema.py's decode (called by writer/loop.py). No PostgreSQL here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis import Redis
from redis.exceptions import ResponseError

from common.schema import Priority
from common.streams import StreamNames

if TYPE_CHECKING:
    from writer.pg_copy import Packed

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Entry:
    """One raw stream entry as read: its stream, ID and fields (bytes, undecoded)."""

    stream: str
    id: bytes
    fields: dict[bytes, bytes]
    priority: Priority
    packed: Packed | None = None
    """writer/pg_copy.py ``pack`` of the frame decoded from ``fields``, set by the lane."""

    @property
    def size(self) -> int:
        """Bytes of the entry's field names and values (what MAX_ENTRY_BYTES bounds)."""
        fields = self.fields
        return sum(map(len, fields)) + sum(map(len, fields.values()))  # C-level passes (per entry, hot path)


def ensure_groups(redis: Redis, names: StreamNames, keys: Sequence[str] | None = None) -> None:
    """Create the writer group at ID 0 (never ``$``: that skips backlog) where it is missing.

    Looks first (XINFO GROUPS) and creates only a missing group: XGROUP CREATE needs memory and
    Redis at ``maxmemory`` (noeviction) refuses it before it would answer BUSYGROUP, so a writer
    restarted while Redis is full must not ask for what already exists.
    """
    for key in keys or names.streams:
        try:
            groups = redis.xinfo_groups(key)
        except ResponseError as exc:
            if "no such key" not in str(exc).lower():
                raise
            groups = None
        if groups and any(_text(g["name"]) == names.group for g in groups):
            continue
        try:
            redis.xgroup_create(key, names.group, id="0", mkstream=groups is None)
            logger.info("created consumer group %s on %s at 0", names.group, key)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):  # another replica created it meanwhile
                raise


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def is_nogroup(exc: Exception) -> bool:
    """True for the error Redis gives when the group or stream vanished (restart without AOF)."""
    return isinstance(exc, ResponseError) and "NOGROUP" in str(exc)


def read_entries(
    redis: Redis,
    names: StreamNames,
    consumer: str,
    count: int,
    block_ms: int | None,
    pending: bool = False,
    keys: Sequence[str] | None = None,
) -> list[Entry]:
    """XREADGROUP over the priority streams ``keys`` (default all; critical first).

    ``pending`` re-reads our own pending entries instead of new ones. ``block_ms`` None: do
    not block (what is there now; never ``BLOCK 0``, which waits forever).
    """
    start = "0" if pending else ">"
    streams: dict[Any, Any] = dict.fromkeys(keys or names.streams, start)
    reply = redis.xreadgroup(names.group, consumer, streams, count=count, block=None if pending else block_ms)
    return _entries(names, reply)


def _entries(names: StreamNames, reply: Any) -> list[Entry]:
    out: list[Entry] = []
    if not reply:
        return out
    items = reply.items() if isinstance(reply, dict) else reply
    streams = []
    for key, messages in items:
        if isinstance(messages, list) and messages and isinstance(messages[0], list):
            messages = messages[0]  # RESP3 shape
        stream = key.decode() if isinstance(key, bytes) else key
        streams.append((names.priority_of(stream), stream, messages))
    streams.sort(key=lambda s: _ORDER[s[0]])  # per stream, not per entry: each stream's entries stay in order
    for priority, stream, messages in streams:
        # fields None: an entry deleted while pending
        out.extend(Entry(stream, entry_id, fields, priority) for entry_id, fields in messages if fields is not None)
    return out


_ORDER = {p: i for i, p in enumerate(Priority)}


def reclaim(
    redis: Redis, names: StreamNames, consumer: str, min_idle_ms: int, count: int, keys: Sequence[str] | None = None
) -> list[Entry]:
    """XAUTOCLAIM entries idle longer than ``min_idle_ms`` on any consumer (a dead replica's)."""
    out: list[Entry] = []
    for key in keys or names.streams:
        start = "0-0"
        while True:
            reply = redis.xautoclaim(key, names.group, consumer, min_idle_ms, start_id=start, count=count)
            next_start, messages = reply[0], reply[1]
            priority = names.priority_of(key)
            out.extend(Entry(key, eid, fields, priority) for eid, fields in messages if fields is not None)
            if next_start in (b"0-0", "0-0") or len(out) >= count:
                break
            start = next_start
    if out:
        logger.info("reclaimed %d entries idle > %d ms", len(out), min_idle_ms)
    return out
