"""EFI Analytics binary logs (MLVLG, ``.mlg``: TunerStudio, MegaLogViewer, Speeduino, rusEFI). Pure.

Layout (big-endian; EFI Analytics "MLG Binary Log Format", as rusEFI's mlg_types.h transcribes
version 2, and mlg-converter reads version 1):

* header: ``MLVLG\\0``, format version (int16: 1 or 2), Unix time stamp (int32, 0 = none),
  info data start (uint16 in v1, int32 in v2), data begin index (int32), record length (uint16),
  number of fields (uint16);
* field descriptors, 55 bytes each in v1 and 89 in v2 (a 34-byte category added): type (0 U08,
  1 S08, 2 U16, 3 S16, 4 U32, 5 S32, 6 S64, 7 F32; 10-12 bit fields of 8/16/32 bits), name (34),
  units (10), display style, then scale (float32), transform (float32), digits for a scalar;
* the info text (``info data start`` to ``data begin index - 1``);
* blocks: type (0 record, 1 marker), a rolling counter, a 16-bit time stamp; a record then holds
  every field's raw value and a CRC byte (the low 8 bits of the sum of the value bytes; it
  validates on every record of the shared Speeduino logs); a marker holds a 50-byte message.

Display value = (raw + transform) * scale (the transform is 0 in every shared file, so only the
scale is checked by real data). ``parse_mlg`` yields Records and Markers; a record whose CRC fails
and a truncated last block are ParseErrors carrying their bytes; an unknown block type ends the
file with a ParseError (nothing after it can be framed).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from common.errors import ParseError

MAGIC = b"MLVLG\x00"
_FORMATS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "q", 7: "f", 10: "B", 11: "H", 12: "I"}
MARKER_LENGTH = 50


@dataclass(frozen=True)
class MlgField:
    name: str
    units: str
    type: int
    scale: float = 1.0
    transform: float = 0.0
    digits: int = 0

    def value(self, raw: float) -> float:
        """The display value of a raw stored number (bit fields: the raw number).

        The float32 scale and transform are read as their shortest decimals (0.1, not
        0.10000000149011612); an integer raw value's result is rounded to their decimals, so raw
        77 at scale 0.1 is 7.7 exactly. A float32 raw value is scaled as is.
        """
        if self.type >= 10:
            return float(raw)
        scale, transform = _shortest(self.scale), _shortest(self.transform)
        value = (raw + transform) * scale
        if self.type == 7:
            return value
        return round(value, _decimals(scale) + _decimals(transform))


@dataclass(frozen=True)
class MlgHeader:
    version: int
    timestamp: datetime | None
    info: str
    fields: tuple[MlgField, ...]
    data_begin: int
    record_length: int


@dataclass(frozen=True)
class Record:
    timestamp: int
    """The block's own 16-bit time stamp."""
    raw: tuple[float, ...]
    """Raw stored numbers, one per field (mlg-converter's JSON values)."""
    offset: int


@dataclass(frozen=True)
class Marker:
    timestamp: int
    message: str
    offset: int


def _text(raw: bytes) -> str:
    return raw.replace(b"\x00", b"").decode("latin-1").strip().strip('"')


def parse_header(data: bytes) -> MlgHeader:
    """The header and field descriptors. ParseError(kind=header) if this is not a usable MLVLG file."""
    if data[:6] != MAGIC:
        raise ParseError(f"not an MLVLG file (starts {data[:6]!r})", "header")
    try:
        (version,) = struct.unpack_from(">h", data, 6)
        if version == 1:
            ts, info_start, begin, record_length, count = struct.unpack_from(">iHiHH", data, 8)
            offset, size = 22, 55
        elif version == 2:
            ts, info_start, begin, record_length, count = struct.unpack_from(">iiiHH", data, 8)
            offset, size = 24, 89
        else:
            raise ParseError(f"MLVLG format version {version} is not supported (1 and 2 are)", "header")
        fields = []
        for i in range(count):
            at = offset + i * size
            kind = data[at]
            name, units = _text(data[at + 1 : at + 35]), _text(data[at + 35 : at + 45])
            if kind not in _FORMATS:
                raise ParseError(f"field {name!r}: unknown type {kind}", "header")
            if kind < 10:
                scale, transform, digits = struct.unpack_from(">ffB", data, at + 46)
                fields.append(MlgField(name, units, kind, scale, transform, digits))
            else:
                fields.append(MlgField(name, units, kind))
    except struct.error as exc:
        raise ParseError(f"truncated MLVLG header: {exc}", "header") from None
    width = sum(struct.calcsize(_FORMATS[f.type]) for f in fields)
    if width != record_length or not 0 < begin <= len(data):
        raise ParseError(f"header says records of {record_length} bytes from {begin}; fields need {width}", "header")
    info = _text(data[info_start : begin - 1]).replace('"', "") if info_start else ""
    stamp = datetime.fromtimestamp(ts, UTC) if ts > 0 else None
    return MlgHeader(version, stamp, info, tuple(fields), begin, record_length)


def parse_blocks(data: bytes, header: MlgHeader) -> Iterator[Record | Marker | ParseError]:
    """The data blocks, in file order."""
    layout = struct.Struct(">" + "".join(_FORMATS[f.type] for f in header.fields))
    offset = header.data_begin
    end = len(data)
    while offset < end:
        if offset + 4 > end:
            yield _bad(data, offset, end, "truncated block header at the end of the file", "truncated")
            return
        kind = data[offset]
        (stamp,) = struct.unpack_from(">H", data, offset + 2)
        if kind == 0:
            stop = offset + 4 + layout.size + 1
            if stop > end:
                yield _bad(data, offset, end, "truncated record at the end of the file", "truncated")
                return
            body = data[offset + 4 : stop - 1]
            if sum(body) & 0xFF != data[stop - 1]:
                yield _bad(data, offset, stop, f"record CRC {data[stop - 1]} != {sum(body) & 0xFF}", "crc")
            else:
                yield Record(stamp, layout.unpack(body), offset)
            offset = stop
        elif kind == 1:
            stop = offset + 4 + MARKER_LENGTH
            if stop > end:
                yield _bad(data, offset, end, "truncated marker at the end of the file", "truncated")
                return
            yield Marker(stamp, _text(data[offset + 4 : stop]), offset)
            offset = stop
        else:
            yield _bad(data, offset, end, f"unknown block type {kind}; the rest of the file is skipped", "block")
            return


def _bad(data: bytes, start: int, stop: int, why: str, kind: str) -> ParseError:
    return ParseError(f"byte {start}: {why}", kind, raw=data[start : min(stop, start + 4096)], size=stop - start)


def _shortest(x: float) -> float:
    """The shortest decimal that is the same float32 as ``x``."""
    if not math.isfinite(x):
        return x
    for digits in range(1, 10):
        candidate = float(f"{x:.{digits}g}")
        if struct.unpack(">f", struct.pack(">f", candidate))[0] == x:
            return candidate
    return x


def _decimals(x: float) -> int:
    text = repr(x)
    if "e" in text:
        mantissa, exponent = text.split("e")
        frac = mantissa.split(".")[1] if "." in mantissa else ""
        return max(0, len(frac.rstrip("0")) - int(exponent))
    return len(text.split(".")[1].rstrip("0")) if "." in text else 0
