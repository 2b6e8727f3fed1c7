"""The one message schema: a Frame is one device's readings at one instant.

A frame travels as one Redis stream entry whose fields stay readable in ``redis-cli XRANGE``::

    v     "1"                                  schema version
    src   "obd"                                source name (SOURCE_NAME; producers/registry.py lists the live ones)
    dev   "elm327-0"                           device
    prod  "obd@edge1/18c9f3a2b7e-4f1a"         producer identity (name/run)
    seq   "42"                                 per-producer sequence, from 1, no gaps
    obs   "2026-11-23T10:00:00.123456+00:00"   observed_at, UTC (device time where it has one)
    rcv   "2026-11-23T10:00:00.125000+00:00"   received_at, UTC (host time)
    mono  "123456789012"                       host monotonic clock, ns
    sess  "run-7"                              optional session
    ch    [["rpm",1303.75,"rpm","good"],["vin","WP0ZZZ","","good"]]

``(prod, seq)`` is the idempotency key. ``encode`` and ``decode`` are pure and are the only
code that knows this layout. The stream key (not the entry) carries the priority.

A *rejection entry* (``encode_rejection``) carries input a producer refused (a bad jsonl line,
an import row) to the writer, which dead-letters it as is: producers may only XADD to the
priority streams, not to the dead-letter stream. Its fields: ``rej`` "1" (the marker; no ``v``),
``src``, ``dev``, ``prod``, ``kind``, ``reason``, ``file``, ``line``, ``size`` and ``raw`` (the
first MAX_RAW_LEN bytes of the input). ``validate_frame`` applies decode's limits to a Frame,
so a producer accepts exactly what the writer accepts.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple

import orjson

from common.errors import DecodeError, RejectedInputError

SCHEMA_VERSION = "1"

MAX_NAME_LEN = 200
"""Longest device, producer, session or channel name accepted (characters)."""

MAX_TEXT_LEN = 65_536
"""Longest text value accepted (characters)."""

MAX_CHANNELS = 10_000
"""Default for ``decode(max_channels=...)``: most channels in one frame (the writer's MAX_CHANNELS)."""

MAX_UNIT_LEN = 32
"""Longest unit accepted (characters)."""

MAX_RAW_LEN = 4096
"""Bytes of rejected input kept in a rejection entry (the rest is counted in ``size``)."""

REJECTION_MARK = b"rej"
"""Field that marks a rejection entry (common.schema.encode_rejection)."""


class Priority(StrEnum):
    """Stream priority, in strict order: the writer always drains a higher one first."""

    CRITICAL = "critical"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"
    BULK = "bulk"


class Quality(StrEnum):
    GOOD = "good"
    WARN = "warn"
    NO_DATA = "no_data"
    ERROR = "error"


_QUALITY_OF = {q.value: q for q in Quality}
_ZERO = timedelta(0)
SOURCE_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
"""The form of a source name. The writer checks the form, not membership of a list (the sources
are listed by ``producers/registry.py``, which ``common`` and the writer do not import): a new
producer deployed before the writer is upgraded must not lose its frames to the dead letters."""

Value = float | str | None


class Channel(NamedTuple):
    """One named value of a frame. ``value`` is None only with quality no_data or error.

    A NamedTuple rather than a dataclass: the writer builds hundreds of thousands a second.
    """

    name: str
    value: Value
    unit: str = ""
    quality: Quality = Quality.GOOD


@dataclass(frozen=True, slots=True)
class Frame:
    """One device's readings at one instant.

    ``producer`` and ``seq`` are stamped by the publisher; sources leave them empty.
    ``priority`` selects the stream and is not encoded in the entry.
    """

    source: str
    device: str
    observed_at: datetime
    received_at: datetime
    monotonic_ns: int
    channels: tuple[Channel, ...]
    session: str | None = None
    producer: str = ""
    seq: int = 0
    priority: Priority = field(default=Priority.NORMAL, compare=False)

    @property
    def key(self) -> tuple[str, int]:
        return (self.producer, self.seq)


def encode(frame: Frame) -> dict[str, str | bytes]:
    """Frame -> stream entry fields (for XADD). Raises ValueError on a non-finite number."""
    channels = [[c.name, c.value, c.unit, c.quality.value] for c in frame.channels]
    for c in frame.channels:
        if isinstance(c.value, float) and not math.isfinite(c.value):
            raise ValueError(f"channel {c.name!r} has non-finite value {c.value!r}")
    fields: dict[str, str | bytes] = {
        "v": SCHEMA_VERSION,
        "src": frame.source,
        "dev": frame.device,
        "prod": frame.producer,
        "seq": str(frame.seq),
        "obs": _iso(frame.observed_at),
        "rcv": _iso(frame.received_at),
        "mono": str(frame.monotonic_ns),
    }
    if frame.session is not None:
        fields["sess"] = frame.session
    fields["ch"] = orjson.dumps(channels)
    return fields


@dataclass(frozen=True, slots=True)
class Rejection:
    """Input a producer refused, on its way to the dead-letter stream (via the writer)."""

    source: str
    device: str
    kind: str
    reason: str
    raw: bytes
    size: int
    file: str = ""
    line: int = 0


def encode_rejection(rejection: Rejection, producer: str) -> dict[str, str | bytes]:
    """Rejection -> stream entry fields (see the module docstring). Pure."""
    fields: dict[str, str | bytes] = {
        "rej": "1",
        "src": rejection.source,
        "dev": rejection.device[:MAX_NAME_LEN],
        "prod": producer,
        "kind": rejection.kind[:64],
        "reason": rejection.reason[:1000],
        "size": str(rejection.size),
        "raw": rejection.raw[:MAX_RAW_LEN],
    }
    if rejection.file:
        fields["file"] = rejection.file[:1000]
    if rejection.line:
        fields["line"] = str(rejection.line)
    return fields


def validate_frame(frame: Frame) -> None:
    """Raise DecodeError if the writer's ``decode`` would refuse ``frame`` once encoded. Pure.

    Checks what a source can get wrong (producer and seq are the publisher's): source,
    names (length, NUL), text values (length, NUL, lone surrogates), units, qualities,
    duplicate channels, non-finite numbers, UTC timestamps. Written for the hot path.
    """
    if not SOURCE_NAME.fullmatch(frame.source):
        raise DecodeError(f"invalid source name {frame.source[:40]!r} (1-32 of a-z, 0-9, _; a letter first)")
    _check_name("dev", frame.device)
    if frame.session is not None:
        _check_name("sess", frame.session)
    for name, ts in (("obs", frame.observed_at), ("rcv", frame.received_at)):
        if ts.tzinfo is not UTC and ts.utcoffset() != _ZERO:
            raise DecodeError(f"field {name!r} is not UTC: {str(ts)[:40]!r}")
    channels = frame.channels
    if not channels:
        raise DecodeError("channels must be a non-empty JSON array")
    for c in channels:
        name, value, unit = c[0], c[1], c[2]
        if type(name) is not str or not 0 < len(name) <= MAX_NAME_LEN:
            raise DecodeError(f"channel name must be a 1-{MAX_NAME_LEN} character string")
        kind = type(value)
        if kind is float:
            if not math.isfinite(value):  # type: ignore[arg-type]
                raise DecodeError(f"channel {name[:40]!r} has non-finite value {value!r}")
        elif kind is str:
            if len(value) > MAX_TEXT_LEN:  # type: ignore[arg-type]
                raise DecodeError(f"channel {name[:40]!r}: text value longer than {MAX_TEXT_LEN}")
            _check_text(value, True, "", name)  # type: ignore[arg-type]
        elif kind is int:
            pass
        elif value is not None:
            raise DecodeError(f"channel {name[:40]!r}: value must be a number, string or null")
        if type(unit) is not str or len(unit) > MAX_UNIT_LEN:
            raise DecodeError(f"channel {name[:40]!r}: unit must be a string of at most {MAX_UNIT_LEN} characters")
        if type(c[3]) is not Quality:
            raise DecodeError(f"channel {name[:40]!r}: unknown quality {str(c[3])[:20]!r}")
        _check_text(name, True, "channel name")
        if unit:
            _check_text(unit, True, " unit", name)
    if len(channels) > 1 and len({c[0] for c in channels}) != len(channels):
        seen: set[str] = set()
        dup = next(c[0] for c in channels if c[0] in seen or seen.add(c[0]))  # type: ignore[func-returns-value]
        raise DecodeError(f"duplicate channel {dup[:40]!r}")


def _check_name(field_name: str, text: str) -> None:
    if type(text) is not str or not text or len(text) > MAX_NAME_LEN:
        raise DecodeError(f"field {field_name!r} must be 1-{MAX_NAME_LEN} characters")
    _check_text(text, False, f"field {field_name!r}")


def _check_text(text: str, in_json: bool, what: str, channel: str | None = None) -> None:
    """Refuse NUL (and, inside channels, an escaped NUL) and lone surrogates.

    ``what`` names the text, after ``channel <name>`` when ``channel`` is given (formatted only on error).
    """
    # decode() looks for an escaped NUL in the raw channel JSON, so inside channels the
    # six characters backslash-u0000 (escaped again by JSON) are refused too.
    problem = None
    if "\x00" in text or (in_json and "\\u0000" in text):
        problem = "contains a NUL character"
    elif not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            problem = "is not valid UTF-8 (lone surrogate)"
    if problem is not None:
        label = what if channel is None else f"channel {channel[:40]!r}{what}"
        raise DecodeError(f"{label} {problem}")


def _iso(ts: datetime) -> str:
    if ts.tzinfo is None or ts.utcoffset() != timedelta(0):
        raise ValueError(f"timestamp {ts!r} is not UTC")
    return ts.isoformat(timespec="microseconds")


class Shape(NamedTuple):
    """A frame's channels without their values: names, units and qualities, in order, checked.

    ``decode_shaped`` gives the frames of one shape the same object (a device sends a few shapes
    frame after frame), so a consumer can key what it derives from them by the shape.
    """

    names: tuple[str, ...]
    units: tuple[str, ...]
    qualities: tuple[Quality, ...]


def shape_of(frame: Frame) -> tuple[Shape, tuple[Value, ...]]:
    """A frame's Shape and values, from its channels (``decode_shaped`` gives them for an entry). Pure."""
    names, values, units, qualities = zip(*frame.channels, strict=True) if frame.channels else ((), (), (), ())
    return Shape(names, units, qualities), values


def decode(fields: dict[bytes, bytes], priority: Priority = Priority.NORMAL, max_channels: int = MAX_CHANNELS) -> Frame:
    """Stream entry fields (as redis-py returns them, bytes) -> Frame (``decode_shaped``'s frame)."""
    return decode_shaped(fields, priority, max_channels)[0]


def decode_shaped(
    fields: dict[bytes, bytes], priority: Priority = Priority.NORMAL, max_channels: int = MAX_CHANNELS
) -> tuple[Frame, Shape, tuple[Value, ...]]:
    """Stream entry fields (as redis-py returns them, bytes) -> (Frame, its Shape, its values in
    channel order).

    Raises DecodeError with a short reason for anything not matching the schema:
    missing or extra fields, wrong types, non-finite numbers, NUL bytes, lone surrogates,
    naive or non-UTC timestamps, malformed source names, unknown qualities, oversized names, more than
    ``max_channels`` channels. Raises MemoryError (never DecodeError) when memory runs out while
    parsing, orjson's allocation failures included: a resource error says nothing about the data.
    It does not bound the entry's total size: the caller checks that before calling.
    """
    try:
        version = fields[b"v"]
    except KeyError:
        if REJECTION_MARK in fields:
            raise RejectedInputError(_rejection_reason(fields)) from None
        raise DecodeError("missing field 'v' (not a frame entry)") from None
    if version != b"1":
        raise DecodeError(f"unsupported schema version {version[:20]!r}")
    try:
        raw_src = fields[b"src"]
        known_src = _SOURCES.get(raw_src)
        src = known_src or _text(fields, b"src")
        dev = _name(fields, b"dev")
        prod = _name(fields, b"prod")
        seq = _int(fields, b"seq")
        obs = _time(fields, b"obs")
        rcv = _time(fields, b"rcv")
        mono = _int(fields, b"mono")
        raw_ch = fields[b"ch"]
    except KeyError as exc:
        raise DecodeError(f"missing field {exc.args[0].decode()!r}") from None
    sess = _name(fields, b"sess") if b"sess" in fields else None
    if len(fields) > 10 or (len(fields) == 10 and sess is None):
        extra = sorted(k.decode(errors="replace") for k in fields if k not in _FIELD_NAMES)
        raise DecodeError(f"unexpected fields {extra[:5]}")
    if known_src is None:
        if not SOURCE_NAME.fullmatch(src):
            raise DecodeError(f"invalid source name {src[:40]!r} (1-32 of a-z, 0-9, _; a letter first)")
        _remember(_SOURCES, raw_src, src)
    if seq < 1:
        raise DecodeError(f"seq must be >= 1, got {seq}")
    channels, shape, values = _channels(raw_ch, max_channels)
    return Frame(src, dev, obs, rcv, mono, channels, sess, prod, seq, priority), shape, values


def _rejection_reason(fields: dict[bytes, bytes]) -> str:
    def get(name: bytes) -> str:
        return fields.get(name, b"").decode(errors="replace")[:500]

    where = f"{get(b'file')}:{get(b'line')}" if b"file" in fields else f"line {get(b'line') or '?'}"
    return f"rejected by {get(b'prod')} ({get(b'src')}, {where}): {get(b'kind')}: {get(b'reason')}"


_FIELD_NAMES = frozenset([b"v", b"src", b"dev", b"prod", b"seq", b"obs", b"rcv", b"mono", b"sess", b"ch"])


def _text(fields: dict[bytes, bytes], name: bytes) -> str:
    raw = fields[name]
    if b"\x00" in raw:
        raise DecodeError(f"field {name.decode()!r} contains a NUL byte")
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise DecodeError(f"field {name.decode()!r} is not UTF-8: {exc.reason}") from None


_SOURCES: dict[bytes, str] = {}
"""``src`` fields already accepted -> their text (a writer sees the same few, entry after entry)."""
_NAMES: dict[bytes, str] = {}
"""``dev``, ``prod`` and ``sess`` fields already accepted -> their text."""
MAX_REMEMBERED = 4096
"""Entries of each table above (and of _SHAPES); a full table starts afresh (a bound on memory)."""


def _remember(table: dict[bytes, str], raw: bytes, text: str) -> None:
    if raw not in table:
        if len(table) >= MAX_REMEMBERED:
            table.clear()
        table[raw] = text


def _name(fields: dict[bytes, bytes], name: bytes) -> str:
    raw = fields[name]
    text = _NAMES.get(raw)
    if text is None:
        text = _text(fields, name)
        if not text or len(text) > MAX_NAME_LEN:
            raise DecodeError(f"field {name.decode()!r} must be 1-{MAX_NAME_LEN} characters")
        _remember(_NAMES, raw, text)
    return text


def _int(fields: dict[bytes, bytes], name: bytes) -> int:
    raw = fields[name]
    if not raw.isdigit() or len(raw) > 19:
        raise DecodeError(f"field {name.decode()!r} is not a non-negative integer: {raw[:30]!r}")
    return int(raw)


def _time(fields: dict[bytes, bytes], name: bytes) -> datetime:
    raw = fields[name]
    try:
        ts = datetime.fromisoformat(raw.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise DecodeError(f"field {name.decode()!r} is not an ISO 8601 time: {raw[:40]!r}") from None
    if ts.tzinfo is not UTC and ts.utcoffset() != timedelta(0):
        raise DecodeError(f"field {name.decode()!r} is not UTC: {raw[:40]!r}")
    return ts


_Columns = tuple[tuple[Channel, ...], Shape, tuple[Value, ...]]


def _channels(raw: bytes, max_channels: int) -> _Columns:
    if b"\\u0000" in raw or b"\x00" in raw:
        raise DecodeError("channels contain a NUL character")
    # Before parsing: every channel opens a '[', so this bounds the count from above (brackets
    # inside names or texts count too: only a frame over the bound is parsed to count exactly).
    check_count = raw.count(b"[") - 1 > max_channels
    try:
        items = orjson.loads(raw)  # rejects NaN, Infinity, 1e400 and lone surrogates
    except orjson.JSONDecodeError as exc:
        if "memory" in str(exc).lower():  # "Not enough memory to allocate buffer for parsing"
            raise MemoryError(f"orjson: {exc}") from None
        raise DecodeError(f"channels are not valid JSON: {str(exc)[:120]}") from None
    if type(items) is not list or not items:
        raise DecodeError("channels must be a non-empty JSON array")
    if check_count and len(items) > max_channels:
        raise DecodeError(f"{len(items)} channels, more than MAX_CHANNELS {max_channels}")
    return _known_shape(items) or _checked_channels(items)


_SHAPES: dict[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]], Shape] = {}
"""(names, units, quality texts) of channel lists ``_checked_channels`` accepted -> their Shape.
A device sends the same few shapes frame after frame; their names, units and qualities are
checked once, not once per frame."""
_NUMBERS = frozenset({float, type(None)})
_CHANNEL = functools.partial(tuple.__new__, Channel)


def _known_shape(items: list[Any]) -> _Columns | None:
    """The channels of ``items`` when they have a shape already checked, else None (the caller
    checks them one by one). Whole-list passes in C; no Python work per channel when the values
    are all numbers or null."""
    if set(map(type, items)) != {list}:
        return None
    try:  # four columns of equal length, or a ValueError
        names, values, units, texts = zip(*items, strict=True)
    except ValueError:
        return None
    shape = _SHAPES.get((names, units, texts))
    if shape is None:
        return None
    kinds = set(map(type, values))
    if not kinds <= _NUMBERS:
        if not kinds <= {float, type(None), int, str}:
            return None
        if str in kinds and max(len(v) for v in values if type(v) is str) > MAX_TEXT_LEN:
            return None
        if int in kinds:
            values = tuple(float(v) if type(v) is int else v for v in values)
    return tuple(map(_CHANNEL, zip(names, values, units, shape.qualities, strict=True))), shape, values


def _checked_channels(items: list[Any]) -> _Columns:
    """Every channel checked on its own, with the reason of the first one that is wrong."""
    out = []
    new = tuple.__new__
    for item in items:
        if type(item) is not list or len(item) != 4:
            raise DecodeError("each channel must be [name, value, unit, quality]")
        name, value, unit, quality = item
        if type(name) is not str or not 0 < len(name) <= MAX_NAME_LEN:
            raise DecodeError(f"channel name must be a 1-{MAX_NAME_LEN} character string")
        kind = type(value)
        if kind is int:
            value = float(value)
        elif kind is str:
            if len(value) > MAX_TEXT_LEN:
                raise DecodeError(f"channel {name[:40]!r}: text value longer than {MAX_TEXT_LEN}")
        elif kind is not float and value is not None:
            raise DecodeError(f"channel {name[:40]!r}: value must be a number, string or null")
        if type(unit) is not str or len(unit) > MAX_UNIT_LEN:
            raise DecodeError(f"channel {name[:40]!r}: unit must be a string of at most {MAX_UNIT_LEN} characters")
        q = _QUALITY_OF.get(quality) if type(quality) is str else None
        if q is None:
            raise DecodeError(f"channel {name[:40]!r}: unknown quality {str(quality)[:20]!r}")
        out.append(new(Channel, (name, value, unit, q)))
    if len(out) > 1 and len({c[0] for c in out}) != len(out):
        seen: set[str] = set()
        dup = next(c[0] for c in out if c[0] in seen or seen.add(c[0]))  # type: ignore[func-returns-value]
        raise DecodeError(f"duplicate channel {dup[:40]!r}")
    if len(_SHAPES) >= MAX_REMEMBERED:
        _SHAPES.clear()
    names, _, units, texts = zip(*items, strict=True)
    shape = _SHAPES[(names, units, texts)] = Shape(names, units, tuple(c[3] for c in out))
    return tuple(out), shape, tuple(c[1] for c in out)
