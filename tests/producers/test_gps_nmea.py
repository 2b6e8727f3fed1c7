"""gps_nmea: framing, sentence decoding, epochs and dating, on the real gpsd captures; the source on a pty.

How our rejected-line kinds map to the README's pynmea2 baseline (tested in
``test_counts_relate_to_readme_baseline``):
* README "ok" = our decoded sentences + ``unsupported`` + ``proprietary`` + ``field`` + ``format``
  (pynmea2 accepts all of these; we skip sentences we do not decode and reject impossible field
  values and layouts, such as the cut sentences of gp-320fw's cold boot);
* README "ChecksumError" = our ``checksum``; README "ParseError" = our ``parse`` + ``too_long``;
* README "non-NMEA" (lines without ``$``) = our ``non_nmea`` + ``no_dollar``.
The README method cuts a line at its *first* ``$``; we cut at the *last*, so junk or UBX binary glued in
front of a sentence no longer hides it: every sentence the README method accepts, we accept too, and on
three captures we recover more (gp-320fw +5, zed-f9t +5). We also split on a lone CR (UBX binary has
some), so the zed-f9t line total differs by one.
"""

from __future__ import annotations

import datetime as dt
import os
import pty
import threading
import tty
from collections import Counter
from pathlib import Path

import pytest

from common.errors import ParseError, SourceUnavailableError
from common.schema import Channel, Frame, Quality
from producers.gps_nmea import GpsNmeaSource, NmeaDecoder
from producers.gps_nmea.epochs import EpochAssembler, correct_rollover
from producers.gps_nmea.fields import LAYOUTS
from producers.gps_nmea.framing import LineSplitter
from producers.gps_nmea.sentences import parse_sentence
from tests.producers.gps_captures import (
    CAPTURES,
    MIN_DATE,
    ORACLE_MODE_EXCEPTIONS,
    README_BASELINE,
    gpsd_fixes,
    readme_method,
    replay_bytes,
)

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

# Our counts per capture: frames (epochs) and rejected lines by kind. "sentences" = decoded sentences.
EXPECTED: dict[str, dict[str, int]] = {
    "bu353-glonass": {"frames": 19, "sentences": 112},
    "et-332": {"frames": 19, "sentences": 106, "non_nmea": 34, "parse": 1},
    "garmin-geko201": {"frames": 18, "sentences": 126, "parse": 1, "proprietary": 34, "unsupported": 52},
    "gp-320fw-2019-04-07-coldboot": {
        "frames": 20,
        "sentences": 90,
        "checksum": 23,  # 20 wrong + 3 cut sentences without one from a receiver that sends them
        "parse": 17,
        "format": 1,  # a GSV whose satellite blocks do not add up (fragments merged at cold boot)
        "no_dollar": 2,  # tails of cut sentences: ",,,,,,,,,,,,,*1E", ",20,10,090,41*70"
        "proprietary": 1,
    },
    "mtk-3301": {"frames": 11, "sentences": 44, "proprietary": 15},
    "skytraq-dgps": {"frames": 96, "sentences": 928, "proprietary": 96},
    "ublox-neo-m9n-nmea": {"frames": 61, "sentences": 1342, "unsupported": 61},
    "ublox-zed-f9t-ubx_nmea_l5": {
        "frames": 9,
        "sentences": 243,
        "unsupported": 9,
        "parse": 22,
        "too_long": 6,
        "non_nmea": 50,
    },
}


def decode_capture(data: bytes, chunk: int = 0) -> tuple[list[Frame], Counter[str], list[bytes]]:
    """Run the pure pipeline over ``data`` (in ``chunk``-byte pieces if given)."""
    decoder = NmeaDecoder("test", min_date=MIN_DATE)
    items: list[Frame | ParseError] = []
    step = chunk or len(data)
    for i in range(0, len(data), step):
        items += decoder.feed(data[i : i + step], T0, i)
    items += decoder.flush()
    frames = [x for x in items if isinstance(x, Frame)]
    kinds = Counter(x.kind for x in items if isinstance(x, ParseError))
    accepted = [line for line in LineSplitter().push(data) if isinstance(line, bytes)]
    return frames, kinds, accepted


def _decoded(lines: list[bytes]) -> Counter[str]:
    out: Counter[str] = Counter()
    for line in lines:
        try:
            parse_sentence(line)
        except ParseError:
            continue
        out[line.decode("latin-1")] += 1
    return out


@pytest.mark.parametrize("name", CAPTURES)
def test_capture_counts(shared_data: Path, name: str) -> None:
    frames, kinds, lines = decode_capture(replay_bytes(shared_data, name))
    got = dict(kinds) | {"frames": len(frames), "sentences": sum(_decoded(lines).values())}
    assert got == EXPECTED[name]


@pytest.mark.parametrize("name", CAPTURES)
def test_counts_relate_to_readme_baseline(shared_data: Path, name: str) -> None:
    data = replay_bytes(shared_data, name)
    readme, readme_accepted = readme_method(data)
    for kind, n in README_BASELINE[name].items():
        assert readme[kind] == n, f"README method does not reproduce the README's {kind} count"
    _, kinds, lines = decode_capture(data)
    pynmea2_ok = Counter[str]()
    for line in lines:
        text = line.decode("latin-1")
        try:
            parse_sentence(line)
            pynmea2_ok[text] += 1
        except ParseError as exc:
            pynmea2_ok[text] += exc.kind in ("unsupported", "proprietary", "field", "format")
    ours_ok = sum(pynmea2_ok.values())
    assert not readme_accepted - pynmea2_ok, "a sentence the README method accepts is lost by our framing"
    assert ours_ok - readme["ok"] == {"gp-320fw-2019-04-07-coldboot": 5, "ublox-zed-f9t-ubx_nmea_l5": 5}.get(name, 0)
    assert kinds["checksum"] <= readme["checksum"]
    assert kinds["non_nmea"] + kinds["no_dollar"] == readme["non_nmea"] or name == "ublox-zed-f9t-ubx_nmea_l5"


@pytest.mark.parametrize("name", CAPTURES)
def test_chunking_does_not_change_the_result(shared_data: Path, name: str) -> None:
    data = replay_bytes(shared_data, name)
    whole, kinds, _ = decode_capture(data)
    pieces, kinds_chunked, _ = decode_capture(data, chunk=7)
    assert [f.channels for f in pieces] == [f.channels for f in whole]
    assert kinds_chunked == kinds


@pytest.mark.parametrize("name", CAPTURES)
def test_positions_times_modes_match_gpsd(shared_data: Path, name: str) -> None:
    """Every gpsd TPV with a time has our frame at that time, same mode, lat/lon within 1e-6 deg."""
    frames, _, _ = decode_capture(replay_bytes(shared_data, name))
    ours = {f.observed_at: {c.name: c.value for c in f.channels} for f in frames}
    assert len(ours) == len(frames), "two frames for one fix time"
    for time, fix in gpsd_fixes(shared_data, name).items():
        assert time in ours, f"gpsd has a fix at {time}, we do not"
        mine = ours[time]
        expected_mode = ORACLE_MODE_EXCEPTIONS.get((name, time.isoformat()), (fix.mode, fix.mode))[0]
        assert mine["fix_mode"] == expected_mode, time
        if fix.mode >= 2:
            assert mine["latitude"] == pytest.approx(fix.lat, abs=1e-6)
            assert mine["longitude"] == pytest.approx(fix.lon, abs=1e-6)


@pytest.mark.parametrize("name", CAPTURES)
def test_no_fix_never_gives_a_position(shared_data: Path, name: str) -> None:
    frames, _, _ = decode_capture(replay_bytes(shared_data, name))
    for frame in frames:
        ch = {c.name: c for c in frame.channels}
        if ch.get("fix_mode") and ch["fix_mode"].value == 1:
            for pos in ("latitude", "longitude", "altitude", "speed", "course"):
                if pos in ch:
                    assert ch[pos].value is None and ch[pos].quality is Quality.NO_DATA
        lat, lon = ch.get("latitude"), ch.get("longitude")
        assert not (lat and lon and lat.value == 0 and lon.value == 0)


def test_no_fix_captures_are_no_data(shared_data: Path) -> None:
    frames, _, _ = decode_capture(replay_bytes(shared_data, "garmin-geko201"))  # RMC status V throughout
    assert all({c.name: c.quality for c in f.channels}["latitude"] is Quality.NO_DATA for f in frames)
    frames, _, _ = decode_capture(replay_bytes(shared_data, "mtk-3301"))
    lats = [{c.name: c.value for c in f.channels}.get("latitude") for f in frames]
    # MTK: 7 void epochs (lat fields "8960.000000" = 89 deg 60', ignored), then 4 fixes near Enschede
    assert lats[:7] == [None] * 7 and lats[-1] == pytest.approx(52.2163638667, abs=1e-9)
    assert all(lat is not None for lat in lats[7:])


def test_week_rollover_is_corrected(shared_data: Path) -> None:
    """gp-320fw reboots into 1999-08-22: exactly 1024 weeks before the 2019-04-07 it was spoofed to."""
    decoder = NmeaDecoder("t", min_date=MIN_DATE)
    items = decoder.feed(replay_bytes(shared_data, "gp-320fw-2019-04-07-coldboot"), T0, 0) + decoder.flush()
    dates = {x.observed_at.date() for x in items if isinstance(x, Frame)}
    assert dt.date(1999, 8, 22) not in dates and dt.date(2019, 4, 7) in dates
    assert decoder.epochs.rollovers == 9
    assert correct_rollover(dt.date(1999, 8, 22), dt.date(2019, 1, 1)) == (dt.date(2019, 4, 7), 1)
    assert correct_rollover(dt.date(2020, 1, 1), dt.date(2019, 1, 1)) == (dt.date(2020, 1, 1), 0)


def test_date_carries_over_midnight_and_ignores_pre_gps_dates() -> None:
    """Synthetic sentences (checksums computed by pynmea2's rule)."""
    asm = EpochAssembler("t", MIN_DATE)
    rmc = parse_sentence(_with_checksum("GPRMC,235959.00,A,4807.038,N,01131.000,E,0.0,,311226,,,A"))
    gga = parse_sentence(_with_checksum("GPGGA,000000.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"))
    assert asm.add(rmc, T0, 0) == []
    first = asm.add(gga, T0, 1)[0]
    second = asm.flush()[0]
    assert first.observed_at == dt.datetime(2026, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
    assert second.observed_at == dt.datetime(2027, 1, 1, 0, 0, 0, tzinfo=dt.UTC)
    mtk = parse_sentence(_with_checksum("GPRMC,120000.00,V,,,,,,,050180,,,N"))  # MTK: no date yet
    asm2 = EpochAssembler("t", MIN_DATE)
    asm2.add(mtk, T0 + dt.timedelta(hours=10), 0)
    assert asm2.flush()[0].observed_at == dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)  # nearest host date
    assert asm2.rollovers == 0


def _with_checksum(body: str) -> bytes:
    cs = 0
    for ch in body.encode():
        cs ^= ch
    return f"${body}*{cs:02X}".encode()


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        (b"$GPGGA,201716.684,,,,,0,00,,,M,0.0,M,,0000*5E", "checksum"),
        (b"$GPBOD,,T,,M,,*", "parse"),
        (b"$PGRME,15.0,M,22.5,M,27.0,M*1A", "proprietary"),
        (_with_checksum("PUBX,00,000000.00,0000.00000,N,00000.00000,E,0.000,NF,0,0,0.00,0.00,0.000,,0.00"), ""),
        (_with_checksum("PMTK010,001"), "proprietary"),
        (_with_checksum("GXGSA,A,3,,,,,,,,,,,,,1.0,1.0,1.0"), "unknown_talker"),
        (_with_checksum("GPGXA,A,3,,,,,,,,,,,,,1.0,1.0,1.0"), "unknown_type"),
        (_with_checksum("GPTXT,01,01,02,hello"), "unsupported"),
        (_with_checksum("GPGGA,120000,9500.000,N,00000.000,E,1,08,0.9,5.0,M,,M,,"), "field"),
        (_with_checksum("GPGST,120000,1,1,1,0,nan,1,1"), "format"),
        (_with_checksum("GPZDA,120000.00,01,01,2150,00,00"), "field"),
        (_with_checksum("GPZDA,120000.00,01,01,1979,00,00"), "field"),
        (_with_checksum("GPZDA,120000.00,31,02,2020,00,00"), "field"),
        (_with_checksum("GPRMC,120000,A,4807.038,N,01131.000,E,0.0,,300226,,,A"), "field"),
        (b"$GPGGA,120000,4807.038,N,01131.000,E,1,08,0.9,8", "format"),  # cut inside the altitude
        (b"$GPRMC,120000,A,4807.038,N,01131.000,E,0.0,,2304", "format"),  # cut inside the date
        (b"$GPGSV,3,3,12,2,40,16,00,090,", "format"),  # gp-320fw cold boot: blocks do not add up
        (b"$GPVTG,136.11,T,,M,0.07,N,0.1,K'62", "format"),  # '*' lost to line noise
    ],
)
def test_rejected_sentence_kinds(line: bytes, kind: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_sentence(line)
    assert info.value.kind == (kind or "proprietary")


def test_no_fix_gga_has_no_position_and_missing_checksum_policy() -> None:
    """pynmea2's own no-fix example: pynmea2 says latitude 0.0, we say None."""
    update = parse_sentence(b"$GPGGA,201716.684,,,,,0,00,,,M,0.0,M,,0000*5F")
    assert update.no_fix and update.values["latitude"] is None and update.values["fix_quality"] == 0
    bare = b"$GPVTG,87.21,T,,M,0.12,N,0.2,K"
    assert parse_sentence(bare).values["speed"] == 0.2
    with pytest.raises(ParseError) as info:
        parse_sentence(bare, strict=True)
    assert info.value.kind == "checksum"


def test_strict_checksum_on_mtk_counts_the_three_without(shared_data: Path) -> None:
    decoder = NmeaDecoder("t", strict_checksum=True, min_date=MIN_DATE)
    items = decoder.feed(replay_bytes(shared_data, "mtk-3301"), T0, 0)
    assert Counter(x.kind for x in items if isinstance(x, ParseError))["checksum"] == 3


def test_splitter_resyncs_on_last_dollar_and_is_bounded() -> None:
    sp = LineSplitter(max_line=100)
    good = _with_checksum("GPVTG,87.21,T,,M,0.12,N,0.2,K")
    ubx = b"\xb5b\x01\x07$\x00\x92" + b"\x00$" * 3  # binary with '$' bytes, then a real sentence
    out = sp.push(ubx + good[:10]) + sp.push(good[10:] + b"\r\nnoise\r\n\r\n")
    assert out[0] == good
    assert isinstance(out[1], ParseError) and out[1].kind == "non_nmea"
    assert len(out) == 2  # blank lines are not counted
    out = sp.push(b"x" * 1000)  # junk without end: never buffered beyond max_line
    assert out == [] and len(sp._buf) <= 100
    out = sp.push(b"$GP" + b"A" * 200 + b"\n" + good + b"\n")
    assert [getattr(x, "kind", x) for x in out] == ["too_long", good]


def test_epoch_channels_units_and_gst(shared_data: Path) -> None:
    frames, _, _ = decode_capture(replay_bytes(shared_data, "skytraq-dgps"))
    first = {c.name: (c.value, c.unit, c.quality) for c in frames[0].channels}
    assert first["latitude"][:2] == (pytest.approx(44.0688264400), "deg")
    assert first["altitude"][:2] == (1102.537, "m")
    assert first["speed"][:2] == (0.0, "km/h")
    assert first["fix_quality"][0] == 2.0 and first["fix_mode"][0] == 3.0
    # $GPGST,213121.000,16.1,22.2,10.2,2.0,0.4,0.6,1.4: sigmas of latitude, longitude, altitude
    assert first["latitude_sigma"][:2] == (0.4, "m") and first["altitude_sigma"][0] == 1.4
    assert first["satellites_used"][0] == 7.0 and first["hdop"][0] == 1.2 and first["vdop"][0] == 2.2
    assert frames[0].observed_at == dt.datetime(2016, 4, 7, 21, 31, 21, tzinfo=dt.UTC)
    assert frames[0].received_at == T0


# ---- the source on a real pseudo-terminal (no servers) ----


def _pty() -> tuple[int, str]:
    master, slave = pty.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    os.close(slave)
    return master, path


def test_source_reads_a_pty_and_reports_unplug(shared_data: Path) -> None:
    master, path = _pty()
    source = GpsNmeaSource(path, 4800, "pty", min_date=MIN_DATE, epoch_idle_s=0.2)
    source.open()
    data = replay_bytes(shared_data, "ublox-zed-f9t-ubx_nmea_l5")
    writer = threading.Thread(target=lambda: [os.write(master, data[i : i + 512]) for i in range(0, len(data), 512)])
    writer.start()
    items: list[Frame | ParseError] = []
    while sum(isinstance(x, Frame) for x in items) < 9:
        items += source.read(0.2)
    writer.join()
    os.close(master)  # unplug
    with pytest.raises(SourceUnavailableError):
        for _ in range(20):
            items += source.read(0.2)
    assert sum(isinstance(x, Frame) for x in items) == 9
    source.close()
    source.close()


def test_source_open_fails_cleanly_on_missing_device(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailableError):
        GpsNmeaSource(str(tmp_path / "nope")).open()


# ---- issue 14: satellites, cut sentences, incomplete epochs, dating ----


def _epoch(*bodies: str) -> dict[str, Channel]:
    """Synthetic sentences (checksums computed) -> the channels of their one epoch."""
    decoder = NmeaDecoder("t", min_date=MIN_DATE)
    data = b"".join(_with_checksum(b) + b"\r\n" for b in bodies)
    frames = [x for x in decoder.feed(data, T0, 0) + decoder.flush() if isinstance(x, Frame)]
    assert len(frames) == 1
    return {c.name: c for c in frames[0].channels}


def test_satellites_used_counted_once_across_gsa_talkers() -> None:
    """Finding 1, synthetic: GPS satellites listed in both $GPGSA and $GNGSA count once (7, not 11)."""
    ch = _epoch(
        "GNRMC,120000.00,A,4807.038,N,01131.000,E,0.0,,010126,,,A",
        "GPGGA,120000.00,4807.038,N,01131.000,E,1,07,0.9,545.4,M,46.9,M,,",
        "GPGSA,A,3,03,19,27,13,,,,,,,,,1.5,0.9,1.2",
        "GNGSA,A,3,03,19,27,13,,,,,,,,,1.5,0.9,1.2",
        "GNGSA,A,3,65,72,88,,,,,,,,,,1.5,0.9,1.2",
    )
    assert ch["satellites_used"].value == 7.0 and ch["satellites_used"].quality is Quality.GOOD
    # NMEA 4.11 system ids: GPS PRN 3 and Galileo PRN 3 are two satellites
    ch = _epoch(
        "GNGGA,120000.00,4807.038,N,01131.000,E,1,04,0.9,545.4,M,46.9,M,,",
        "GNGSA,A,3,03,05,,,,,,,,,,,1.5,0.9,1.2,1",
        "GNGSA,A,3,03,05,,,,,,,,,,,1.5,0.9,1.2,3",
    )
    assert ch["satellites_used"].value == 4.0


def test_satellites_in_view_include_vendor_sentences() -> None:
    """Finding 1, synthetic: a constellation reported only in $PQGSV (Qualcomm/Quectel) is counted."""
    ch = _epoch(
        "GPGGA,120000.00,4807.038,N,01131.000,E,1,05,0.9,545.4,M,46.9,M,,",
        "GPGSV,1,1,03,03,40,100,40,19,30,200,35,27,20,300,30",
        "GLGSV,1,1,01,65,40,100,40",
        "PQGSV,1,1,02,193,50,120,42,194,10,210,20",
        "PQGSA,A,3,193,194,,,,,,,,,,,1.5,0.9,1.2",
        "GPGSA,A,3,03,19,27,,,,,,,,,,1.5,0.9,1.2",
    )
    assert ch["satellites_in_view"].value == 6.0
    assert ch["satellites_used"].value == 5.0


def test_cut_sentences_are_rejected_without_checksum(shared_data: Path) -> None:
    """Finding 2: every real sentence (first 150 of each capture), cut at every byte, no checksum.

    The decoder has seen the type with a checksum, so every cut is rejected (checksum habit). The pure
    layout checks alone reject every cut that leaves a field count no NMEA version allows, and every
    GSV whose satellite blocks do not add up (but for a cut to the valid empty ``$GPGSV,1,1,0``);
    what they cannot see is a cut leaving an older, shorter layout or a shorter last field, which
    only a checksum reveals.
    """
    for name in CAPTURES:
        _, _, lines = decode_capture(replay_bytes(shared_data, name))
        decoder = NmeaDecoder("t", min_date=MIN_DATE)
        for line in lines[:150]:
            body = line.split(b"*")[0]
            try:
                whole = decoder.decode_line(line)
            except ParseError:
                continue
            for cut in range(7, len(body)):
                with pytest.raises(ParseError):
                    decoder.decode_line(body[:cut])
                try:
                    part = parse_sentence(body[:cut])
                except ParseError:
                    continue
                fields = body[:cut].count(b",")
                if whole.sentence == "GSV":  # a cut to an empty GSV ("$GPGSV,1,1,0") or before the signal id
                    assert whole.in_view and part.in_view in (("", 0), ("", whole.in_view[1])), body[:cut]
                else:
                    assert part == whole or fields in LAYOUTS[whole.sentence][0], body[:cut]


def test_checksum_habit_rejects_a_cut_sentence() -> None:
    """Finding 2: a receiver that sends checksums does not lose one: the cut GGA is rejected."""
    decoder = NmeaDecoder("t", min_date=MIN_DATE)
    gga = _with_checksum("GPGGA,120000.00,4807.038,N,01131.000,E,1,07,0.9,545.4,M,46.9,M,,0000")
    decoder.decode_line(gga)
    with pytest.raises(ParseError) as info:
        decoder.decode_line(gga.split(b"*")[0][:-4] + b"1234")  # same layout, no checksum
    assert info.value.kind == "checksum"
    assert NmeaDecoder("t").decode_line(gga.split(b"*")[0]).values["altitude"] == 545.4


def test_epoch_with_a_rejected_sentence_is_warn(shared_data: Path) -> None:
    """Finding 3, real capture: one GSV of a skytraq epoch broken: counts, DOPs, speed are warn."""
    data = replay_bytes(shared_data, "skytraq-dgps")
    lines = data.split(b"\n")
    broken = next(i for i, line in enumerate(lines) if line.startswith(b"$GPGSV,4,2"))
    gga = next(line for line in reversed(lines[:broken]) if line.startswith(b"$GPGGA"))
    lines[broken] = lines[broken].replace(b",", b";", 1)
    frames, kinds, _ = decode_capture(b"\n".join(lines))
    whole, _, _ = decode_capture(data)
    when = dt.datetime.combine(dt.date(2016, 4, 7), parse_sentence(gga).time or dt.time(), tzinfo=dt.UTC)
    ch = {c.name: c for f in frames if f.observed_at == when for c in f.channels}
    clean = {c.name: c for f in whole if f.observed_at == when for c in f.channels}
    assert kinds["parse"] == 1
    for name in ("satellites_in_view", "satellites_used", "hdop", "fix_mode", "speed"):
        assert ch[name].quality is Quality.WARN and clean[name].quality is Quality.GOOD, name
    assert ch["latitude"].quality is Quality.GOOD  # its GGA carries the epoch's fix time


def test_frame_dated_by_the_host_says_so() -> None:
    """Finding 3: an epoch before any receiver date carries date_source=host, quality warn."""
    asm = EpochAssembler("t", MIN_DATE)
    asm.add(parse_sentence(_with_checksum("GPRMC,120000.00,V,,,,,,,050180,,,N")), T0, 0)
    ch = {c.name: c for c in asm.flush()[0].channels}
    assert ch["date_source"] == Channel("date_source", "host", "", Quality.WARN)
    asm.add(parse_sentence(_with_checksum("GPRMC,120001.00,A,4807.038,N,01131.000,E,0.0,,010126,,,A")), T0, 1)
    gga = _with_checksum("GPGGA,120002.00,4807.038,N,01131.000,E,1,07,0.9,5.4,M,46.9,M,,")
    [received] = asm.add(parse_sentence(gga), T0, 2)
    assert {c.name: c.value for c in received.channels}["date_source"] == "receiver"
    assert {c.name: c.value for c in asm.flush()[0].channels}["date_source"] == "previous"
