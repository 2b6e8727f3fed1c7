"""Bounded on-disk spool of encoded stream entries, used by a producer while Redis is down.

Layout of a spool directory (one per producer name)::

    lock                 flock'd while a producer uses the spool (a second one fails)
    state                identity, sequence reservation, replay cursors (producers.spool.state)
    <priority>/<n>.seg   append-only segments (format: producers.spool.records)

The payload is the entry's fields exactly as XADD sends them, so a replay keeps every
idempotency key. Records are written with ``write()`` at once (kill -9 loses nothing that
was appended) and fsynced every ``fsync_interval_s`` (power loss loses at most that much).

Full spool: the limit is ``max_bytes`` or what the filesystem has free (checked every
SPACE_CHECK_S), whichever is smaller; ENOSPC or a short write also means "full": the file is
cut back to the record's start (no torn record mid-segment) and the priority policy applies.
Critical and high evict the oldest segments of bulk, then low, then normal, and when nothing
is left ``append`` returns BLOCKED (the caller stops reading); normal, low and bulk drop the
oldest segment of their own or a lower priority, else the new frame. Every dropped frame is
reported to ``on_drop(reason, priority, count)``: spool_full, evicted, oversize, corrupt.

Damage: on open, and whenever a replay meets it, a damaged record is skipped by resynchronising
on the next intact one; the records lost are counted exactly (recno gap, reason ``corrupt``)
and the damaged range is overwritten in place by a filler record so it is never counted twice.
Only the newest segment of a queue can have a torn tail (a crash mid-write): it is cut off
and reported in ``torn_bytes``. Any other OSError (read-only filesystem, I/O error) raises
SpoolUnavailableError: the producer then runs without a spool. No Redis here.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import NamedTuple

from common.durable import fsync_path
from common.errors import ConfigError, SpoolUnavailableError
from common.schema import Priority
from producers.spool.records import (
    HEADER,
    MAGIC,
    Fields,
    Record,
    pack_fields,
    pack_record,
    unpack_fields,
)
from producers.spool.scan import Queue, Segment, fill, scan_queue, walk
from producers.spool.state import SpoolState, StateFile, boot_id

__all__ = ["Append", "DropHook", "Fields", "Spool", "SpoolRecord", "open_spool", "pack_fields", "unpack_fields"]

logger = logging.getLogger(__name__)

_RANK = {p: i for i, p in enumerate(Priority)}
_EVICTABLE = (Priority.BULK, Priority.LOW, Priority.NORMAL)
"""Queues that may lose data when the spool is full, the first evicted first."""
FULL_ERRNOS = frozenset([errno.ENOSPC, errno.EDQUOT, errno.EFBIG])
"""Write errors that mean "no room": the spool is full, not broken."""
SPACE_CHECK_S = 1.0
"""How often the free space of the filesystem is read (statvfs) to derive the limit."""
RESERVE_BYTES = 64 << 10
"""Free space left to the filesystem (state file, directories, block rounding)."""

DropHook = Callable[[str, Priority, int], None]


class Append(Enum):
    STORED = "stored"
    DROPPED = "dropped"
    BLOCKED = "blocked"


class SpoolRecord(NamedTuple):
    priority: Priority
    fields: dict[bytes, bytes]
    segment: int
    end: int


def _unavailable(exc: OSError, what: str) -> SpoolUnavailableError:
    return SpoolUnavailableError(f"spool: {what}: {exc.strerror or exc}")


class Spool:
    """The spool of one producer. Not thread-safe: the run loop owns it.

    Raises SpoolUnavailableError (from the constructor or any method) when its filesystem
    refuses writes for a reason other than space.
    """

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
        self.limit = max_bytes
        """Bytes the spool may use now: max_bytes, or less when the filesystem has less free."""
        self.segment_bytes = segment_bytes
        self.fsync_interval_s = fsync_interval_s
        self.on_drop: DropHook = on_drop or (lambda _r, _p, _n: None)
        self.clock = clock
        self.torn_bytes = 0
        self.corrupt_records = 0
        """Records lost to damage (bit rot, a bad SD card), counted once each."""
        self.full_writes = 0
        """Writes refused by the filesystem (ENOSPC, short write): each made the spool full."""
        self.bytes = 0
        self._pending_drops: list[tuple[str, Priority, int]] = []
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._lock_fd = _lock(directory / "lock")
            self.state_file = StateFile(directory / "state")
        except OSError as exc:
            raise _unavailable(exc, f"cannot open {directory}") from None
        self.previous = self.state_file.load()
        self.state = SpoolState(**self.previous.__dict__) if self.previous else SpoolState()
        try:
            self.queues = {p: self._scan(p) for p in Priority}
        except OSError as exc:
            raise _unavailable(exc, f"cannot read {directory}") from None
        if on_drop is not None:
            self._report_drops()
        self.bytes = sum(s.size for q in self.queues.values() for s in q.segments)
        self._next_index = 1 + max((s.index for q in self.queues.values() for s in q.segments), default=0)
        self._last_sync = clock()
        self._space_checked = clock()
        self._refresh_limit(force=True)
        self._save_cursors()

    # ---- identity and sequence ------------------------------------------------------
    def resume(self, fresh_producer: str) -> tuple[str, int, int]:
        """(producer id, next seq, frames the previous run lost) for this start; persisted.

        The previous run continues (same id, next unused seq) after a clean stop or a crash
        on the same boot: frames it read but never sent or spooled are then sequence gaps
        the writer reports. After a reboot following a crash the state may be older than
        the frames sent, so a new run id is used instead (no key can be reused). Drops found
        while opening (damage) are reported to ``on_drop`` now, once it is set.
        """
        self._report_drops()
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
        self._store_state()
        self.sync(force=True)
        return producer, seq, lost

    def _report_drops(self) -> None:
        for reason, priority, n in self._pending_drops:
            self.on_drop(reason, priority, n)
        self._pending_drops = []

    def save_seq(self, reserved: int, durable: int) -> None:
        """Record the sequence state: call before publishing new numbers, and after."""
        if (reserved, durable) != (self.state.reserved, self.state.durable):
            self.state.reserved, self.state.durable = reserved, durable
            self._store_state()

    def _store_state(self) -> None:
        try:
            self.state_file.store(self.state)
        except OSError as exc:
            raise _unavailable(exc, "cannot write the state file") from None

    # ---- append ---------------------------------------------------------------------
    def append(self, priority: Priority, fields: Fields) -> Append:
        payload = pack_fields(fields)
        need = HEADER.size + len(payload) + len(MAGIC)
        if need > self.max_bytes:
            self.on_drop("oversize", priority, 1)
            return Append.DROPPED
        self._refresh_limit()
        while True:
            while self.bytes + need > self.limit:
                victim = self._victim(priority)
                if victim is None:
                    if priority in _EVICTABLE:
                        self.on_drop("spool_full", priority, 1)
                        return Append.DROPPED
                    return Append.BLOCKED
                reason = "spool_full" if _RANK[victim] <= _RANK[priority] else "evicted"
                self._evict(victim, reason)
            if self._write(priority, payload):
                return Append.STORED
            # The filesystem is full before our limit (other files, block rounding): believe it.
            self.full_writes += 1
            self.limit = self.bytes

    def _refresh_limit(self, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._space_checked < SPACE_CHECK_S:
            return
        self._space_checked = now
        try:
            st = os.statvfs(self.dir)
        except OSError:
            return
        free = st.f_bavail * st.f_frsize
        self.limit = max(0, min(self.max_bytes, self.bytes + free - RESERVE_BYTES))

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

    def _write(self, priority: Priority, payload: bytes) -> bool:
        """Append one record; False (nothing written) when the filesystem has no room."""
        q = self.queues[priority]
        record = pack_record(q.next_recno, payload)
        last = q.segments[-1] if q.segments else None
        if last is None or (last.records and last.size + len(record) > self.segment_bytes) or last.version != 2:
            last = self._new_segment(q)
            if last is None:
                return False
        try:
            if q.fd is None:
                q.fd = os.open(last.path, os.O_WRONLY | os.O_APPEND)
            try:
                written = os.write(q.fd, record)
            except OSError as exc:
                if exc.errno not in FULL_ERRNOS:
                    raise
                written = 0
            if written != len(record):
                os.ftruncate(q.fd, last.size)  # back to the record's start: never a torn record mid-segment
                if not last.records:
                    self._delete_tail(q)
                return False
        except OSError as exc:
            raise _unavailable(exc, f"cannot write {last.path}") from None
        last.size += written
        last.records += 1
        self.bytes += written
        q.next_recno += 1
        q.dirty = True
        return True

    def _new_segment(self, q: Queue) -> Segment | None:
        if q.fd is not None:
            os.close(q.fd)
            q.fd = None
        seg = Segment(self._next_index, q.path / f"{self._next_index:012d}.seg")
        try:
            fd = os.open(seg.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        except OSError as exc:
            if exc.errno in FULL_ERRNOS:
                return None
            raise _unavailable(exc, f"cannot create {seg.path}") from None
        self._next_index += 1
        try:
            written = os.write(fd, MAGIC)
        except OSError as exc:
            if exc.errno not in FULL_ERRNOS:
                os.close(fd)
                raise _unavailable(exc, f"cannot write {seg.path}") from None
            written = 0
        if written != len(MAGIC):
            os.close(fd)
            seg.path.unlink(missing_ok=True)
            return None
        q.fd = fd
        q.segments.append(seg)
        self.bytes += len(MAGIC)
        return seg

    def _delete_tail(self, q: Queue) -> None:
        """Remove a newest segment that holds no record (its first write found no room)."""
        seg = q.segments.pop()
        if q.fd is not None:
            os.close(q.fd)
            q.fd = None
        seg.path.unlink(missing_ok=True)
        self.bytes -= seg.size

    # ---- replay ---------------------------------------------------------------------
    @property
    def records(self) -> int:
        return sum(q.live for q in self.queues.values())

    @property
    def empty(self) -> bool:
        return not any(q.live for q in self.queues.values())

    def peek(self, limit: int) -> list[SpoolRecord]:
        """Up to ``limit`` of the oldest records of the highest non-empty priority, in order."""
        for p in Priority:
            q = self.queues[p]
            if q.live:
                try:
                    return self._read(p, q, limit)
                except OSError as exc:
                    raise _unavailable(exc, f"cannot read {q.path}") from None
        return []

    def _read(self, priority: Priority, q: Queue, limit: int) -> list[SpoolRecord]:
        out: list[SpoolRecord] = []
        for seg in q.segments:
            if len(out) >= limit:
                break
            if not seg.live:
                continue
            data = seg.path.read_bytes()[: seg.size]
            intact, damage = walk(data, seg.start, seg.version, None)
            frames = [r for r in intact if not r.filler]
            if damage:  # damaged since it was written or scanned
                self._repair(priority, seg, frames, damage)
            for rec in frames[: min(seg.live, limit - len(out))]:
                out.append(SpoolRecord(priority, unpack_fields(rec.payload), seg.index, rec.end))
        return out

    def _repair(self, priority: Priority, seg: Segment, frames: list[Record], damage: list[tuple[int, int]]) -> None:
        """Damage met during a replay: the segment knows how many records it holds, so the loss
        is exact; the damaged ranges are overwritten with fillers so they are counted once."""
        for a, b in damage:
            following = next((r.recno for r in frames if r.start >= b), None)
            fill(seg, [(a, b)], following)
        lost = seg.live - len(frames)
        if lost > 0:
            seg.records -= lost
            self._corrupt(priority, lost, seg.path)

    def consume(self, records: list[SpoolRecord]) -> None:
        """Mark a prefix of ``peek()``'s records as published; delete finished segments."""
        try:
            for rec in records:
                q = self.queues[rec.priority]
                while q.segments and q.segments[0].index != rec.segment and not q.segments[0].live:
                    self._delete_head(q)
                seg = q.segments[0]
                assert seg.index == rec.segment, "consume() takes a prefix of peek() in order"
                seg.start, seg.consumed = rec.end, seg.consumed + 1
                if not seg.live:
                    self._delete_head(q)
            self._save_cursors()
        except OSError as exc:
            raise _unavailable(exc, "cannot delete a replayed segment") from None

    def _delete_head(self, q: Queue) -> None:
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
        self._store_state()

    # ---- durability -----------------------------------------------------------------
    def sync(self, force: bool = False) -> None:
        """fsync segments, folders and state if ``fsync_interval_s`` has passed (or ``force``)."""
        now = self.clock()
        if not force and now - self._last_sync < self.fsync_interval_s:
            return
        self._last_sync = now
        try:
            for q in self.queues.values():
                if q.dirty:
                    if q.fd is not None:
                        os.fsync(q.fd)
                    fsync_path(q.path)
                    q.dirty = False
            self.state_file.sync()
        except OSError as exc:
            raise _unavailable(exc, "fsync failed") from None

    def close(self) -> None:
        """Record an orderly stop (all numbers accounted for), fsync, release the lock."""
        self.state.clean = self.state.reserved == self.state.durable
        try:
            self._store_state()
            self.sync(force=True)
        finally:
            self.release()

    def release(self) -> None:
        """Close every file and the lock without writing (also after SpoolUnavailableError)."""
        for q in self.queues.values() if hasattr(self, "queues") else ():
            if q.fd is not None:
                os.close(q.fd)
                q.fd = None
        self.state_file.close()
        os.close(self._lock_fd)

    # ---- open: scan and repair ------------------------------------------------------
    def _scan(self, priority: Priority) -> Queue:
        """Load one queue (producers.spool.scan); losses found are reported to ``on_drop`` once it is set."""
        result = scan_queue(self.dir / priority.value, self.state.cursors.get(priority.value))
        self.torn_bytes += result.torn_bytes
        for n, paths in result.losses:
            self.corrupt_records += n
            self._pending_drops.append(("corrupt", priority, n))
            logger.error("spool: %d %s frames lost to damage in %s", n, priority.value, ", ".join(map(str, paths)))
        return result.queue

    def _corrupt(self, priority: Priority, n: int, path: Path) -> None:
        self.corrupt_records += n
        self.on_drop("corrupt", priority, n)
        logger.error("spool: %d %s frames lost to damage in %s", n, priority.value, path)


def _lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(f"spool {path.parent} is in use by another producer process") from None
    return fd


def open_spool(
    directory: Path | None, name: str, max_mb: float, segment_kb: int, fsync_interval_s: float
) -> Spool | None:
    """The spool of producer ``name`` under ``directory`` (None when no directory is set).

    Raises SpoolUnavailableError when the directory cannot be written (read-only filesystem).
    """
    if directory is None:
        return None
    folder = directory / re.sub(r"[^A-Za-z0-9_.@-]", "_", name)
    return Spool(folder, int(max_mb * (1 << 20)), segment_kb << 10, fsync_interval_s)
