"""Field-count and field-format checks per NMEA 0183 sentence type, before any field is used. Pure.

Without a checksum (accepted by default) nothing else stops line noise: a sentence cut by a
noise byte that reads as CR/LF keeps its first fields, and a flipped ``*`` glues the checksum
onto the last field. So every field of a decoded sentence must match its layout (NMEA 0183
v2.x to v4.11, the versions differ only in trailing fields) and the number of fields must be
one the standard allows. GSV is checked against itself as well: message number within the
message count, and exactly as many satellite blocks as the satellite total leaves for that
message (``min(4, total - 4 * (number - 1))``). A failure is ParseError kind ``format``.
"""

from __future__ import annotations

import re

from common.errors import ParseError

_E = ""  # every pattern also accepts an empty field unless it says otherwise (no-fix sentences)
TIME = r"(?:[01]\d|2[0-3])[0-5]\d(?:[0-5]\d|60)(?:\.\d{1,6})?"
LAT = r"\d{4}(?:\.\d{1,10})?"
LON = r"\d{5}(?:\.\d{1,10})?"
NUM = r"\d{1,9}(?:\.\d{1,9})?"
SNUM = r"-?\d{1,9}(?:\.\d{1,9})?"
INT2 = r"\d{1,2}"
PRN = r"\d{1,3}"
FAA = r"[ADEFMNPRS]"
"""FAA mode indicator (NMEA 2.3+): autonomous, differential, estimated, float, manual, no fix..."""
SYSTEM = r"[0-9A-F]"
"""NMEA 4.10+ GNSS system or signal id (one hex digit)."""

# (allowed field counts, per-position patterns; the last pattern repeats for longer sentences)
LAYOUTS: dict[str, tuple[frozenset[int], tuple[str, ...]]] = {
    # time, lat, N/S, lon, E/W, quality, sats, hdop, alt, M, geoid sep, M, dgps age, station
    "GGA": (frozenset([14]), (TIME, LAT, "[NS]", LON, "[EW]", r"\d", INT2, NUM, SNUM, "M", SNUM, "M", NUM, r"\d{1,4}")),
    # time, status, lat, N/S, lon, E/W, knots, course, ddmmyy, magvar, E/W, [mode], [nav status]
    "RMC": (
        frozenset([11, 12, 13]),
        (TIME, "[AV]", LAT, "[NS]", LON, "[EW]", NUM, NUM, r"\d{6}", NUM, "[EW]", FAA, "[SCUV]"),
    ),
    # time, lat, N/S, lon, E/W, mode letters (one per system), sats, hdop, alt, sep, age, station, [nav]
    "GNS": (
        frozenset([12, 13]),
        (TIME, LAT, "[NS]", LON, "[EW]", f"{FAA}{{1,8}}", INT2, NUM, SNUM, SNUM, NUM, r"\d{1,4}", "[SCUV]"),
    ),
    # lat, N/S, lon, E/W, time, status (NMEA 2.0+; 1.5 ended after the time), [mode]
    "GLL": (frozenset([6, 7]), (LAT, "[NS]", LON, "[EW]", TIME, "[AV]", FAA)),
    # course T, T, course M, M, knots, N, km/h, K, [mode]
    "VTG": (frozenset([8, 9]), (NUM, "T", NUM, "M", NUM, "N", NUM, "K", FAA)),
    # mode, fix type, 12 PRNs, pdop, hdop, vdop, [system id]
    "GSA": (frozenset([17, 18]), ("[AM]", "[123]", *[PRN] * 12, NUM, NUM, NUM, SYSTEM)),
    # time, rms, major, minor, orientation, lat sigma, lon sigma, alt sigma
    "GST": (frozenset([8]), (TIME, NUM, NUM, NUM, SNUM, NUM, NUM, NUM)),
    # time, day, month, year, zone hours, zone minutes
    "ZDA": (frozenset([6]), (TIME, r"\d{2}", r"\d{2}", r"\d{4}", r"[-+]?\d{1,2}", r"\d{2}")),
}

_GSV_BLOCK = (PRN, r"-?\d{1,2}", r"\d{1,3}", INT2)  # PRN, elevation, azimuth, SNR
_COMPILED = {k: (counts, tuple(re.compile(p) for p in pats)) for k, (counts, pats) in LAYOUTS.items()}
_GSV_BLOCK_RE = tuple(re.compile(p) for p in _GSV_BLOCK)
_COUNT = re.compile(r"\d{1,2}")
_SYSTEM_RE = re.compile(SYSTEM)


def check_fields(sentence: str, fields: list[str]) -> None:
    """Raise ParseError(kind=format) unless ``fields`` fit the layout of ``sentence``."""
    if sentence == "GSV":
        _check_gsv(fields)
        return
    counts, patterns = _COMPILED[sentence]
    if len(fields) not in counts:
        raise ParseError(f"{sentence} with {len(fields)} fields (allowed {sorted(counts)})", "format")
    for i, (text, pattern) in enumerate(zip(fields, patterns, strict=False)):
        if text and not pattern.fullmatch(text):
            raise ParseError(f"{sentence} field {i + 1} {text[:20]!r} does not fit its format", "format")


def _check_gsv(fields: list[str]) -> None:
    """GSV: count, number, total, then the blocks this message must carry, then [signal id]."""
    if len(fields) < 3 or not all(_COUNT.fullmatch(f) for f in fields[:3]):
        raise ParseError(f"GSV header {fields[:3]!r} is malformed", "format")
    messages, number, total = (int(f) for f in fields[:3])
    fits = 4 * (messages - 1) < total <= 4 * messages or total == 0 == messages - 1
    if not 1 <= number <= messages or not fits:
        raise ParseError(f"GSV message {number} of {messages} for {total} satellites", "format")
    blocks = max(0, min(4, total - 4 * (number - 1)))
    rest = len(fields) - 3 - 4 * blocks
    if rest not in (0, 1) or (rest and not _SYSTEM_RE.fullmatch(fields[-1])):
        raise ParseError(f"GSV {number}/{messages} of {total} satellites has {len(fields)} fields", "format")
    for b in range(blocks):
        block = fields[3 + 4 * b : 7 + 4 * b]
        if not block[0] or any(t and not p.fullmatch(t) for t, p in zip(block, _GSV_BLOCK_RE, strict=True)):
            raise ParseError(f"GSV satellite block {block!r} is malformed", "format")
