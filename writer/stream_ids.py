"""Entry IDs from the future on a priority stream: detection (writer) and repair (telemetry-admin).

Redis ACLs cannot filter arguments, so a producer credential may ``XADD`` with an explicit ID.
``XADD {ns}:critical 18446744073709551615-18446744073709551615 …`` makes every later ``XADD *``
fail ("The stream has exhausted the last possible ID"): one stolen password stops a priority for
every producer. Redis cannot refuse it, so:

* the writer checks each stream's ``last-generated-id`` against its clock with the trim pass
  (``ids_ahead``) and logs an error and sets a metric within seconds;
* ``telemetry-admin streams repair`` (``repair``) moves every entry whose ID is ahead of the
  clock by more than the tolerance to the dead-letter stream (replay gives it a fresh ``*`` ID;
  the idempotency ledger drops what was already committed), deletes it, and sets the stream's
  last ID (``XSETID``) and the writer group's position (``XGROUP SETID``) back to the newest
  genuine entry, so ``XADD *`` works again and nothing genuine is lost or redelivered.

IDs ahead of the clock also follow a Redis clock that jumped forward and back (Redis never
issues a smaller ID than its last); repair handles those the same way, losing nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from redis import Redis
from redis.exceptions import ResponseError

from common.streams import StreamNames, parse_entry_id, reply_text
from writer.deadletter import signed

logger = logging.getLogger(__name__)

AHEAD_TOLERANCE_MS = 24 * 3600 * 1000
"""An entry ID this far ahead of the clock is not from ``XADD *``: a forged or clock-jumped ID."""

MAX_ID = (1 << 64) - 1


def _fmt(eid: tuple[int, int]) -> str:
    return f"{eid[0]}-{eid[1]}"


def ids_ahead(redis: Redis, keys: Sequence[str], now_ms: int, tolerance_ms: int = AHEAD_TOLERANCE_MS) -> dict[str, str]:
    """Streams whose last generated ID is ahead of ``now_ms`` by more than ``tolerance_ms``: key -> ID."""
    out: dict[str, str] = {}
    for key in keys:
        try:
            info = redis.xinfo_stream(key)
        except ResponseError as exc:  # no such key: nothing published to that priority yet
            if "no such key" in str(exc).lower():
                continue
            raise
        last = parse_entry_id(info.get("last-generated-id"))
        if last[0] > now_ms + tolerance_ms:
            out[key] = _fmt(last)
    return out


@dataclass
class Repair:
    stream: str
    dead_lettered: int = 0
    deleted: int = 0
    last_id: str = ""
    group_reset: bool = False


def repair(
    redis: Redis,
    names: StreamNames,
    key: str,
    now_ms: int,
    tolerance_ms: int = AHEAD_TOLERANCE_MS,
    sign_key: bytes | None = None,
) -> Repair:
    """Remove the entries of ``key`` whose IDs are ahead of ``now_ms`` + tolerance and reset the IDs.

    Entries the writer group has not acknowledged (undelivered or pending) go to the dead-letter
    stream first (reason ``forged_id``), so they can be replayed; delivered and acknowledged ones
    were committed already and are only deleted. Run by the admin user (XADD/XDEL/XSETID/XGROUP).
    """
    result = Repair(key)
    cutoff = (now_ms + tolerance_ms + 1, 0)
    info = redis.xinfo_stream(key)
    if parse_entry_id(info.get("last-generated-id")) < cutoff:
        return result
    groups = {reply_text(g["name"]): g for g in redis.xinfo_groups(key)}
    group = groups.get(names.group)
    delivered = parse_entry_id(group["last-delivered-id"]) if group else (0, 0)
    future = cast(list[tuple[bytes, dict[bytes, bytes]]], redis.xrange(key, min=_fmt(cutoff), max="+"))
    pending: set[bytes] = set()
    if group is not None and future:
        rows = redis.xpending_range(key, names.group, min=_fmt(cutoff), max="+", count=len(future) + 1)
        pending = {_bytes(r["message_id"]) for r in rows}
    failed_at = datetime.now(UTC).isoformat(timespec="milliseconds")
    for eid, fields in future:
        eid_b = _bytes(eid)
        unacked = group is None or eid_b in pending or parse_entry_id(eid_b) > delivered
        pipe = redis.pipeline(transaction=True)
        if unacked:
            dead: dict[Any, Any] = {
                b"stream": key,
                b"entry_id": eid_b,
                b"error_class": "forged_id",
                b"error": "entry ID ahead of the clock (XADD with an explicit ID?); removed by streams repair",
                b"failed_at": failed_at,
                b"consumer": "telemetry-admin",
            }
            dead.update({b"orig." + k: v for k, v in fields.items()})
            pipe.xadd(names.deadletter, signed(dead, sign_key))  # type: ignore[arg-type]
            result.dead_lettered += 1
        if group is not None:
            pipe.xack(key, names.group, eid_b)
        pipe.xdel(key, eid_b)
        pipe.execute()
        result.deleted += 1
    newest = redis.xrevrange(key, max="+", min="-", count=1)
    # The new last ID: the newest genuine ID known (entry, group position or deleted entry).
    known = [parse_entry_id(newest[0][0])] if newest else []
    known += [i for i in (delivered, parse_entry_id(info.get("max-deleted-entry-id"))) if i < cutoff]
    top = max(known, default=(0, 1))
    if top >= cutoff:  # cannot happen after the deletes above; never move an ID past a genuine entry
        raise RuntimeError(f"{key}: newest entry {_fmt(top)} is still ahead of the clock")
    added = max(int(info.get("entries-added") or 0) - len(future), int(redis.xlen(key)))
    max_deleted = min(parse_entry_id(info.get("max-deleted-entry-id")), top)
    redis.execute_command(  # type: ignore[no-untyped-call]
        "XSETID", key, _fmt(top), "ENTRIESADDED", added, "MAXDELETEDID", _fmt(max_deleted)
    )
    result.last_id = _fmt(top)
    if group is not None and delivered >= cutoff:
        # The group had read past the forged entries, so every genuine entry was delivered.
        redis.execute_command(  # type: ignore[no-untyped-call]
            "XGROUP", "SETID", key, names.group, _fmt(top), "ENTRIESREAD", added
        )
        result.group_reset = True
    logger.warning(
        "repaired %s: %d entries with IDs from the future removed (%d dead-lettered); last ID now %s",
        key, result.deleted, result.dead_lettered, result.last_id,
    )  # fmt: skip
    return result


def _bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()
