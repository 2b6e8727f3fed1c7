"""Scale output formats, pure: framing (push parsers) and decoding into ScaleReading.

Two families (shared/protocols.md §5): Mettler Toledo continuous (STX, status words A/B/C,
6 weight digits, optional 6 tare digits, CR, optional checksum) and the ASCII line family
(CR/LF-framed records parsed by a per-model regex). No I/O here; ``to_frame`` names channels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from common.errors import ParseError
from common.schema import Channel, Frame, Priority, Quality

STX, CR, LF = 0x02, 0x0D, 0x0A
MAX_RECORD = 256
"""Longest accepted line (bytes); longer ones are rejected as ``too_long``."""

UNITS = {"kg": "kg", "g": "g", "lb": "lb", "lbs": "lb", "oz": "oz", "t": "t"}
"""Unit spellings on the wire -> unit names of common/units.py."""


@dataclass(frozen=True, slots=True)
class ScaleReading:
    """One decoded record. ``weight`` is signed and None only when overloaded."""

    weight: float | None
    unit: str
    stable: bool
    net: bool = False
    overload: bool = False
    tare: float | None = None
    decimals: int = field(default=-1, compare=False)
    """Digits after the decimal point as printed (-1: not from a printed number)."""


def to_frame(reading: ScaleReading, device: str, received_at: datetime, monotonic_ns: int) -> Frame:
    """Channels ``weight``, ``stable``, ``net``, ``overload`` (+ ``tare``); overload is CRITICAL."""
    weight = Channel("weight", reading.weight, reading.unit, Quality.ERROR if reading.overload else Quality.GOOD)
    channels = [
        weight,
        Channel("stable", 1.0 if reading.stable else 0.0),
        Channel("net", 1.0 if reading.net else 0.0),
        Channel("overload", 1.0 if reading.overload else 0.0),
    ]
    if reading.tare is not None:
        channels.append(Channel("tare", reading.tare, reading.unit))
    priority = Priority.CRITICAL if reading.overload else Priority.NORMAL
    return Frame("scales", device, received_at, received_at, monotonic_ns, tuple(channels), priority=priority)


# --- Mettler Toledo continuous ------------------------------------------------------------

_TOLEDO_UNITS = {1: "g", 2: "t", 3: "oz", 7: ""}
"""SWC bits 0-2 unit override; 0 means lb/kg per SWB bit 4. 4-6 are undefined."""


def _digits(raw: bytes, what: str) -> int:
    text = raw.decode("ascii", "replace")
    if not text.lstrip(" ").isdigit():  # leading blanks allowed, then digits only
        raise ParseError(f"{what} field {text!r} is not 6 digits", "syntax")
    return int(text)


def _scaled(digits: int, decimal_code: int) -> float:
    """SWA bits 0-2: 0 -> XXXX00, 1 -> XXXXX0, 2 -> XXXXXX, 3 -> XXXXX.X ... 7 -> X.XXXXX."""
    if decimal_code <= 2:
        return float(digits * 10 ** (2 - decimal_code))
    return round(digits / 10.0 ** (decimal_code - 2), decimal_code - 2)


def parse_toledo(frame: bytes, checksum: bool) -> ScaleReading:
    """One Toledo continuous frame (STX .. CR [CKS]) -> ScaleReading.

    Parity (bit 7) is masked off every byte. Raises ParseError(kind=checksum|syntax|status|unit).
    """
    body = bytes(b & 0x7F for b in frame)
    if checksum:
        if (sum(body[:-1]) + body[-1]) & 0x7F:
            raise ParseError(f"checksum {body[-1]:02X} does not match", "checksum")
        body = body[:-1]
    if len(body) not in (11, 17) or body[0] != STX or body[-1] != CR:
        raise ParseError(f"Toledo frame of {len(body)} bytes is malformed", "syntax")
    swa, swb, swc = body[1], body[2], body[3]
    if swa & 0x60 != 0x20:  # SWA bit 5 is always 1, bit 6 always 0
        raise ParseError(f"status word A {swa:02X} has wrong fixed bits", "status")
    unit_code = swc & 7
    if unit_code == 0:
        unit = "kg" if swb & 0x10 else "lb"
    elif unit_code in _TOLEDO_UNITS:
        unit = _TOLEDO_UNITS[unit_code]
    else:
        raise ParseError(f"status word C {swc:02X} has undefined unit code {unit_code}", "unit")
    decimal = swa & 7
    weight = _scaled(_digits(body[4:10], "weight"), decimal)
    tare = _scaled(_digits(body[10:16], "tare"), decimal) if len(body) == 17 else None
    overload = bool(swb & 0x04)  # over or under capacity
    if swb & 0x02 and weight:
        weight = -weight
    return ScaleReading(
        weight=None if overload else weight,
        unit=unit,
        stable=not swb & 0x08,
        net=bool(swb & 0x01),
        overload=overload,
        tare=tare,
    )


class ToledoFramer:
    """Push parser for Toledo continuous frames; resyncs on STX after noise or truncation.

    One error per resynchronisation, whatever the read sizes: after an error, bytes are skipped
    silently (``skipped`` counts them) until the next frame is found.
    """

    def __init__(self, checksum: bool) -> None:
        self.checksum = checksum
        self.skipped = 0
        """Bytes dropped while resynchronising."""
        self._buf = bytearray()
        self._first = True
        self._syncing = False

    def feed(self, data: bytes) -> list[bytes | ParseError]:
        self._buf += data
        out: list[bytes | ParseError] = []
        while (item := self._next()) is not None:
            if isinstance(item, ParseError):
                if self._syncing:
                    continue  # the same resynchronisation: counted once
                self._syncing = True
            else:
                self._syncing = False
            out.append(item)
        return out

    def _next(self) -> bytes | ParseError | None:
        buf = self._buf
        start = next((i for i, b in enumerate(buf) if b & 0x7F == STX), len(buf))
        if start:
            del buf[:start]
            self.skipped += start
            kind, self._first = ("partial" if self._first else "garbage"), False
            return ParseError(f"{start} bytes before STX", kind)
        if len(buf) < 11:
            return None
        extra = 1 if self.checksum else 0
        digits_ok = all(0x30 <= b & 0x7F <= 0x39 or b & 0x7F == 0x20 for b in buf[4:10])
        if not digits_ok:
            return self._skip("Toledo frame cut or corrupt in the weight field")
        end = 11 if buf[10] & 0x7F == CR else 17
        if len(buf) < end + extra:
            return None
        if buf[end - 1] & 0x7F != CR:
            return self._skip("Toledo frame without CR where it should end")
        self._first = False
        frame = bytes(buf[: end + extra])
        del buf[: end + extra]
        return frame

    def _skip(self, why: str) -> ParseError:
        del self._buf[:1]
        self.skipped += 1
        self._first = False
        return ParseError(why, "truncated")


# --- ASCII lines --------------------------------------------------------------------------


PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))
"""Default character set of a line format: printable ASCII."""
_ST_GS_CHARS = " ,.+-0123456789STUOLGNRkgKlbsozt"
"""The ST/US/OL, GS/NT/TR family: status and mode letters, separators, sign, digits, unit letters."""


@dataclass(frozen=True, slots=True)
class LineFormat:
    """A per-model regex and the record width (characters without CR/LF; None = any).

    Named groups: ``value`` (digits, optional point), ``sign`` (``-`` = negative), ``unit``,
    ``unstable`` (non-empty = in motion), ``status`` (ST/US/OL), ``mode`` (N... = net),
    ``overload`` (non-empty = overloaded).
    """

    pattern: re.Pattern[str]
    width: int | None
    charset: str = PRINTABLE
    """Every character a record may contain; a record with any other byte is rejected (``charset``)."""


_OHAUS = r"^(?P<sign>[-+ ])\s*(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>[a-zA-Z]+)\s+(?P<unstable>\?)?(?P<mode>[GNT])$"
_ST_GS = (
    r"^(?P<status>ST|US|OL)\s*,\s*(?P<mode>GS|NT|TR)\s*,?\s*(?P<sign>[-+])?\s*"
    r"(?P<value>\d+(?:\.\d+)?)?\s*(?P<unit>[a-zA-Z]+)?\s*$"
)
_MT_PRINT = r"^\s*(?P<mode>[NGT])?\s+(?P<sign>-)?\s*(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>[a-zA-Z]+)\s*$"

LINE_FORMATS: dict[str, LineFormat] = {
    # OHAUS Defender 3000 / "spun" indicator: `-  1.640 kg   ?N`
    "ohaus": LineFormat(re.compile(_OHAUS), 16),
    # QHW `ST,GS,   245.6 g` and NHB `US,GS   106.2g  `: ST/US, GS, A&D-style NT and OL
    "qhw": LineFormat(re.compile(_ST_GS), 16),
    "nhb": LineFormat(re.compile(_ST_GS), 16),
    "st_gs": LineFormat(re.compile(_ST_GS), None, _ST_GS_CHARS),
    # Mettler Toledo MS204TS/00 print output: `     N       0.3749 g   `
    "mt_print": LineFormat(re.compile(_MT_PRINT), 24),
}


def _noise(b: int) -> bool:
    return b < 0x20 or b >= 0x7F


def parse_line(line: bytes, fmt: LineFormat) -> ScaleReading:
    """One record without its CR/LF (noise already stripped) -> ScaleReading.

    Raises ParseError(kind=width|charset|syntax|unit).
    """
    if fmt.width is not None and len(line) != fmt.width:
        raise ParseError(f"record of {len(line)} characters, expected {fmt.width}: {line[:40]!r}", "width")
    text = line.decode("latin-1")
    if not set(text) <= set(fmt.charset):
        raise ParseError(f"record with characters outside the format's set: {line[:40]!r}", "charset")
    text = text.rstrip()
    m = fmt.pattern.match(text)
    if m is None:
        raise ParseError(f"record does not match the format: {text[:40]!r}", "syntax")
    groups = {k: v for k, v in m.groupdict().items() if v}
    overload = bool(groups.get("overload")) or groups.get("status") == "OL"
    unit = UNITS.get(groups.get("unit", "").lower()) if groups.get("unit") else ""
    if unit is None:
        raise ParseError(f"unknown unit {groups['unit']!r}", "unit")
    net = groups.get("mode", "").upper().startswith("N")
    stable = not groups.get("unstable") and groups.get("status") != "US"
    if overload:
        return ScaleReading(None, unit, stable=stable, net=net, overload=True)
    if "value" not in groups:
        raise ParseError(f"record without a weight: {text[:40]!r}", "syntax")
    weight = float(groups["value"])
    if groups.get("sign") == "-" and weight:
        weight = -weight
    decimals = len(groups["value"].partition(".")[2])
    return ScaleReading(weight, unit, stable=stable, net=net, decimals=decimals)


class LineFramer:
    """Push parser: splits on CR, LF or CRLF; fixed-width formats strip noise bytes (NUL, DEL, controls).

    Noise stripping is safe only where the width check follows: a variable-width record keeps its
    bytes, and ``parse_line`` rejects any outside the format's character set (``245\xb65 g`` is not
    2455 g). The first fragment after (re)connecting is kept only if it has the format's full width:
    a cut record can parse as a wrong number (``749 g`` from ``0.3749 g``). Emits bytes records
    and ParseErrors (``partial``, ``noise``, ``too_long``; one ``too_long`` per over-long line,
    whatever the read sizes); decoding is ``parse_line``'s job.
    """

    def __init__(self, width: int | None) -> None:
        self.width = width
        self._buf = bytearray()
        self._first = True
        self._skipping = False

    def feed(self, data: bytes) -> list[bytes | ParseError]:
        out: list[bytes | ParseError] = []
        self._buf += data
        while True:
            cut = next((i for i, b in enumerate(self._buf) if b in (CR, LF)), -1)
            if cut < 0:
                break
            raw = bytes(self._buf[:cut])
            del self._buf[: cut + 1]
            out.extend(self._record(raw))
        if len(self._buf) > MAX_RECORD:
            if not self._skipping:
                out.append(ParseError(f"no line end in {len(self._buf)} bytes", "too_long"))
            self._buf.clear()
            self._skipping = True
        return out

    def _record(self, raw: bytes) -> list[bytes | ParseError]:
        if self._skipping:
            self._skipping = False
            return []  # the tail of the over-long line already reported
        if not raw:
            return []
        clean = bytes(b for b in raw if not _noise(b)) if self.width is not None else raw
        first, self._first = self._first, False
        if first and (self.width is None or len(clean) != self.width):
            return [ParseError(f"partial first record {raw[:40]!r}", "partial")]
        out: list[bytes | ParseError] = []
        if len(clean) != len(raw):
            out.append(ParseError(f"{len(raw) - len(clean)} noise bytes in {raw[:40]!r}", "noise"))
        if clean:
            out.append(clean)
        return out
