"""Open-time scan of one spool queue: load its segments, resynchronise past damage, count the loss.

``scan_queue`` reads the segments of one priority folder one at a time (never all in memory),
finds the replay position from the state's cursor, and for each damaged range counts the records
it cost by the recno gap around it; the range is then overwritten by a filler record (``fill``)
so the next start neither re-reads nor re-counts it. A damaged range at the end of the newest
segment is a torn tail (a crash or power cut mid-write): cut off and reported in bytes, not frames.
Only file reads and in-place repairs here; the Spool (producers.spool.store) owns the rest.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from producers.spool.records import MAGIC, MAGIC_V1, Record, filler, record_at, resync

logger = logging.getLogger(__name__)

Range = tuple[int, int]
"""A damaged byte range [start, end) of a segment."""


@dataclass
class Segment:
    index: int
    path: Path
    version: int = 2
    size: int = len(MAGIC)
    records: int = 0
    """Intact frame records (fillers excluded)."""
    start: int = len(MAGIC)
    """Replay position: bytes before it were published."""
    consumed: int = 0
    """Records before ``start``."""

    @property
    def live(self) -> int:
        return self.records - self.consumed


@dataclass
class Queue:
    path: Path
    segments: deque[Segment] = field(default_factory=deque)
    fd: int | None = None
    dirty: bool = False
    next_recno: int = 0

    @property
    def live(self) -> int:
        return sum(s.live for s in self.segments)


@dataclass
class ScanResult:
    queue: Queue
    torn_bytes: int = 0
    losses: list[tuple[int, list[Path]]] = field(default_factory=list)
    """(records lost, segments holding the damage) per damaged stretch."""


def scan_queue(folder: Path, cursor: list[int] | None) -> ScanResult:
    """Load the segments of one queue folder; ``cursor`` = [segment index, offset, consumed] or None."""
    q = Queue(folder)
    folder.mkdir(exist_ok=True)
    result = ScanResult(q)
    paths = [p for p in sorted(folder.glob("*.seg")) if not (cursor and int(p.stem) < cursor[0])]
    for path in set(folder.glob("*.seg")) - set(paths):
        path.unlink()  # published before the stop, not yet deleted
    prev: int | None = None
    pending: list[tuple[Segment, int, int]] = []
    segments: list[Segment] = []
    for path in paths:
        index = int(path.stem)
        data = path.read_bytes()
        version = 1 if data.startswith(MAGIC_V1) else 2
        if not data.startswith((MAGIC, MAGIC_V1)):
            result.torn_bytes += min(len(data), len(MAGIC))
            logger.warning("spool: %s has a damaged header; reading its records anyway", path)
        seg = Segment(index, path, version, size=len(data))
        segments.append(seg)
        intact, damage = walk(data, len(MAGIC), version, prev)
        start = cursor[1] if cursor and index == cursor[0] else 0
        damage = [d for d in damage if d[0] >= start]  # damage in what was published does not matter
        events: list[tuple[int, Record | None, Range | None]] = [(r.start, r, None) for r in intact]
        events += [(d[0], None, d) for d in damage]
        for _, rec, dmg in sorted(events, key=lambda e: e[0]):
            if dmg is not None:
                pending.append((seg, *dmg))
                continue
            assert rec is not None
            if pending:
                gap = rec.recno - prev - 1 if rec.recno is not None and prev is not None else 0
                _lost(result, pending, max(gap, len(pending)), rec.recno)
                pending = []
            prev = rec.recno if rec.recno is not None else prev
            if rec.filler:
                seg.start = rec.end if rec.end <= start else seg.start
                continue
            seg.records += 1
            if rec.end <= start:
                seg.start, seg.consumed = rec.end, seg.records
    if pending:
        seg, a, b = pending[-1]
        if seg is segments[-1] and b == seg.size:
            pending.pop()
            result.torn_bytes += b - a
            seg.size = a
            logger.warning("spool: %s has a torn tail: %d bytes after offset %d cut off", seg.path, b - a, a)
            _truncate(seg.path, a)
        if pending:
            _lost(result, pending, len(pending), None)
    for seg in segments:
        if seg.live:
            q.segments.append(seg)
        else:
            seg.path.unlink(missing_ok=True)
    q.next_recno = 0 if prev is None else prev + 1
    return result


def _lost(result: ScanResult, ranges: list[tuple[Segment, int, int]], n: int, next_recno: int | None) -> None:
    for seg, a, b in ranges:
        fill(seg, [(a, b)], next_recno)
    # Records of a damaged range are not in seg.records (only intact ones are): nothing to subtract.
    result.losses.append((n, [seg.path for seg, _, _ in ranges]))


def fill(seg: Segment, damage: list[Range], next_recno: int | None) -> None:
    """Overwrite damaged ranges with filler records (in place: no space needed) so they are counted once."""
    if seg.version != 2 or next_recno is None:
        return
    try:
        fd = os.open(seg.path, os.O_WRONLY)
    except OSError:
        return  # read-only: the range is skipped again (and counted again) next time
    try:
        for a, b in damage:
            rec = filler(b - a, max(next_recno - 1, 0))
            if rec is not None:
                os.pwrite(fd, rec, a)
    except OSError:
        pass
    finally:
        os.close(fd)


def walk(data: bytes, pos: int, version: int, prev: int | None) -> tuple[list[Record], list[Range]]:
    """Intact records from ``pos`` on, and the damaged ranges skipped by resynchronising."""
    intact: list[Record] = []
    damage: list[Range] = []
    while pos < len(data):
        rec = record_at(data, pos, version)
        if rec is None:
            rec = resync(data, pos, version, prev)
            damage.append((pos, rec.start if rec else len(data)))
            if rec is None:
                break
        intact.append(rec)
        prev = rec.recno if rec.recno is not None else prev
        pos = rec.end
    return intact, damage


def _truncate(path: Path, size: int) -> None:
    try:
        os.truncate(path, size)
    except OSError as exc:
        logger.warning("spool: cannot cut the torn tail of %s: %s", path, exc)
