"""Bounded on-disk spool of encoded stream entries, used by a producer while Redis is down.

Layout of a spool directory (one per producer name)::

    lock                 flock'd while a producer uses the spool (a second one fails)
    state                identity, sequence reservation, replay cursors (common.spool_state)
    <priority>/<n>.seg   append-only segments: MAGIC, then <u32 length><u32 crc32><payload>

The payload is the entry's fields exactly as XADD sends them, so a replay keeps every
idempotency key. Records are written with ``write()`` at once (kill -9 loses nothing that
was appended) and fsynced every ``fsync_interval_s`` (power loss loses at most that much).
On open, a torn or corrupt tail is cut off and reported in ``torn_bytes``; the producer
still starts. Full spool: critical and high evict the oldest segments of bulk, then low,
then normal, and when nothing is left ``append`` returns BLOCKED (the caller stops reading);
normal, low and bulk drop the oldest segment of their own or a lower priority, else the new
frame. Every dropped frame is reported to ``on_drop(reason, priority, count)``. No Redis here.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import struct
import time
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import NamedTuple

from common.errors import ConfigError
from common.schema import Priority
from common.spool_state import SpoolState, StateFile, boot_id

logger = logging.getLogger(__name__)

MAGIC = b"TSPOOL1\n"
_REC = struct.Struct("<II")
_FIELD = struct.Struct("<HI")
MAX_RECORD = 64 << 20
"""Longest record believed when scanning; a longer length field means a corrupt record."""
_RANK = {p: i for i, p in enumerate(Priority)}
_EVICTABLE = (Priority.BULK, Priority.LOW, Priority.NORMAL)
"""Queues that may lose data when the spool is full, the first evicted first."""

DropHook = Callable[[str, Priority, int], None]
Fields = Mapping[str, str | bytes] | Mapping[bytes, bytes]
"""Stream entry fields: as common.schema.encode returns them, or as read back."""


class Append(Enum):
    STORED = "stored"
    DROPPED = "dropped"
    BLOCKED = "blocked"


class SpoolRecord(NamedTuple):
    priority: Priority
    fields: dict[bytes, bytes]
    segment: int
    end: int


def pack_fields(fields: Fields) -> bytes:
    """Stream entry fields -> record payload (lengths + raw bytes, order kept)."""
    parts = [struct.pack("<H", len(fields))]
    for key, value in fields.items():
        k = key.encode() if isinstance(key, str) else key
        v = value.encode() if isinstance(value, str) else value
        parts += [_FIELD.pack(len(k), len(v)), k, v]
    return b"".join(parts)


def unpack_fields(payload: bytes) -> dict[bytes, bytes]:
    (count,) = struct.unpack_from("<H", payload)
    pos, out = 2, {}
    for _ in range(count):
        klen, vlen = _FIELD.unpack_from(payload, pos)
        pos += _FIELD.size
        out[payload[pos : pos + klen]] = payload[pos + klen : pos + klen + vlen]
        pos += klen + vlen
    return out


@dataclass
class _Segment:
    index: int
    path: Path
    size: int = len(MAGIC)
    records: int = 0
    start: int = len(MAGIC)
    """Replay position: bytes before it were published."""
    consumed: int = 0
    """Records before ``start``."""

    @property
    def live(self) -> int:
        return self.records - self.consumed


@dataclass
class _Queue:
    path: Path
    segments: deque[_Segment] = field(default_factory=deque)
    fd: int | None = None
    dirty: bool = False

    @property
    def live(self) -> int:
        return sum(s.live for s in self.segments)


class Spool:
    """The spool of one producer. Not thread-safe: the run loop owns it."""

    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        segment_bytes: int = 1 << 20,
        fsync_interval_s: float = 1.0,
        on_drop: DropHook | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync_interval_s = fsync_interval_s
        self.on_drop: DropHook = on_drop or (lambda _r, _p, _n: None)
        self.clock = clock
        self.torn_bytes = 0
        self.bytes = 0
        directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _lock(directory / "lock")
        self.state_file = StateFile(directory / "state")
        self.previous = self.state_file.load()
        self.state = SpoolState(**self.previous.__dict__) if self.previous else SpoolState()
        self.queues = {p: self._scan(p) for p in Priority}
        self.bytes = sum(s.size for q in self.queues.values() for s in q.segments)
        self._next_index = 1 + max((s.index for q in self.queues.values() for s in q.segments), default=0)
        self._last_sync = clock()
        self._save_cursors()

    # ---- identity and sequence ------------------------------------------------------
    def resume(self, fresh_producer: str) -> tuple[str, int, int]:
        """(producer id, next seq, frames the previous run lost) for this start; persisted.

        The previous run continues (same id, next unused seq) after a clean stop or a crash
        on the same boot: frames it read but never sent or spooled are then sequence gaps
        the writer reports. After a reboot following a crash the state may be older than
        the frames sent, so a new run id is used instead (no key can be reused).
        """
        prev, now = self.previous, boot_id()
        if prev and prev.producer and (prev.clean or (now and prev.boot == now)):
            producer, seq, lost = prev.producer, prev.reserved, 0 if prev.clean else prev.reserved - prev.durable
        else:
            if prev and prev.producer:
                logger.warning(
                    "spool: %s stopped uncleanly before a reboot; its last frames may be lost", prev.producer
                )
            producer, seq, lost = fresh_producer, 1, 0
        self.state.producer, self.state.reserved, self.state.durable = producer, seq, seq
        self.state.boot, self.state.clean = now, False
        self.state_file.store(self.state)
        self.sync(force=True)
        return producer, seq, lost

    def save_seq(self, reserved: int, durable: int) -> None:
        """Record the sequence state: call before publishing new numbers, and after."""
        if (reserved, durable) != (self.state.reserved, self.state.durable):
            self.state.reserved, self.state.durable = reserved, durable
            self.state_file.store(self.state)

    # ---- append ---------------------------------------------------------------------
    def append(self, priority: Priority, fields: Fields) -> Append:
        payload = pack_fields(fields)
        record = _REC.pack(len(payload), zlib.crc32(payload)) + payload
        need = len(record) + len(MAGIC)
        if need > self.max_bytes:
            self.on_drop("oversize", priority, 1)
            return Append.DROPPED
        while self.bytes + need > self.max_bytes:
            victim = self._victim(priority)
            if victim is None:
                if priority in _EVICTABLE:
                    self.on_drop("spool_full", priority, 1)
                    return Append.DROPPED
                return Append.BLOCKED
            reason = "spool_full" if _RANK[victim] <= _RANK[priority] else "evicted"
            self._evict(victim, reason)
        self._write(priority, record)
        return Append.STORED

    def _victim(self, priority: Priority) -> Priority | None:
        for p in _EVICTABLE:
            if (priority not in _EVICTABLE or _RANK[p] >= _RANK[priority]) and self.queues[p].segments:
                return p
        return None

    def _evict(self, priority: Priority, reason: str) -> None:
        q = self.queues[priority]
        seg = q.segments[0]
        self._delete_head(q)
        if seg.live:
            self.on_drop(reason, priority, seg.live)
            logger.warning("spool full: dropped %d %s frames (%s)", seg.live, priority.value, reason)
        self._save_cursors()

    def _write(self, priority: Priority, record: bytes) -> None:
        q = self.queues[priority]
        last = q.segments[-1] if q.segments else None
        if last is None or (last.records and last.size + len(record) > self.segment_bytes):
            last = self._new_segment(q)
        if q.fd is None:
            q.fd = os.open(last.path, os.O_WRONLY | os.O_APPEND)
        os.write(q.fd, record)
        last.size += len(record)
        last.records += 1
        self.bytes += len(record)
        q.dirty = True

    def _new_segment(self, q: _Queue) -> _Segment:
        if q.fd is not None:
            os.close(q.fd)
        seg = _Segment(self._next_index, q.path / f"{self._next_index:012d}.seg")
        self._next_index += 1
        q.fd = os.open(seg.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        os.write(q.fd, MAGIC)
        q.segments.append(seg)
        self.bytes += len(MAGIC)
        return seg

    # ---- replay ---------------------------------------------------------------------
    @property
    def records(self) -> int:
        return sum(q.live for q in self.queues.values())

    @property
    def empty(self) -> bool:
        return not any(q.segments for q in self.queues.values())

    def peek(self, limit: int) -> list[SpoolRecord]:
        """Up to ``limit`` of the oldest records of the highest non-empty priority, in order."""
        for p in Priority:
            q = self.queues[p]
            if q.live:
                return self._read(p, q, limit)
        return []

    def _read(self, priority: Priority, q: _Queue, limit: int) -> list[SpoolRecord]:
        out: list[SpoolRecord] = []
        for seg in q.segments:
            with open(seg.path, "rb") as f:
                f.seek(seg.start)
                pos = seg.start
                for _ in range(min(seg.live, limit - len(out))):
                    length, _crc = _REC.unpack(f.read(_REC.size))
                    payload = f.read(length)
                    pos += _REC.size + length
                    out.append(SpoolRecord(priority, unpack_fields(payload), seg.index, pos))
            if len(out) >= limit:
                break
        return out

    def consume(self, records: list[SpoolRecord]) -> None:
        """Mark a prefix of ``peek()``'s records as published; delete finished segments."""
        for rec in records:
            q = self.queues[rec.priority]
            seg = q.segments[0]
            assert seg.index == rec.segment, "consume() takes a prefix of peek() in order"
            seg.start, seg.consumed = rec.end, seg.consumed + 1
            if not seg.live:
                self._delete_head(q)
        self._save_cursors()

    def _delete_head(self, q: _Queue) -> None:
        seg = q.segments.popleft()
        if not q.segments and q.fd is not None:
            os.close(q.fd)
            q.fd = None
        seg.path.unlink(missing_ok=True)
        self.bytes -= seg.size
        q.dirty = True

    def _save_cursors(self) -> None:
        self.state.cursors = {
            p.value: [q.segments[0].index, q.segments[0].start, q.segments[0].consumed]
            for p, q in self.queues.items()
            if q.segments
        }
        self.state_file.store(self.state)

    # ---- durability -----------------------------------------------------------------
    def sync(self, force: bool = False) -> None:
        """fsync segments, folders and state if ``fsync_interval_s`` has passed (or ``force``)."""
        now = self.clock()
        if not force and now - self._last_sync < self.fsync_interval_s:
            return
        self._last_sync = now
        for q in self.queues.values():
            if q.dirty:
                if q.fd is not None:
                    os.fsync(q.fd)
                _fsync_dir(q.path)
                q.dirty = False
        self.state_file.sync()

    def close(self) -> None:
        """Record an orderly stop (all numbers accounted for), fsync, release the lock."""
        self.state.clean = self.state.reserved == self.state.durable
        self.state_file.store(self.state)
        self.sync(force=True)
        for q in self.queues.values():
            if q.fd is not None:
                os.close(q.fd)
                q.fd = None
        self.state_file.close()
        os.close(self._lock_fd)

    # ---- open: scan and repair ------------------------------------------------------
    def _scan(self, priority: Priority) -> _Queue:
        q = _Queue(self.dir / priority.value)
        q.path.mkdir(exist_ok=True)
        cursor = self.state.cursors.get(priority.value)
        for path in sorted(q.path.glob("*.seg")):
            index = int(path.stem)
            if cursor and index < cursor[0]:
                path.unlink()  # published before the stop, not yet deleted
                continue
            seg = self._scan_segment(index, path, cursor[1] if cursor and index == cursor[0] else 0)
            if seg is not None and seg.live:
                q.segments.append(seg)
            else:
                path.unlink(missing_ok=True)
        return q

    def _scan_segment(self, index: int, path: Path, start: int) -> _Segment | None:
        data = path.read_bytes()
        if data[: len(MAGIC)] != MAGIC:
            self._torn(path, len(data), 0)
            return None
        seg = _Segment(index, path)
        pos = len(MAGIC)
        while pos < len(data):
            if pos + _REC.size > len(data):
                break
            length, crc = _REC.unpack_from(data, pos)
            end = pos + _REC.size + length
            if length > MAX_RECORD or end > len(data) or zlib.crc32(data[pos + _REC.size : end]) != crc:
                break
            seg.records += 1
            if end <= start:
                seg.start, seg.consumed = end, seg.records
            pos = end
        if pos < len(data):
            self._torn(path, len(data) - pos, pos)
        seg.size = pos
        return seg

    def _torn(self, path: Path, lost: int, keep: int) -> None:
        self.torn_bytes += lost
        logger.warning("spool: %s has a torn or corrupt tail: %d bytes after offset %d skipped", path, lost, keep)
        if keep:
            os.truncate(path, keep)


def _lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(f"spool {path.parent} is in use by another producer process") from None
    return fd


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_spool(
    directory: Path | None, name: str, max_mb: float, segment_kb: int, fsync_interval_s: float
) -> Spool | None:
    """The spool of producer ``name`` under ``directory`` (None when no directory is set)."""
    if directory is None:
        return None
    folder = directory / re.sub(r"[^A-Za-z0-9_.@-]", "_", name)
    return Spool(folder, int(max_mb * (1 << 20)), segment_kb << 10, fsync_interval_s)
