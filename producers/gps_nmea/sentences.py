"""Decode one NMEA 0183 sentence into an Update (what it says about the current epoch). Pure.

pynmea2 checks the framing and checksum and splits the fields; the fields are then read by
position (NMEA 0183 v4.11 layouts) and converted here, so a malformed field is a
ParseError and never an exception from a property. Rejections carry a bounded ``kind``:

* ``checksum``     wrong checksum (or missing, when ``strict``)         pynmea2 ChecksumError
* ``parse``        not a well-formed sentence (pynmea2 ParseError)
* ``unsupported``  well-formed, but a sentence type we do not decode (GBS, BOD, RMB, RTE, TXT, DTM,
                   queries ...)
* ``unknown_type`` a sentence type pynmea2 does not know (SentenceTypeError): line noise, mostly
* ``unknown_talker`` a sentence we decode under a talker no receiver uses (GX...): line noise, mostly
* ``proprietary``  ``$P...`` manufacturer sentences ($PGRM, $PMTK, $PUBX, $PSTI ...): skipped
* ``format``       a field count or field layout the sentence type does not allow (``fields.py``):
                   a sentence cut by line noise, or one whose ``*`` was lost, with or without checksum
* ``field``        a decoded sentence with an impossible field (latitude 95 deg, month 13, year 2150 ...)

Vendor satellite sentences in GSV/GSA layout (``$PQGSV``/``$PQGSA``: Qualcomm/Quectel, the
satellites of one constellation they report nowhere else) are decoded under the talker ``PQ``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pynmea2

from common.errors import ParseError
from common.units import convert
from producers.gps_nmea.fields import check_fields

TALKERS = frozenset(["GP", "GN", "GL", "GA", "GB", "BD", "GQ", "GI"])
SENTENCES = frozenset(["GGA", "RMC", "VTG", "GSA", "GSV", "GST", "ZDA", "GNS", "GLL"])

CHANNEL_UNITS: dict[str, str] = {
    "latitude": "deg",
    "longitude": "deg",
    "altitude": "m",
    "speed": "km/h",
    "course": "deg",
    "fix_quality": "",
    "fix_mode": "",
    "satellites_used": "",
    "satellites_in_view": "",
    "hdop": "",
    "vdop": "",
    "pdop": "",
    "latitude_sigma": "m",
    "longitude_sigma": "m",
    "altitude_sigma": "m",
}
"""Every channel this source emits and its unit (names from common/units.py)."""

MIN_YEAR, MAX_YEAR = 1980, 2099
"""Receiver years accepted (ZDA, RMC): GPS time starts in 1980; later ones are corruption."""

VENDOR_SATELLITE_SENTENCES: dict[str, tuple[str, str]] = {
    # pynmea2 manufacturer + first data field -> (talker, layout). Qualcomm's loc_nmea sends QZSS in
    # $PQGSV/$PQGSA; some Quectel firmwares send BeiDou there. Either way a constellation of its own.
    "QGSV": ("PQ", "GSV"),
    "QGSA": ("PQ", "GSA"),
}
"""Proprietary sentences whose vendor documents a standard GSV/GSA layout."""

_SYSTEM_IDS = {"1": "GP", "2": "GL", "3": "GA", "4": "GB", "5": "GQ", "6": "GI"}
"""NMEA 4.11 GNSS system id -> the talker of that constellation."""

FIX_CHANNELS = frozenset(["latitude", "longitude", "altitude", "speed", "course"])
"""Channels that only mean something with a fix: no_data (never 0) without one."""


@dataclass(frozen=True, slots=True)
class Update:
    """What one sentence contributes to its epoch. A value of None means the field was empty."""

    talker: str
    sentence: str
    time: dt.time | None = None
    date: dt.date | None = None
    no_fix: bool = False
    values: dict[str, float | None] = field(default_factory=dict)
    in_view: tuple[str, int] | None = None
    """GSV: (signal id or "", satellites in view of this talker's constellation on that signal)."""
    used: frozenset[tuple[str, int]] | None = None
    """GSA: the satellites listed as used, as (system, PRN); one GSA per system in NMEA 4.11."""


def parse_sentence(line: bytes, strict: bool = False) -> Update:
    """One sentence (from ``$``, without CR/LF) -> Update. Raises ParseError with a kind."""
    text = line.decode("latin-1")
    try:
        msg = pynmea2.parse(text, check=strict)
    except pynmea2.ChecksumError as exc:
        raise ParseError(f"bad checksum: {text[:90]!r}: {exc.args[0][0]}", "checksum") from None
    except pynmea2.SentenceTypeError:
        raise ParseError(f"unknown sentence type: {text[:90]!r}", "unknown_type") from None
    except pynmea2.ParseError:
        raise ParseError(f"malformed sentence: {text[:90]!r}", "parse") from None
    if isinstance(msg, pynmea2.ProprietarySentence):
        vendor = VENDOR_SATELLITE_SENTENCES.get(msg.manufacturer + (msg.data[0] if msg.data else ""))
        if vendor is None:
            raise ParseError(f"proprietary sentence skipped: {text[:12]!r}", "proprietary")
        return _decode(vendor[0], vendor[1], [str(f) for f in msg.data[1:]], text)
    if isinstance(msg, pynmea2.TalkerSentence) and msg.talker not in TALKERS and msg.sentence_type in _DECODERS:
        raise ParseError(f"unknown talker: {text[:12]!r}", "unknown_talker")
    if not isinstance(msg, pynmea2.TalkerSentence) or msg.talker not in TALKERS:
        raise ParseError(f"unsupported talker or query: {text[:12]!r}", "unsupported")
    if msg.sentence_type not in _DECODERS:
        raise ParseError(f"unsupported sentence {msg.sentence_type}: {text[:12]!r}", "unsupported")
    return _decode(msg.talker, msg.sentence_type, [str(f) for f in msg.data], text)


def _decode(talker: str, sentence: str, fields: list[str], text: str) -> Update:
    check_fields(sentence, fields)
    try:
        return _DECODERS[sentence](talker, fields)
    except (ValueError, OverflowError) as exc:
        raise ParseError(f"bad field in {text[:90]!r}: {exc}", "field") from None


# ---- field converters (raise ValueError; the caller turns it into ParseError "field") ----


def _num(text: str) -> float | None:
    if not text.strip():
        return None
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text!r}")
    return value


def _int(text: str) -> int | None:
    return int(text) if text.strip() else None


def _time(text: str) -> dt.time | None:
    """``hhmmss[.sss]`` -> time (UTC)."""
    if not text:
        return None
    if len(text) < 6 or not text[:6].isdigit():
        raise ValueError(f"time {text!r}")
    micro = round(float("0" + text[6:]) * 1e6) if len(text) > 6 else 0
    return dt.time(int(text[:2]), int(text[2:4]), min(int(text[4:6]), 59), min(micro, 999_999))


def _angle(text: str, hemi: str, limit: int) -> float | None:
    """``dddmm.mmmm`` + hemisphere -> signed degrees."""
    if not text:
        return None
    dot = text.find(".")
    dot = len(text) if dot < 0 else dot
    degrees, minutes = float(text[: dot - 2] or 0), float(text[dot - 2 :])
    if minutes >= 60 or degrees + minutes / 60 > limit or hemi not in ("N", "S", "E", "W"):
        raise ValueError(f"coordinate {text!r} {hemi!r}")
    value = degrees + minutes / 60
    return -value if hemi in ("S", "W") else value


def _date_ddmmyy(text: str) -> dt.date | None:
    if not text:
        return None
    day, month, yy = int(text[0:2]), int(text[2:4]), int(text[4:6])
    # Two-digit year: 80-99 -> 19xx, else 20xx; the week-rollover check corrects the rest.
    return _date(1900 + yy if yy >= 80 else 2000 + yy, month, day)


def _date(year: int, month: int, day: int) -> dt.date:
    """A calendar date within the years a receiver can send (ValueError otherwise)."""
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise ValueError(f"year {year}")
    return dt.date(year, month, day)


def _pad(raw: list[str], n: int = 20) -> list[str]:
    """Missing trailing fields read as empty (older NMEA versions send fewer)."""
    return raw + [""] * (n - len(raw))


def _position(f: list[str], i: int, no_fix: bool) -> dict[str, float | None]:
    """Latitude and longitude; without a fix the fields are not even read (MTK sends 89 deg 60')."""
    if no_fix:
        return {"latitude": None, "longitude": None}
    return {"latitude": _angle(f[i], f[i + 1], 90), "longitude": _angle(f[i + 2], f[i + 3], 180)}


# ---- one decoder per sentence type (field positions from NMEA 0183 v4.11) ----


def _gga(talker: str, raw: list[str]) -> Update:
    f = _pad(raw)
    quality = _int(f[5])
    values = _position(f, 1, not quality) | {"altitude": _num(f[8]), "hdop": _num(f[7])}
    values |= {"fix_quality": quality, "satellites_used": _int(f[6])}
    return Update(talker, "GGA", _time(f[0]), no_fix=not quality, values=values)


def _gns(talker: str, raw: list[str]) -> Update:
    f = _pad(raw)
    no_fix = not f[5].strip("N")  # one mode letter per constellation; all N = no fix
    values = _position(f, 1, no_fix) | {"altitude": _num(f[8]), "hdop": _num(f[7]), "satellites_used": _int(f[6])}
    return Update(talker, "GNS", _time(f[0]), no_fix=no_fix, values=values)


def _rmc(talker: str, raw: list[str]) -> Update:
    f = _pad(raw)
    no_fix = f[1] != "A" or f[11] == "N"
    knots = _num(f[6])
    values = _position(f, 2, no_fix) | {"course": _num(f[7])}
    values["speed"] = None if knots is None else convert(knots, "knot", "km/h")
    return Update(talker, "RMC", _time(f[0]), _date_ddmmyy(f[8]), no_fix, values)


def _gll(talker: str, raw: list[str]) -> Update:
    f = _pad(raw)
    no_fix = f[5] != "A" or f[6] == "N"
    return Update(talker, "GLL", _time(f[4]), no_fix=no_fix, values=_position(f, 0, no_fix))


def _vtg(talker: str, raw: list[str]) -> Update:
    f = _pad(raw)
    if f[8] == "N":  # FAA mode "data not valid"
        return Update(talker, "VTG", values={"speed": None, "course": None})
    kmh, knots = _num(f[6]), _num(f[4])
    speed = kmh if kmh is not None else None if knots is None else convert(knots, "knot", "km/h")
    return Update(talker, "VTG", values={"speed": speed, "course": _num(f[0])})


def _gsa(talker: str, raw: list[str]) -> Update:
    f = _pad(raw)
    mode = _int(f[1])
    if mode is not None and mode not in (1, 2, 3):
        raise ValueError(f"GSA fix type {mode}")
    values = {"fix_mode": mode, "pdop": _num(f[14]), "hdop": _num(f[15]), "vdop": _num(f[16])}
    used = frozenset((gnss_system(talker, f[17], int(prn)), int(prn)) for prn in f[2:14] if prn)
    return Update(talker, "GSA", no_fix=mode == 1, values=values, used=used)


def gnss_system(talker: str, system_id: str, prn: int) -> str:
    """The constellation of a satellite in a GSA, so one satellite listed twice counts once.

    NMEA 4.10+ states it (system id field); otherwise the talker does, and for ``GN`` (combined)
    the NMEA 2.3-4.0 PRN ranges: 1-64 GPS and SBAS, 65-96 GLONASS. A receiver listing GPS
    satellites in both ``$GPGSA`` and ``$GNGSA`` thus names them the same way twice.
    """
    if system_id:
        return _SYSTEM_IDS.get(system_id, system_id)
    if talker == "GN":
        return "GP" if prn <= 64 else "GL" if prn <= 96 else "GN"
    return "GB" if talker == "BD" else talker


def _gsv(talker: str, raw: list[str]) -> Update:
    count = _int(raw[2])
    if count is None:
        return Update(talker, "GSV")
    signal = raw[-1] if (len(raw) - 3) % 4 == 1 else ""  # NMEA 4.10+: trailing signal id
    return Update("GB" if talker == "BD" else talker, "GSV", in_view=(signal, count))


def _gst(talker: str, raw: list[str]) -> Update:
    f = _pad(raw)
    values = {"latitude_sigma": _num(f[5]), "longitude_sigma": _num(f[6]), "altitude_sigma": _num(f[7])}
    return Update(talker, "GST", _time(f[0]), values=values)


def _zda(talker: str, raw: list[str]) -> Update:
    f = _pad(raw)
    day, month, year = _int(f[1]), _int(f[2]), _int(f[3])
    date = _date(year, month, day) if day and month and year else None
    hours, minutes = _int(f[4]), _int(f[5])
    if (hours is not None and abs(hours) > 13) or (minutes is not None and minutes > 59):
        raise ValueError(f"ZDA local zone {hours}:{minutes}")
    return Update(talker, "ZDA", _time(f[0]), date)


_DECODERS: dict[str, Callable[[str, list[str]], Update]] = {
    "GGA": _gga,
    "GNS": _gns,
    "RMC": _rmc,
    "GLL": _gll,
    "VTG": _vtg,
    "GSA": _gsa,
    "GSV": _gsv,
    "GST": _gst,
    "ZDA": _zda,
}
