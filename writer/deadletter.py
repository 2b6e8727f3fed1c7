"""The dead-letter stream: move poison entries there, and let an operator list, replay, purge.

A dead-letter entry keeps the original entry byte for byte (fields prefixed ``orig.``) plus
``stream``, ``entry_id``, ``error_class``, ``error``, ``failed_at`` and ``consumer``. The XADD
to the dead-letter stream and the XACK of the original run in one MULTI, so an entry is
never lost and never in both places.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, cast

from redis import Redis

from common.streams import StreamNames
from writer.read import Entry

logger = logging.getLogger(__name__)

ORIG = b"orig."


def dead_letter(redis: Redis, names: StreamNames, failures: Iterable[tuple[Entry, str, str]], consumer: str) -> int:
    """XADD each (entry, error_class, error) to the dead-letter stream and XACK it, atomically."""
    failed_at = datetime.now(UTC).isoformat(timespec="milliseconds")
    pipe = redis.pipeline(transaction=True)
    n = 0
    for entry, error_class, error in failures:
        fields: dict[Any, Any] = {
            b"stream": entry.stream,
            b"entry_id": entry.id,
            b"error_class": error_class,
            b"error": error,
            b"failed_at": failed_at,
            b"consumer": consumer,
        }
        fields.update({ORIG + k: v for k, v in entry.fields.items()})
        pipe.xadd(names.deadletter, fields)
        pipe.xack(entry.stream, names.group, entry.id)
        logger.warning("dead-lettered %s %s: %s: %s", entry.stream, entry.id.decode(), error_class, error[:200])
        n += 1
    if n:
        pipe.execute()
    return n


def list_dead(redis: Redis, names: StreamNames, count: int = 50, start: str = "-") -> list[tuple[str, dict[str, str]]]:
    """The oldest ``count`` dead letters from ``start``: (id, summary fields) for display."""
    out = []
    for eid, fields in _xrange(redis, names.deadletter, start, "+", count):
        summary = {k.decode(): v.decode(errors="replace") for k, v in fields.items() if not k.startswith(ORIG)}
        out.append((eid.decode(), summary))
    return out


def show_dead(redis: Redis, names: StreamNames, entry_id: str) -> dict[bytes, bytes] | None:
    rows = _xrange(redis, names.deadletter, entry_id, entry_id, 1)
    return rows[0][1] if rows else None


def _xrange(redis: Redis, key: str, lo: str, hi: str, count: int) -> list[tuple[bytes, dict[bytes, bytes]]]:
    return cast(list[tuple[bytes, dict[bytes, bytes]]], redis.xrange(key, min=lo, max=hi, count=count))


def replay(redis: Redis, names: StreamNames, entry_ids: Iterable[str]) -> list[tuple[str, str]]:
    """Re-publish dead letters to their original stream (priority) and delete them, atomically.

    Returns (dead-letter id, new entry id) pairs. The original fields are restored byte for
    byte, so the frame keeps its idempotency key.
    """
    done = []
    for did in entry_ids:
        fields = show_dead(redis, names, did)
        if fields is None:
            raise KeyError(f"no dead letter {did}")
        stream = fields[b"stream"].decode()
        names.priority_of(stream)  # refuse to write anywhere but our own priority streams
        original = {k[len(ORIG) :]: v for k, v in fields.items() if k.startswith(ORIG)}
        pipe = redis.pipeline(transaction=True)
        pipe.xadd(stream, original)  # type: ignore[arg-type]
        pipe.xdel(names.deadletter, did)
        new_id, _ = pipe.execute()
        done.append((did, new_id.decode()))
        logger.info("replayed dead letter %s to %s as %s", did, stream, new_id.decode())
    return done


def purge(redis: Redis, names: StreamNames, entry_ids: Iterable[str] | None = None) -> int:
    """Delete the given dead letters, or all of them when ``entry_ids`` is None."""
    if entry_ids is None:
        n = int(redis.xlen(names.deadletter))
        redis.delete(names.deadletter)
        return n
    ids = list(entry_ids)
    return int(redis.xdel(names.deadletter, *ids)) if ids else 0
