"""``telemetry-admin tap``: follow the priority streams live and print their frames as JSON lines.

Reads with plain XREAD (no consumer group): it never acks, claims, creates groups, trims or
writes anything, so the writer's pending and delivered counts are the same with or without a
tap. It starts at ``$``: each stream's last entry when the tap starts (resolved once with
XREVRANGE, so nothing that arrives between two reads is missed), then follows every stream from
the last ID it printed. Frames go to stdout, one JSON object a line (``common.frame_json`` plus
``stream`` and ``id``); notices (start, rejection entries, undecodable entries, lost link) go to
stderr. Filters are shell patterns (``fnmatch``): ``--channel 'rpm*'`` keeps only matching
channels and drops frames left with none.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from typing import IO, Any

from redis import Redis
from redis.exceptions import RedisError

from common.errors import DecodeError, RejectedInputError
from common.frame_json import frame_to_json
from common.schema import Frame, Priority, decode
from common.streams import StreamNames, reply_text

READ_COUNT = 500
"""Entries asked for per XREAD call (per stream)."""


@dataclass(frozen=True)
class TapFilter:
    """Which frames (source, device) and channels to show; None = all."""

    source: str | None = None
    device: str | None = None
    channel: str | None = None

    def select(self, frame: Frame) -> Frame | None:
        """The frame to print (channels filtered), or None when nothing of it matches."""
        if self.source is not None and not fnmatchcase(frame.source, self.source):
            return None
        if self.device is not None and not fnmatchcase(frame.device, self.device):
            return None
        if self.channel is None:
            return frame
        pattern = self.channel
        kept = tuple(ch for ch in frame.channels if fnmatchcase(ch.name, pattern))
        return replace(frame, channels=kept) if kept else None


@dataclass
class TapStats:
    shown: int = 0
    filtered: int = 0
    rejections: int = 0
    undecodable: int = 0
    link_errors: int = 0


def start_ids(redis: Redis, keys: Sequence[str]) -> dict[str, str]:
    """Each stream's newest entry ID (``$`` resolved once); ``0-0`` for a stream not there yet."""
    ids = {}
    for key in keys:
        last = redis.xrevrange(key, count=1)
        ids[key] = reply_text(last[0][0]) if last else "0-0"
    return ids


def tap(
    redis: Redis,
    names: StreamNames,
    priorities: Sequence[Priority],
    flt: TapFilter,
    out: IO[str],
    notices: IO[str],
    stop: threading.Event,
    *,
    count: int | None = None,
    duration_s: float | None = None,
    block_ms: int = 1000,
    clock: Callable[[], float] = time.monotonic,
) -> TapStats:
    """Print frames until ``stop``, ``count`` frames shown or ``duration_s`` passed; return the counts."""
    stats = TapStats()
    keys = [names.stream(p) for p in priorities]
    ids = _start(redis, keys, notices, stop, stats)
    print(f"tap: following {', '.join(keys)} from $ (no consumer group; nothing is acked)", file=notices, flush=True)
    deadline = None if duration_s is None else clock() + duration_s
    while not stop.is_set() and (count is None or stats.shown < count):
        if deadline is not None and clock() >= deadline:
            break
        try:
            reply: Any = redis.xread(dict(ids), count=READ_COUNT, block=block_ms)  # type: ignore[arg-type]
        except RedisError as exc:
            stats.link_errors += 1
            print(f"tap: Redis: {exc}; retrying in 1s from the last entry shown", file=notices, flush=True)
            stop.wait(1.0)
            continue
        for raw_key, entries in reply or []:
            key = reply_text(raw_key)
            priority = names.priority_of(key)
            for raw_id, fields in entries:
                ids[key] = entry_id = reply_text(raw_id)
                _show(key, entry_id, fields, priority, flt, out, notices, stats)
                if count is not None and stats.shown >= count:
                    return stats
    return stats


def _start(
    redis: Redis, keys: Sequence[str], notices: IO[str], stop: threading.Event, stats: TapStats
) -> dict[str, str]:
    while True:
        try:
            return start_ids(redis, keys)
        except RedisError as exc:
            stats.link_errors += 1
            print(f"tap: Redis: {exc}; retrying in 1s", file=notices, flush=True)
            if stop.wait(1.0):
                return dict.fromkeys(keys, "$")


def _show(
    key: str,
    entry_id: str,
    fields: dict[bytes, bytes],
    priority: Priority,
    flt: TapFilter,
    out: IO[str],
    notices: IO[str],
    stats: TapStats,
) -> None:
    try:
        frame = decode(fields, priority)
    except RejectedInputError as exc:
        stats.rejections += 1
        print(f"tap: {key} {entry_id}: rejection entry (the writer dead-letters it): {exc}", file=notices, flush=True)
        return
    except DecodeError as exc:
        stats.undecodable += 1
        print(f"tap: {key} {entry_id}: undecodable entry (the writer dead-letters it): {exc}", file=notices, flush=True)
        return
    selected = flt.select(frame)
    if selected is None:
        stats.filtered += 1
        return
    line = {"stream": key, "id": entry_id, **frame_to_json(selected)}
    out.write(json.dumps(line, ensure_ascii=False) + "\n")
    out.flush()
    stats.shown += 1
