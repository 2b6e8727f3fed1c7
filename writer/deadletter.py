"""The dead-letter stream: move poison entries there, and let an operator list, replay, purge.

A dead letter holds ``stream``, ``entry_id``, ``size``, ``error_class``, ``error``, ``failed_at``
and ``consumer``. An entry up to COPY_MAX_BYTES is copied byte for byte (fields prefixed
``orig.``) and can be replayed; a larger one is kept *by reference*: only its fields short enough
to identify the frame (``prod``, ``seq``, ``src`` ...) are copied, ``omitted`` lists the others
with their sizes, and it cannot be replayed.

Exactly one dead letter per poison entry: one Lua script XACKs the original and XADDs the dead
letter only if that XACK acknowledged it (an entry another replica already resolved is left
alone) and only if the entry is not in the dead-letter index (a group recreated after NOGROUP
delivers it again). The script declares no ``allow-oom`` flag, so Redis at ``maxmemory``
refuses it whole: the entry stays pending, nothing is half done (a wrong-type key fails it
before it writes; an XADD failing after the XACK puts the entry back pending). The stream is bounded
(``MAXLEN ~``); the script returns how many old dead letters that dropped, and the caller logs
and counts every drop. No PostgreSQL here.

With ``WRITER__DEADLETTER_KEY`` set, every dead letter carries ``sig``, an HMAC-SHA256 of its
fields; replay refuses one without a valid signature, so a dead letter forged with a stolen
Redis password (the writer's may XADD there) is not laundered into the priority streams.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, cast

from redis import Redis
from redis.exceptions import RedisError

from common.streams import StreamNames
from writer.read import Entry

logger = logging.getLogger(__name__)

ORIG = b"orig."

COPY_MAX_BYTES = 65_536
"""Entries up to this many bytes are copied into their dead letter; larger ones are kept by reference."""

REFERENCE_FIELD_MAX = 256
"""In a dead letter by reference, original fields up to this many bytes are still copied (they identify it)."""

# Shebang without "allow-oom": Redis refuses the whole script while it is out of memory, so the
# XACK can never happen without the XADD. Keys share the namespace hash tag (one cluster slot).
# XLEN and ZSCORE run first so a key of the wrong type fails the script before it writes; if the
# XADD still fails after the XACK, XCLAIM ... FORCE puts the entry back in the consumer's PEL.
_SCRIPT = """#!lua
local before = redis.call('XLEN', KEYS[2])
local seen = redis.call('ZSCORE', KEYS[3], ARGV[3])
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return {0, 0}
end
if seen then
  return {2, 0}
end
local added = redis.pcall('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', unpack(ARGV, 6))
if type(added) == 'table' and added.err then
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[5], 0, ARGV[2], 'FORCE', 'JUSTID')
  return added
end
redis.call('ZADD', KEYS[3], 0, ARGV[3])
return {1, before + 1 - redis.call('XLEN', KEYS[2])}
"""


class Outcome(StrEnum):
    DEAD_LETTERED = "dead_lettered"
    """Acked and dead-lettered, once."""
    NOT_PENDING = "not_pending"
    """XACK acknowledged nothing: another replica resolved the entry (it was claimed); nothing written."""
    ALREADY_DEAD = "already_dead"
    """Acked; it had been dead-lettered before (delivered again after a group recreation)."""
    REFUSED = "refused"
    """Redis refused or failed (out of memory, link down): nothing done, the entry stays pending."""


@dataclass(frozen=True, slots=True)
class DeadLetterResult:
    entry: Entry
    error_class: str
    outcome: Outcome
    dropped: int = 0
    """Old dead letters the bounded stream dropped to make room for this one."""
    problem: str = ""
    """Why Redis refused (REFUSED only)."""


def index_member(entry: Entry) -> str:
    """``<priority>:<ms>-<seq>``, zero-padded, so lexicographic order is entry order within a priority."""
    ms, _, seq = entry.id.decode().partition("-")
    return f"{entry.priority.value}:{int(ms):020d}-{int(seq or 0):020d}"


SIG = b"sig"


def signature(fields: dict[bytes, Any], key: bytes) -> bytes:
    """HMAC-SHA256 (hex) of a dead letter's fields (all but ``sig``), length-prefixed and sorted."""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for k in sorted(fields):
        if k == SIG:
            continue
        v = fields[k]
        raw = v if isinstance(v, bytes) else str(v).encode()
        mac.update(len(k).to_bytes(4, "big") + k + len(raw).to_bytes(8, "big") + raw)
    return mac.hexdigest().encode()


def signed(fields: dict[bytes, Any], key: bytes | None) -> dict[bytes, Any]:
    """``fields`` with their signature added (unchanged when no key is configured)."""
    if key is None:
        return fields
    return {**fields, SIG: signature(fields, key)}


class UnverifiedDeadLetter(ValueError):
    """A dead letter without a valid signature: not written by the writer or telemetry-admin."""


def verify(did: str, fields: dict[bytes, bytes], key: bytes | None) -> None:
    """Raise UnverifiedDeadLetter unless ``fields`` carry the signature ``key`` gives (no key: no check)."""
    if key is None:
        return
    sig = fields.get(SIG)
    if sig is None or not hmac.compare_digest(sig, signature(fields, key)):
        why = "unsigned" if sig is None else "its signature does not match"
        raise UnverifiedDeadLetter(
            f"dead letter {did} is {why}: not written by the writer (forged with a stolen Redis password?);"
            " inspect it with `deadletter show`, replay it with --unverified only if you trust it"
        )


def dead_letter_fields(entry: Entry, error_class: str, error: str, failed_at: str, consumer: str) -> dict[bytes, Any]:
    """The fields of one dead letter: a full copy, or a reference for an entry over COPY_MAX_BYTES."""
    size = entry.size
    fields: dict[bytes, Any] = {
        b"stream": entry.stream,
        b"entry_id": entry.id,
        b"size": str(size),
        b"error_class": error_class,
        b"error": error,
        b"failed_at": failed_at,
        b"consumer": consumer,
    }
    if size <= COPY_MAX_BYTES:
        fields.update({ORIG + k: v for k, v in entry.fields.items()})
        return fields
    omitted = []
    for k, v in entry.fields.items():
        if len(v) <= REFERENCE_FIELD_MAX and len(k) <= REFERENCE_FIELD_MAX:
            fields[ORIG + k] = v
        else:
            omitted.append(f"{k[:REFERENCE_FIELD_MAX].decode(errors='replace')}:{len(v)}")
    fields[b"omitted"] = ",".join(omitted)
    return fields


def dead_letter(
    redis: Redis,
    names: StreamNames,
    failures: Iterable[tuple[Entry, str, str]],
    consumer: str,
    max_len: int = 100_000,
    key: bytes | None = None,
) -> list[DeadLetterResult]:
    """Dead-letter each (entry, error_class, error) and XACK it, atomically, exactly once.

    One pipelined script call per entry. Never raises a Redis error: an entry Redis refuses
    comes back REFUSED (it stays pending; try again later). Logs each outcome once, after
    Redis answered.
    """
    failed_at = datetime.now(UTC).isoformat(timespec="milliseconds")
    todo = list(failures)
    if not todo:
        return []
    pipe = redis.pipeline(transaction=False)
    for entry, error_class, error in todo:
        fields = signed(dead_letter_fields(entry, error_class, error, failed_at, consumer), key)
        flat = [x for kv in fields.items() for x in kv]
        keys = (entry.stream, names.deadletter, names.deadletter_index)
        args = (names.group, entry.id, index_member(entry), max_len, consumer, *flat)
        pipe.execute_command("EVAL", _SCRIPT, 3, *keys, *args)  # type: ignore[no-untyped-call]  # cluster: no .eval()
    try:
        replies: list[Any] = pipe.execute(raise_on_error=False)
    except RedisError as exc:
        replies = [exc] * len(todo)
    return [_result(e, error_class, error, reply) for (e, error_class, error), reply in zip(todo, replies, strict=True)]


def _result(entry: Entry, error_class: str, error: str, reply: Any) -> DeadLetterResult:
    where = f"{entry.stream} {entry.id.decode()}"
    if isinstance(reply, Exception):
        problem = str(reply).strip()[:200]
        logger.debug("dead letter of %s refused by Redis (%s); the entry stays pending", where, problem)
        return DeadLetterResult(entry, error_class, Outcome.REFUSED, problem=problem)
    code, dropped = int(reply[0]), int(reply[1])
    if code == 1:
        logger.warning("dead-lettered %s (%d bytes): %s: %s", where, entry.size, error_class, error[:200])
        if dropped:
            logger.error("dead-letter stream full: %d oldest dead letters dropped to make room", dropped)
        return DeadLetterResult(entry, error_class, Outcome.DEAD_LETTERED, dropped)
    if code == 2:
        logger.info("%s was dead-lettered before (delivered again); acked, not dead-lettered twice", where)
        return DeadLetterResult(entry, error_class, Outcome.ALREADY_DEAD)
    logger.info("%s is no longer pending (resolved by another replica); not dead-lettered", where)
    return DeadLetterResult(entry, error_class, Outcome.NOT_PENDING)


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


def replay(
    redis: Redis, names: StreamNames, entry_ids: Iterable[str], key: bytes | None = None, unverified: bool = False
) -> list[tuple[str, str]]:
    """Re-publish dead letters to their original stream (priority) and delete them, atomically.

    Returns (dead-letter id, new entry id) pairs. The original fields are restored byte for
    byte, so the frame keeps its idempotency key. With a signing ``key``, a dead letter whose
    signature is missing or wrong raises UnverifiedDeadLetter (unless ``unverified``).
    """
    done = []
    for did in entry_ids:
        fields = show_dead(redis, names, did)
        if fields is None:
            raise KeyError(f"no dead letter {did}")
        if not unverified:
            verify(did, fields, key)
        stream = fields[b"stream"].decode()
        names.priority_of(stream)  # refuse to write anywhere but our own priority streams
        if b"omitted" in fields:
            raise ValueError(f"dead letter {did} keeps its entry by reference only (too large): it cannot be replayed")
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
