"""Write a batch of frames to PostgreSQL in one transaction, exactly once per frame key.

Steps, in one transaction:
1. insert the batch's keys into ``frame_keys`` (ON CONFLICT DO NOTHING RETURNING): the keys
   returned are new; any other frame was committed before (a re-send or a redelivery);
2. binary COPY the new frames' channels into ``readings``;
3. upsert ``current_state`` and ``producer_progress`` from the same frames.
Concurrent writers cannot both insert a key: the second waits on the first's commit, then
sees the conflict. No Redis here; the caller acks after this returns.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import repeat
from operator import itemgetter
from typing import Any

import orjson
import psycopg

from common.schema import Channel, Frame
from writer.gate import CHECK_EVERY

READINGS_COPY = (
    "COPY readings (observed_at, received_at, source, device, channel, value, text_value,"
    " unit, quality, session, producer, seq) FROM STDIN (FORMAT BINARY)"
)
_NAME = itemgetter(0)

READINGS_TYPES = [
    "timestamptz", "timestamptz", "text", "text", "text", "float8", "text", "text", "text", "text", "text", "int8",
]  # fmt: skip

# The batch's keys go to a temporary table by binary COPY (C-formatted; array parameters
# are dumped in Python, which cost a tenth of the writer's time), then into the ledger.
_CREATE_BATCH_KEYS = (
    "CREATE TEMP TABLE IF NOT EXISTS batch_keys (producer text, seq int8, observed_at timestamptz)"
    " ON COMMIT DELETE ROWS"
)
_COPY_BATCH_KEYS = "COPY batch_keys (producer, seq, observed_at) FROM STDIN (FORMAT BINARY)"
_INSERT_KEYS = (
    "INSERT INTO frame_keys (producer, seq, observed_at) SELECT producer, seq, observed_at FROM batch_keys"
    " ON CONFLICT DO NOTHING RETURNING producer, seq"
)
_UPSERT_STATE = (
    "INSERT INTO current_state (source, device, channel, observed_at, value, text_value, unit, quality, session)"
    " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[], %s::float8[], %s::text[],"
    " %s::text[], %s::text[], %s::text[])"
    " ON CONFLICT (source, device, channel) DO UPDATE SET"
    " observed_at = excluded.observed_at, value = excluded.value, text_value = excluded.text_value,"
    " unit = excluded.unit, quality = excluded.quality, session = excluded.session, updated_at = now()"
    " WHERE excluded.observed_at >= current_state.observed_at"
)
_UPSERT_PROGRESS = (
    "INSERT INTO producer_progress AS p (producer, source, frames, max_seq)"
    " SELECT * FROM unnest(%s::text[], %s::text[], %s::int8[], %s::int8[])"
    " ON CONFLICT (producer) DO UPDATE SET frames = p.frames + excluded.frames,"
    " max_seq = greatest(p.max_seq, excluded.max_seq), last_seen = now()"
)
_INSERT_SNAPSHOT = (
    "INSERT INTO frames (observed_at, source, device, session, producer, seq, channels)"
    " SELECT * FROM unnest(%s::timestamptz[], %s::text[], %s::text[], %s::text[], %s::text[], %s::int8[],"
    " %s::jsonb[])"
)


_HAS_BATCH_KEYS: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()
"""Connections whose session already has the temporary batch_keys table."""


@dataclass
class BatchResult:
    frames: int = 0
    """Frames newly committed."""
    rows: int = 0
    """Readings rows newly committed."""
    duplicates: int = 0
    """Frames skipped because their key was already committed."""


def write_frames(
    conn: psycopg.Connection[Any],
    frames: Sequence[Frame],
    snapshots: Sequence[Frame] = (),
    checkpoint: Callable[[], None] = lambda: None,
) -> BatchResult:
    """Commit ``frames`` exactly once per key; raise psycopg errors (the caller classifies)."""
    result = BatchResult()
    if conn not in _HAS_BATCH_KEYS:
        # Outside the batch transaction: a rolled-back batch must not take the table with it.
        conn.execute(_CREATE_BATCH_KEYS)
        _HAS_BATCH_KEYS.add(conn)
    with conn.transaction(), conn.cursor() as cur:
        with cur.copy(_COPY_BATCH_KEYS) as copy:
            copy.set_types(["text", "int8", "timestamptz"])
            for f in frames:
                copy.write_row((f.producer, f.seq, f.observed_at))
        cur.execute(_INSERT_KEYS)
        new_keys = set(cur.fetchall())
        fresh = []
        for f in frames:
            key = (f.producer, f.seq)
            if key in new_keys:
                new_keys.discard(key)  # a key twice in one batch is written once
                fresh.append(f)
        result.duplicates = len(frames) - len(fresh)
        if not fresh:
            return result
        state = _copy_readings(cur, fresh, checkpoint)
        result.rows = sum(len(f.channels) for f in fresh)
        cur.execute(_UPSERT_STATE, [list(col) for col in zip(*state, strict=True)])
        cur.execute(_UPSERT_PROGRESS, _progress(fresh))
        if snapshots:
            fresh_ids = {id(f) for f in fresh}
            chosen = [s for s in snapshots if id(s) in fresh_ids]
            if chosen:
                cur.execute(_INSERT_SNAPSHOT, _snapshot_columns(chosen))
        result.frames = len(fresh)
    return result


def _copy_readings(
    cur: psycopg.Cursor[Any], frames: Sequence[Frame], checkpoint: Callable[[], None]
) -> list[tuple[Any, ...]]:
    """Binary COPY the frames' channels into readings; return current_state rows (latest per channel).

    The hot loop of the writer: one tuple per reading and one C-level dict update per frame.
    """
    latest: dict[tuple[str, str], dict[str, tuple[Frame, Channel]]] = {}
    newest: dict[tuple[str, str], datetime] = {}
    with cur.copy(READINGS_COPY) as copy:
        copy.set_types(READINGS_TYPES)
        write = copy.write_row
        for i, f in enumerate(frames):
            if not i % CHECK_EVERY:
                checkpoint()  # strict priority: pause while the urgent lane works
            obs, rcv, src, dev, sess, prod, seq = (
                f.observed_at, f.received_at, f.source, f.device, f.session, f.producer, f.seq,
            )  # fmt: skip
            chans = f.channels
            for name, value, unit, quality in chans:
                if value is None or type(value) is float:
                    write((obs, rcv, src, dev, name, value, None, unit, quality, sess, prod, seq))
                else:
                    write((obs, rcv, src, dev, name, None, value, unit, quality, sess, prod, seq))
            key = (src, dev)
            dev_state = latest.get(key)
            if dev_state is None:
                dev_state = latest[key] = {}
            if obs >= newest.get(key, obs):
                newest[key] = obs
                dev_state.update(zip(map(_NAME, chans), zip(repeat(f), chans), strict=False))  # repeat() is endless
            else:  # an older frame than one already seen: compare channel by channel
                for ch in chans:
                    prev = dev_state.get(ch.name)
                    if prev is None or prev[0].observed_at <= obs:
                        dev_state[ch.name] = (f, ch)
    # Sorted, so concurrent writers lock current_state rows in the same order (no 40P01 deadlocks).
    rows = []
    for (src, dev), dev_state in sorted(latest.items()):
        for name in sorted(dev_state):
            f, (_, value, unit, quality) = dev_state[name]
            text = value if isinstance(value, str) else None
            number = None if text is not None else value
            rows.append((src, dev, name, f.observed_at, number, text, unit, quality, f.session))
    return rows


def _progress(frames: Sequence[Frame]) -> list[list[Any]]:
    per: dict[str, list[Any]] = {}
    for f in frames:
        entry = per.get(f.producer)
        if entry is None:
            per[f.producer] = [f.source, 1, f.seq]
        else:
            entry[1] += 1
            entry[2] = max(entry[2], f.seq)
    keys = sorted(per)
    return [keys, [per[k][0] for k in keys], [per[k][1] for k in keys], [per[k][2] for k in keys]]


def _snapshot_columns(frames: Sequence[Frame]) -> list[list[Any]]:
    def doc(f: Frame) -> str:
        return orjson.dumps({c.name: [c.value, c.unit, c.quality.value] for c in f.channels}).decode()

    cols: list[list[Any]] = [[], [], [], [], [], [], []]
    for f in frames:
        for i, v in enumerate((f.observed_at, f.source, f.device, f.session, f.producer, f.seq, doc(f))):
            cols[i].append(v)
    return cols
