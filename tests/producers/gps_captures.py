"""The real NMEA captures in shared/data/nmea, their README baseline and gpsd's decode (the oracle).

Shared by the GPS unit and integration tests. Reads the captures in place; copies nothing.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pynmea2

CAPTURES = (
    "bu353-glonass",
    "et-332",
    "garmin-geko201",
    "gp-320fw-2019-04-07-coldboot",
    "mtk-3301",
    "skytraq-dgps",
    "ublox-neo-m9n-nmea",
    "ublox-zed-f9t-ubx_nmea_l5",
)

README_BASELINE: dict[str, dict[str, int]] = {
    # shared/data/nmea/README.md, "pynmea2 1.19.0 baseline per file" (non_nmea only where it states one)
    "bu353-glonass": {"ok": 112},
    "et-332": {"ok": 106, "non_nmea": 34, "parse": 1},
    "garmin-geko201": {"ok": 212, "parse": 1},
    "gp-320fw-2019-04-07-coldboot": {"ok": 90, "checksum": 23, "parse": 19},
    "mtk-3301": {"ok": 59},
    "skytraq-dgps": {"ok": 1024},
    "ublox-neo-m9n-nmea": {"ok": 1403},
    "ublox-zed-f9t-ubx_nmea_l5": {"ok": 247, "parse": 32},
}

MIN_DATE = dt.date(2000, 1, 1)
"""Week-rollover floor used when replaying these 2005-2025 captures (the default would shift them)."""

ORACLE_MODE_EXCEPTIONS = {
    # mtk-3301 line 72: the receiver's own $GPGSA says fix type 2 (2D); gpsd reports 3 because the
    # GGA carries an altitude. We report the receiver's declared fix type.
    ("mtk-3301", "2008-08-23T08:14:39+00:00"): (2, 3),
}


def replay_bytes(data_dir: Path, name: str) -> bytes:
    """The capture without gpsd's ``#`` header lines (a real receiver never sends them)."""
    raw = (data_dir / "nmea" / f"{name}.log").read_bytes()
    return b"".join(line + b"\n" for line in raw.split(b"\n")[:-1] if not line.startswith(b"#"))


def readme_method(data: bytes) -> tuple[Counter[str], Counter[str]]:
    """The README's counting: LF lines, CR stripped, pynmea2.parse from the line's first ``$``.

    Returns (counts by ok/checksum/parse/non_nmea, multiset of the sentences it accepted).
    """
    counts: Counter[str] = Counter()
    accepted: Counter[str] = Counter()
    for raw in data.split(b"\n"):
        line = raw.rstrip(b"\r").decode("latin-1")
        if "$" not in line:
            counts["non_nmea"] += bool(line.strip())
            continue
        sentence = line[line.find("$") :]
        try:
            pynmea2.parse(sentence)
        except pynmea2.ChecksumError:
            counts["checksum"] += 1
        except pynmea2.ParseError:
            counts["parse"] += 1
        else:
            counts["ok"] += 1
            accepted[sentence] += 1
    return +counts, accepted


@dataclass(frozen=True)
class GpsdFix:
    time: dt.datetime
    mode: int
    lat: float | None
    lon: float | None


def gpsd_fixes(data_dir: Path, name: str, min_date: dt.date = MIN_DATE) -> dict[dt.datetime, GpsdFix]:
    """gpsd's TPV reports in ``<name>.log.chk``: per fix time, the one with the highest mode.

    gpsd often reports several TPVs per time (refining as sentences arrive, or repeating a
    stale time after a receiver reboot); the best one is its decode of that epoch. gpsd does
    not correct GPS week rollover, so its dates before ``min_date`` are moved forward by 1024
    weeks here, exactly as the producer's documented rule does.
    """
    fixes: dict[dt.datetime, GpsdFix] = {}
    for line in (data_dir / "nmea" / f"{name}.log.chk").read_text().splitlines():
        if not line.startswith('{"class":"TPV"'):
            continue
        tpv = json.loads(line)
        if not tpv.get("time"):
            continue
        time = dt.datetime.fromisoformat(tpv["time"].replace("Z", "+00:00"))
        if time.date() < min_date:
            time += dt.timedelta(weeks=1024)
        fix = GpsdFix(time, int(tpv["mode"]), tpv.get("lat"), tpv.get("lon"))
        if time not in fixes or fix.mode > fixes[time].mode:
            fixes[time] = fix
    return fixes
