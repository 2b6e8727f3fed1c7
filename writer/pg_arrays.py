"""PostgreSQL binary array encoding of the packed row's arrays, for binary COPY and for query
parameters (``TextArray``/``Int8Array``, passed as they are by their dumpers). Pure.

psycopg dumps a list element by element in Python, which was 40 % of the writer's time once a
frame became one row (issue 15); here the common case (numbers without NULLs) is one
``struct.pack``. The bytes go through COPY as they are (the column is declared ``bytea`` to
psycopg, which passes bytes unchanged; PostgreSQL reads them with the column's own array
format). Layout: ndim, has-nulls flag, element type oid, (size, lower bound) per dimension,
then per element its length (-1 for NULL) and its bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import psycopg
from psycopg.adapt import AdaptersMap, Dumper, PyFormat
from psycopg.pq import Format

INT2_OID = 21
INT4_OID = 23
INT8_OID = 20
DATE_OID = 1082
TIMESTAMPTZ_OID = 1184
TEXT_OID = 25
FLOAT8_OID = 701
TEXT_ARRAY_OID = 1009
INT8_ARRAY_OID = 1016
DATE_ARRAY_OID = 1182
FLOAT8_ARRAY_OID = 1022
TIMESTAMPTZ_ARRAY_OID = 1185

_HEADER = struct.Struct(">iiiii")
_EMPTY = {
    oid: struct.pack(">iii", 0, 0, oid)
    for oid in (INT2_OID, INT4_OID, INT8_OID, DATE_OID, TIMESTAMPTZ_OID, TEXT_OID, FLOAT8_OID)
}
_ELEMENT = {
    INT2_OID: (2, "h"), INT4_OID: (4, "i"), INT8_OID: (8, "q"), DATE_OID: (4, "i"), TIMESTAMPTZ_OID: (8, "q"),
    FLOAT8_OID: (8, "d"),
}  # fmt: skip
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@lru_cache(maxsize=256)
def _packer(oid: int, n: int) -> tuple[struct.Struct, list[object]]:
    """A Struct for a header and n non-NULL elements, and the argument template to fill."""
    size, code = _ELEMENT[oid]
    template: list[object] = [1, 0, oid, n, 1, *([size, 0] * n)]
    return struct.Struct(">iiiii" + ("i" + code) * n), template


def fixed_array(oid: int, values: Sequence[float | int | None]) -> bytes:
    """int2[], int4[], int8[], date[] (days since 2000-01-01) or float8[] in binary; None
    elements are NULL."""
    n = len(values)
    if not n:
        return _EMPTY[oid]
    if None not in values:
        packer, template = _packer(oid, n)
        args = template.copy()
        args[6::2] = values  # after the 5 header fields, every other slot is a value
        return packer.pack(*args)
    size, code = _ELEMENT[oid]
    elem = struct.Struct(">i" + code)
    parts = [_HEADER.pack(1, 1, oid, n, 1)]
    null = struct.pack(">i", -1)
    parts.extend(null if v is None else elem.pack(size, v) for v in values)
    return b"".join(parts)


def timestamptz_array(values: Sequence[datetime]) -> bytes:
    """timestamptz[] in binary (microseconds since 2000-01-01 UTC); the datetimes must be aware."""
    return fixed_array(TIMESTAMPTZ_OID, [(v - _PG_EPOCH) // _MICROSECOND for v in values])


def text_array(values: Sequence[str | None]) -> bytes:
    """text[] in binary (UTF-8); None elements are NULL. Each distinct string is encoded once
    (a batch's producer and source names repeat frame after frame)."""
    n = len(values)
    if not n:
        return _EMPTY[TEXT_OID]
    encoded: dict[str | None, bytes] = {None: b"\xff\xff\xff\xff"}
    for v in set(values):
        if v is not None:
            data = v.encode()
            encoded[v] = struct.pack(">i", len(data)) + data
    return _HEADER.pack(1, int(None in encoded.keys() & set(values)), TEXT_OID, n, 1) + b"".join(
        map(encoded.__getitem__, values)
    )


class TextArray(bytes):
    """A text[] already in binary (``text_array``), sent as a query parameter as it is."""


class Int8Array(bytes):
    """An int8[] already in binary (``fixed_array(INT8_OID, ...)``), sent as it is."""


class DateArray(bytes):
    """A date[] already in binary (``fixed_array(DATE_OID, ...)``), sent as it is."""


class Float8Array(bytes):
    """A float8[] already in binary (``fixed_array(FLOAT8_OID, ...)``), sent as it is."""


class TimestamptzArray(bytes):
    """A timestamptz[] already in binary (``timestamptz_array``), sent as it is."""


class _TextArrayDumper(Dumper):
    format = Format.BINARY
    oid = TEXT_ARRAY_OID

    def dump(self, obj: bytes) -> bytes:
        return obj


class _Int8ArrayDumper(_TextArrayDumper):
    oid = INT8_ARRAY_OID


class _DateArrayDumper(_TextArrayDumper):
    oid = DATE_ARRAY_OID


class _Float8ArrayDumper(_TextArrayDumper):
    oid = FLOAT8_ARRAY_OID


class _TimestamptzArrayDumper(_TextArrayDumper):
    oid = TIMESTAMPTZ_ARRAY_OID


def register_array_dumpers(adapters: AdaptersMap) -> None:
    """Let ``adapters`` (a connection's) pass the arrays above (TextArray ... TimestamptzArray) through: psycopg
    would dump a list element by element in Python (a tenth of the writer's time for the
    per-frame arrays of record_progress)."""
    adapters.register_dumper(TextArray, _TextArrayDumper)
    adapters.register_dumper(Int8Array, _Int8ArrayDumper)
    adapters.register_dumper(DateArray, _DateArrayDumper)
    adapters.register_dumper(Float8Array, _Float8ArrayDumper)
    adapters.register_dumper(TimestamptzArray, _TimestamptzArrayDumper)
    # COPY's set_types(["bytea"]) picks the dumper registered last for bytea's oid: psycopg's
    # DB-API ``Binary`` dumper, in Python, two calls per packed row. Registering the bytes
    # dumper again (psycopg's C one with psycopg[binary]) makes it the one for that oid.
    adapters.register_dumper(bytes, psycopg.adapters.get_dumper(bytes, PyFormat.BINARY))
