"""The spool's segment format: records, their checks, and resynchronisation past damage. Pure.

A segment is ``MAGIC`` then records ``<u32 length><u32 crc32><u64 recno><payload>``; the CRC
covers recno and payload. ``recno`` numbers the records of one priority queue consecutively
across its segments, so a gap between two intact records is exactly the number of records
lost between them. A *filler* record (payload starting ``FF FF``, never a frame) overwrites a
damaged range in place once its loss has been counted, so a restart neither re-reads nor
re-counts it. Segments of the first format (``TSPOOL1``: no recno) are still read. No I/O here.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from typing import NamedTuple

MAGIC = b"TSPOOL2\n"
MAGIC_V1 = b"TSPOOL1\n"
HEADER = struct.Struct("<IIQ")
HEADER_V1 = struct.Struct("<II")
_RECNO = struct.Struct("<Q")
_FIELD = struct.Struct("<HI")
FILLER = b"\xff\xff"
"""Payload prefix of a filler record (a field count of 65,535: no frame has that many fields)."""
MAX_RECORD = 64 << 20
"""Longest record believed when scanning; a longer length field means a corrupt record."""
RESYNC_WINDOW = 1_000_000
"""A record found by resync must have a recno at most this far after the last intact one."""

Fields = Mapping[str, str | bytes] | Mapping[bytes, bytes]
"""Stream entry fields: as common.schema.encode returns them, or as read back."""


class Record(NamedTuple):
    start: int
    end: int
    recno: int | None
    """None in a first-format segment."""
    payload: bytes

    @property
    def filler(self) -> bool:
        return self.payload.startswith(FILLER)


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


def pack_record(recno: int, payload: bytes) -> bytes:
    return HEADER.pack(len(payload), zlib.crc32(payload, zlib.crc32(_RECNO.pack(recno))), recno) + payload


def filler(length: int, recno: int) -> bytes | None:
    """A filler record of exactly ``length`` bytes carrying ``recno`` (None if ``length`` is too short)."""
    if length < HEADER.size + len(FILLER):
        return None
    return pack_record(recno, FILLER + bytes(length - HEADER.size - len(FILLER)))


def header_size(version: int) -> int:
    return HEADER.size if version == 2 else HEADER_V1.size


def record_at(data: bytes | memoryview, pos: int, version: int) -> Record | None:
    """The intact record starting at ``pos``, or None (short, oversized, or CRC mismatch)."""
    size = header_size(version)
    if pos + size > len(data):
        return None
    if version == 2:
        length, crc, recno = HEADER.unpack_from(data, pos)
        end = pos + size + length
        if length > MAX_RECORD or end > len(data):
            return None
        payload = bytes(data[pos + size : end])
        if zlib.crc32(payload, zlib.crc32(_RECNO.pack(recno))) != crc:
            return None
        return Record(pos, end, recno, payload)
    length, crc = HEADER_V1.unpack_from(data, pos)
    end = pos + size + length
    if length > MAX_RECORD or end > len(data):
        return None
    payload = bytes(data[pos + size : end])
    return Record(pos, end, None, payload) if zlib.crc32(payload) == crc else None


def resync(data: bytes | memoryview, pos: int, version: int, after: int | None) -> Record | None:
    """The first intact record after damage at ``pos`` (searched byte by byte), or None.

    ``after`` (the recno of the last intact record, if known) narrows the search to recnos in
    ``(after, after + RESYNC_WINDOW]``, so random bytes are almost never taken for a record.
    """
    size = header_size(version)
    for p in range(pos + 1, len(data) - size + 1):
        if version == 2 and after is not None:
            (recno,) = _RECNO.unpack_from(data, p + 8)
            if not after < recno <= after + RESYNC_WINDOW:
                continue
        (length,) = struct.unpack_from("<I", data, p)
        if length > len(data) - p - size:
            continue
        rec = record_at(data, p, version)
        if rec is not None:
            return rec
    return None
