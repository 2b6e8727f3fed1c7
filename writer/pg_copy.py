"""Write a batch of frames to PostgreSQL in one transaction, exactly once per frame key.

Steps, in one transaction:
1. insert the batch's keys (producer, seq) with a digest of each frame's content into
   ``frame_keys`` (ON CONFLICT DO NOTHING): when the count inserted is the number of keys, all
   are new; otherwise the ledger's digests, and which rows this transaction inserted, are asked
   back. A key already there with the same digest is a duplicate (a re-send or a redelivery: skipped); with
   another digest it is key reuse (reported in ``BatchResult.reused``, never written; the
   caller dead-letters it). Inside one batch the first frame of a key wins the same way. The
   digest is ``entry_digest``, of the entry's bytes; a key stored by a writer older than it
   carries ``legacy_digest``, which is tried before a mismatch is called key reuse;
2. binary COPY the new frames into ``readings_packed``, one row per frame with its channels
   as arrays (the ``readings`` view shows one row per channel, migration 004), made by ``pack``
   (the writer's lane packs while decoding, off the commit path); a frame whose series are its
   device's layout is written with series NULL (migration 011, writer/names.py);
3. upsert ``current_state`` (only from frames not too far ahead of the writer's clock) and
   ``producer_progress`` from the same frames.
Concurrent writers cannot both insert a key: the second waits on the first's commit, then
sees the conflict. No Redis here; the caller acks after this returns.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple, cast

import orjson
import psycopg

from common.schema import MAX_REMEMBERED, Channel, Frame, Quality, Shape, Value, encode, shape_of
from writer.gate import CHECK_EVERY
from writer.names import Layout, NameIds, layout_of, name_ids
from writer.pg_arrays import (
    DATE_OID,
    FLOAT8_OID,
    INT2_OID,
    INT8_OID,
    DateArray,
    Float8Array,
    Int8Array,
    TextArray,
    TimestamptzArray,
    fixed_array,
    register_array_dumpers,
    text_array,
    timestamptz_array,
)

PACKED_COPY = (
    "COPY readings_packed (observed_at, received_at, seq, device_id, producer_id, session_id, series, num_values,"
    " text_values, qualities) FROM STDIN (FORMAT BINARY)"
)
"""One row per frame (migration 004); the ``readings`` view fans it out into one row per channel."""
PACKED_TYPES = ["timestamptz", "timestamptz", "int8", "int4", "int4", "int4", "bytea", "bytea", "bytea", "bytea"]
"""The arrays are encoded by writer/pg_arrays.py and passed through as bytes."""
_DIGEST = attrgetter("digest")
_DAY = attrgetter("day")
_LAYOUT = attrgetter("layout")
_PRODUCER = attrgetter("producer")
_SEQ = attrgetter("seq")
_CHANNELS = attrgetter("channels")
_DEVICE_ID = itemgetter(3)
"""The device id of a packed row (PACKED_COPY's fourth column)."""
_NUMBER = frozenset({float, type(None)})
PG_EPOCH_ORDINAL = date(2000, 1, 1).toordinal()
"""PostgreSQL counts dates from 2000-01-01."""
QUALITY_CODES = {q: i for i, q in enumerate(Quality)}
"""Quality -> the small code stored in readings_packed.qualities (the view's order)."""

# The batch's keys go to the ledger as binary arrays (writer/pg_arrays.py), in one statement
# that returns only a count: when it is the number of keys, every key is new (the common case)
# and nothing more is asked; otherwise the ledger's digests of the batch's keys, and which of
# them this transaction inserted (xmin), come back in a second query.
_INSERT_KEYS = (
    "INSERT INTO frame_keys (producer, seq, day, digest)"
    " SELECT * FROM unnest(%s::text[], %s::int8[], %s::date[], %s::int8[]) ON CONFLICT DO NOTHING"
)
_STORED_KEYS = (
    "SELECT k.producer, k.seq, k.digest, k.xmin = pg_current_xact_id()::xid FROM frame_keys k"
    " JOIN (SELECT DISTINCT producer, seq FROM unnest(%s::text[], %s::int8[]) AS b(producer, seq)) b"
    " USING (producer, seq)"
)
_UPSERT_STATE = (
    "INSERT INTO current_state (source, device, channel, observed_at, value, text_value, unit, quality, session)"
    " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[], %s::float8[], %s::text[],"
    " %s::text[], %s::text[], %s::text[])"
    " ON CONFLICT (source, device, channel) DO UPDATE SET"
    " observed_at = excluded.observed_at, value = excluded.value, text_value = excluded.text_value,"
    " unit = excluded.unit, quality = excluded.quality, session = excluded.session, updated_at = now()"
    " WHERE excluded.observed_at >= current_state.observed_at OR current_state.observed_at > %s"
)
_RECORD_PROGRESS = "SELECT record_progress(%s, %s, %s)"  # text[], int8[], text[] in binary (pg_arrays)
"""Loss accounting through the SECURITY DEFINER function of migration 005: it counts the ledger
rows this transaction inserted for these keys (the writer role cannot UPDATE producer_progress)."""
_INSERT_SNAPSHOT = (
    "INSERT INTO frames (observed_at, source, device, session, producer, seq, channels)"
    " SELECT * FROM unnest(%s::timestamptz[], %s::text[], %s::text[], %s::text[], %s::text[], %s::int8[],"
    " %s::jsonb[])"
)


_HAS_DUMPERS: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()
"""Connections whose adapters pass the binary arrays through (``register_array_dumpers``)."""


@dataclass
class BatchResult:
    frames: int = 0
    """Frames newly committed."""
    rows: int = 0
    """Readings rows newly committed."""
    duplicates: int = 0
    """Frames skipped because their key was already committed with the same content."""
    reused: list[int] = field(default_factory=list)
    """Positions (in ``frames``) of frames whose key was committed with other content: key
    reuse, not written; the caller dead-letters them."""


_NO_SESSION = b"\xff"
"""Stands for a missing ``sess`` in a digest (never a field's bytes: decode refuses non-UTF-8)."""


def entry_digest(fields: Mapping[bytes, bytes]) -> int:
    """64 bits of a hash of what a frame entry says: its obs, src, dev, sess and ch fields as the
    producer encoded them (common/schema.py). Call it on an entry ``decode`` accepted.

    Not rcv or mono: a producer replaying its spool may stamp them anew; the key and the
    content are what make a frame the same one. A replay or a redelivery carries the same bytes
    (the spool keeps encoded entries), and hashing them costs a tenth of re-serialising the
    decoded frame (issue 15). The fields cannot contain NUL bytes (decode refuses them), so
    joining them with NUL is unambiguous.
    """
    doc = b"\x00".join(
        (fields[b"obs"], fields[b"src"], fields[b"dev"], fields.get(b"sess", _NO_SESSION), fields[b"ch"])
    )
    return int.from_bytes(hashlib.blake2b(doc, digest_size=8).digest(), "big", signed=True)


def frame_digest(frame: Frame) -> int:
    """``entry_digest`` of the entry ``frame`` encodes to (for frames not read from a stream)."""
    return entry_digest({k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in encode(frame).items()})


def legacy_digest(frame: Frame) -> int:
    """The digest writers before ``entry_digest`` stored (migration 003 to issue 15's drain work):
    of the decoded frame re-serialised. A stored key whose digest differs from the new frame's
    is compared with this one too before it is called key reuse, so frames committed by an older
    writer and sent again (a spool replay, a redelivery across an upgrade) stay duplicates."""
    doc = orjson.dumps((frame.observed_at, frame.source, frame.device, frame.session, frame.channels), default=tuple)
    return int.from_bytes(hashlib.blake2b(doc, digest_size=8).digest(), "big", signed=True)


class Packed(NamedTuple):
    """What a frame's packed row and ledger key need from the frame alone (``pack``). The
    writer's lane makes it while decoding, in its read-ahead thread, so a commit only writes
    rows (issue 15)."""

    digest: int
    """``entry_digest`` of the entry the frame came from (``frame_digest`` when there is none)."""
    day: int
    """The UTC day of ``observed_at`` as PostgreSQL stores a date (days since 2000-01-01)."""
    layout: Layout
    values: bytes
    """float8[] in binary; NULL for text values and nulls."""
    texts: bytes | None
    """text[] in binary, or None when no value is text."""
    codes: bytes | None
    """int2[] of quality codes, or None when every quality is good."""


def pack(frame: Frame, digest: int, shaped: tuple[Shape, Sequence[Value]] | None = None) -> Packed:
    """A frame's ``Packed``. Pure. ``shaped``: its Shape and values as ``decode_shaped`` gave them
    (taken from the frame's channels when None); what depends on the shape alone (the quality
    codes) is made once per shape, so the common frame costs a few C-level passes."""
    shape, values = shaped or shape_of(frame)
    texts = None
    if _NUMBER.issuperset(map(type, values)):
        numbers = cast(Sequence[float | None], values)
    else:
        texts = text_array([v if isinstance(v, str) else None for v in values])
        numbers = [None if isinstance(v, str) else v for v in values]
    day = utc_day(frame.observed_at).toordinal() - PG_EPOCH_ORDINAL
    return Packed(digest, day, layout_of(frame, shape), fixed_array(FLOAT8_OID, numbers), texts, _quality_codes(shape))


_CODES: dict[int, tuple[Shape, bytes | None]] = {}
"""id(shape) -> (shape, its quality codes): the shape is kept so that its id is not reused."""


def _quality_codes(shape: Shape) -> bytes | None:
    """int2[] of the shape's quality codes, or None when all are good (the view reads NULL as good)."""
    known = _CODES.get(id(shape))
    if known is not None and known[0] is shape:
        return known[1]
    qualities = shape.qualities
    codes = None
    if qualities.count(Quality.GOOD) != len(qualities):
        codes = fixed_array(INT2_OID, [QUALITY_CODES[q] for q in qualities])
    if len(_CODES) >= MAX_REMEMBERED:
        _CODES.clear()
    _CODES[id(shape)] = (shape, codes)
    return codes


def write_frames(
    conn: psycopg.Connection[Any],
    frames: Sequence[Frame],
    snapshots: Sequence[Frame] = (),
    checkpoint: Callable[[], None] = lambda: None,
    state_horizon: datetime | None = None,
    packed: Sequence[Packed] | None = None,
) -> BatchResult:
    """Commit ``frames`` exactly once per key; raise psycopg errors (the caller classifies).

    ``state_horizon``: frames observed after it are stored but do not touch ``current_state``,
    and a current_state row dated after it is replaced by any newer-arriving value (one frame
    from a clock days ahead must not freeze it). None = no limit. ``packed``: the frames'
    ``Packed``, with the ``entry_digest`` of the entries they were decoded from (the writer's
    lane makes them while decoding); None = ``pack`` with ``frame_digest`` of each frame.
    """
    result = BatchResult()
    if conn not in _HAS_DUMPERS:
        register_array_dumpers(conn.adapters)
        _HAS_DUMPERS.add(conn)
    if packed is None:
        packed = [pack(f, frame_digest(f)) for f in frames]
    digests = list(map(_DIGEST, packed))
    ids = name_ids(conn, frames, list(map(_LAYOUT, packed)))  # before the batch's transaction (writer/names.py)
    names = list(map(_PRODUCER, frames))
    seq_numbers = list(map(_SEQ, frames))
    keys = list(zip(names, seq_numbers, strict=True))
    distinct = len(set(keys))
    producers = TextArray(text_array(names))
    seqs = Int8Array(fixed_array(INT8_OID, seq_numbers))
    with conn.transaction(), conn.cursor() as cur:
        days = DateArray(fixed_array(DATE_OID, list(map(_DAY, packed))))
        cur.execute(_INSERT_KEYS, [producers, seqs, days, Int8Array(fixed_array(INT8_OID, digests))])
        if cur.rowcount == distinct == len(frames):  # every key is new and once in the batch: all fresh
            fresh, fresh_packed = frames, packed
        else:
            if cur.rowcount == distinct:  # every key is new; the first frame of a key is the one inserted
                stored: dict[tuple[str, int], int | None] = {}
                for key, digest in zip(keys, digests, strict=True):
                    stored.setdefault(key, digest)
                inserted = set(stored)
            else:  # some keys were there before
                cur.execute(_STORED_KEYS, [producers, seqs])
                rows = cur.fetchall()
                stored = {(p, s): d for p, s, d, _ in rows}
                inserted = {(p, s) for p, s, _, mine in rows if mine}
            fresh, result.reused = sort_keys(frames, digests, inserted, stored, legacy_digest)
            packed_at = {id(f): p for f, p in zip(frames, packed, strict=True)}
            fresh_packed = [packed_at[id(f)] for f in fresh]
        result.duplicates = len(frames) - len(fresh) - len(result.reused)
        if not fresh:
            return result
        _copy_packed(cur, fresh, fresh_packed, ids, checkpoint)
        horizon = state_horizon or datetime.max.replace(tzinfo=UTC)
        state = _state_rows(fresh, list(map(_LAYOUT, fresh_packed)), horizon)
        result.rows = sum(map(len, map(_CHANNELS, fresh)))
        if state:
            cur.execute(_UPSERT_STATE, [*_state_arrays(state), horizon])
        everything = len(fresh) == len(frames)
        cur.execute(_RECORD_PROGRESS, [producers, seqs, _sources(frames)] if everything else _progress_arrays(fresh))
        if snapshots:
            fresh_ids = {id(f) for f in fresh}
            chosen = [s for s in snapshots if id(s) in fresh_ids]
            if chosen:
                cur.execute(_INSERT_SNAPSHOT, _snapshot_columns(chosen))
        result.frames = len(fresh)
    return result


def sort_keys(
    frames: Sequence[Frame],
    digests: Sequence[int],
    inserted: set[tuple[str, int]],
    stored: dict[tuple[str, int], int | None],
    other_digest: Callable[[Frame], int] | None = None,
) -> tuple[list[Frame], list[int]]:
    """Which frames to write, and the positions of the key reuses; the rest are duplicates. Pure.

    ``inserted``: keys this transaction added to the ledger; ``stored``: the ledger's digest of
    every key of the batch. A frame is written when its key is new and its digest is the one
    stored (the first such frame of a batch); a frame whose digest differs from the stored one
    is key reuse, unless ``other_digest`` of it (the digest an older writer stored) is the one
    stored: then it is a duplicate. A stored digest of None (a key from before migration 003)
    matches anything.
    """
    pending = set(inserted)
    fresh: list[Frame] = []
    reused: list[int] = []
    for i, (f, digest) in enumerate(zip(frames, digests, strict=True)):
        key = f.key
        known = stored.get(key)
        if key in pending and known == digest:
            pending.discard(key)  # a key twice in one batch is written once
            fresh.append(f)
        elif known is not None and known != digest and (other_digest is None or other_digest(f) != known):
            reused.append(i)
    return fresh, reused


def utc_day(ts: datetime) -> date:
    """The day of the readings partition (partitions are UTC days). Frames decoded from the
    streams are UTC already, so the conversion is skipped for them (per-frame hot path)."""
    return ts.date() if ts.tzinfo is UTC else ts.astimezone(UTC).date()


def _copy_packed(
    cur: psycopg.Cursor[Any],
    frames: Sequence[Frame],
    packed: Sequence[Packed],
    ids: NameIds,
    checkpoint: Callable[[], None],
) -> None:
    """Binary COPY one packed row per frame, the batch's rows grouped by device (``by_device``).
    The hot loop of the writer: per frame, one dict lookup and one row (the arrays are made by
    ``pack``)."""
    producers, sessions, layout_ids = ids.producers, ids.sessions, ids.layouts
    rows = []
    for f, p in zip(frames, packed, strict=True):
        sess = f.session
        device_id, series = layout_ids[p.layout]
        rows.append((
            f.observed_at, f.received_at, f.seq, device_id, producers[f.producer],
            None if sess is None else sessions[sess], series, p.values, p.texts, p.codes,
        ))  # fmt: skip
    with cur.copy(PACKED_COPY) as copy:
        copy.set_types(PACKED_TYPES)
        write = copy.write_row
        for i, row in enumerate(by_device(rows)):
            if not i % CHECK_EVERY:
                checkpoint()  # strict priority: pause while the urgent lane works
            write(row)


def by_device(rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Packed rows ordered by device id, each device's in batch order (a stable sort). Pure.

    The heap then holds a device's frames of one batch side by side: a query of one device
    (the ``readings`` view's common filter) reads a few pages per batch instead of a page per
    frame. How much that gives depends on the batch: a drained backlog or an import commits up
    to ``batch_max_rows`` readings at a time, live data at a low rate a few frames.
    """
    return sorted(rows, key=_DEVICE_ID)


def _state_rows(frames: Sequence[Frame], layouts: Sequence[Layout], horizon: datetime) -> list[tuple[Any, ...]]:
    """current_state rows: the latest value of each channel of each device (``latest_by_device``)
    among the frames observed no later than ``horizon`` (a frame from the future is stored, but is
    not the current state). Sorted, so concurrent writers lock current_state rows in the same
    order (no 40P01 deadlocks)."""
    rows = []
    for (src, dev), dev_state in sorted(latest_by_device(frames, layouts, horizon).items()):
        for name in sorted(dev_state):
            f, (_, value, unit, quality) = dev_state[name]
            text = value if isinstance(value, str) else None
            number = None if text is not None else value
            rows.append((src, dev, name, f.observed_at, number, text, unit, quality, f.session))
    return rows


def latest_by_device(
    frames: Sequence[Frame], layouts: Sequence[Layout], horizon: datetime | None = None
) -> dict[tuple[str, str], dict[str, tuple[Frame, Channel]]]:
    """(source, device) -> channel name -> (frame, channel) of the frame observed last (no later
    than ``horizon``; None = no limit) that has the channel; of two observed at the same time, the
    later in the batch. Pure. Only the latest frame of each layout can hold a channel's latest
    value, so a device whose frames all have the same channels costs one frame's channels, not a
    batch's."""
    latest: dict[Layout, tuple[int, Frame]] = {}
    for i, (f, layout) in enumerate(zip(frames, layouts, strict=True)):
        obs = f.observed_at
        if horizon is None or obs <= horizon:
            known = latest.get(layout)
            if known is None or obs >= known[1].observed_at:
                latest[layout] = (i, f)
    by_device: dict[tuple[str, str], list[tuple[int, Frame]]] = {}
    for layout, item in latest.items():
        by_device.setdefault(layout[:2], []).append(item)
    return {device: _merge_latest(items) for device, items in by_device.items()}


def _merge_latest(latest: Iterable[tuple[int, Frame]]) -> dict[str, tuple[Frame, Channel]]:
    """The channels of each layout's latest (batch position, frame), newest first: of equal
    times the later in the batch."""
    state: dict[str, tuple[Frame, Channel]] = {}
    for _, f in sorted(latest, key=lambda item: (item[1].observed_at, item[0]), reverse=True):
        for ch in f.channels:
            if ch.name not in state:
                state[ch.name] = (f, ch)
    return state


def _progress_arrays(frames: Sequence[Frame]) -> list[bytes]:
    """record_progress's producers, seqs and sources, one per frame, as binary arrays."""
    return [
        TextArray(text_array([f.producer for f in frames])),
        Int8Array(fixed_array(INT8_OID, [f.seq for f in frames])),
        _sources(frames),
    ]


def _state_arrays(rows: Sequence[tuple[Any, ...]]) -> list[bytes]:
    """_UPSERT_STATE's columns as binary arrays (psycopg would dump lists of text in Python, with a
    regular expression per element)."""
    src, dev, name, observed, value, text, unit, quality, session = zip(*rows, strict=True)
    return [
        TextArray(text_array(src)), TextArray(text_array(dev)), TextArray(text_array(name)),
        TimestamptzArray(timestamptz_array(observed)), Float8Array(fixed_array(FLOAT8_OID, value)),
        TextArray(text_array(text)), TextArray(text_array(unit)), TextArray(text_array(quality)),
        TextArray(text_array(session)),
    ]  # fmt: skip


def _sources(frames: Sequence[Frame]) -> TextArray:
    return TextArray(text_array([f.source for f in frames]))


def _snapshot_columns(frames: Sequence[Frame]) -> list[list[Any]]:
    def doc(f: Frame) -> str:
        return orjson.dumps({c.name: [c.value, c.unit, c.quality.value] for c in f.channels}).decode()

    cols: list[list[Any]] = [[], [], [], [], [], [], []]
    for f in frames:
        for i, v in enumerate((f.observed_at, f.source, f.device, f.session, f.producer, f.seq, doc(f))):
            cols[i].append(v)
    return cols
