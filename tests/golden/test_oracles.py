"""The stored expected.jsonl files checked against references that are not our code.

A golden file is only as right as the code that wrote it, so the values it holds are compared here
with independent references: gpsd's own decode (``*.log.chk``) for every GPS capture, the figures
counted from the scale hexdumps and READMEs, the MTS README's hand decode, the ELM327-emulator's
recorded values (shared/protocols.md §1c), the WinPEP README's expected peaks, and values derived by
hand for the synthetic JETDRIVE datagrams. A regenerated file that moves away from them fails here.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from tests.golden.cases import Case, Line, discover, read_expected
from tests.producers.gps_captures import ORACLE_MODE_EXCEPTIONS, gpsd_fixes


def expected(source: str, name: str) -> list[Line]:
    (case,) = discover(source, name)
    return read_expected(case)


def frames(lines: list[Line]) -> list[dict[str, Any]]:
    """Frame lines as {channel: value} plus ``_obs``; error lines left out."""
    return [{c[0]: c[1] for c in line["ch"]} | {"_obs": line["obs"]} for line in lines if "ch" in line]


GPS = [c for c in discover("gps_nmea") if c.capture and "min_date" not in c.settings]
"""Cases under the 2000-01-01 floor the gpsd comparison uses (gps_captures.MIN_DATE)."""


@pytest.mark.parametrize("case", GPS, ids=lambda c: c.name)
def test_gps_positions_times_and_modes_are_gpsds(shared_data: Path, case: Case) -> None:
    name = Path(case.capture or "").name.removesuffix(".log")
    ours = {dt.datetime.fromisoformat(f["_obs"]): f for f in frames(read_expected(case))}
    fixes = gpsd_fixes(shared_data, name)
    if name == "garmin-geko201":  # RMC status V throughout: gpsd reports no time, we no position
        assert not fixes and all(f["latitude"] is None for f in ours.values())
    assert fixes or name == "garmin-geko201", "gpsd reports no fix time in this capture"
    for time, fix in fixes.items():
        assert time in ours, f"gpsd has a fix at {time}, the golden file has no frame then"
        mode = ORACLE_MODE_EXCEPTIONS.get((name, time.isoformat()), (fix.mode, fix.mode))[0]
        assert ours[time]["fix_mode"] == mode, time
        if fix.mode >= 2:
            assert ours[time]["latitude"] == pytest.approx(fix.lat, abs=1e-6), time
            assert ours[time]["longitude"] == pytest.approx(fix.lon, abs=1e-6), time


def _weights(name: str) -> tuple[list[dict[str, Any]], list[str]]:
    lines = expected("scales", name)
    return frames(lines), [line["error"] for line in lines if "error" in line]


def test_scale_captures_match_their_hexdumps_and_readme() -> None:
    # Figures counted in the hexdumps (tests/producers/test_scales.py says how) and the README.
    f, err = _weights("ohaus-defender3000-hex")  # README: 454 x "   0.360 kg    G", first/last cut
    assert err == ["partial"] and len(f) == 454
    assert {(r["weight"], r["stable"], r["net"]) for r in f} == {(0.36, 1.0, 0.0)}
    f, err = _weights("ohaus-defender3000-text")  # 1890 full records, 1030 negative net, 339 "?"
    assert sorted(err) == ["partial", "width"] and len(f) == 1890
    assert sum(r["weight"] < 0 for r in f) == 1030 == sum(r["net"] for r in f)
    assert sum(not r["stable"] for r in f) == 339 and min(r["weight"] for r in f) == -1.695
    assert (f[0]["weight"], f[0]["net"]) == (-1.64, 1.0)
    f, err = _weights("qhw-indicator")  # README: weight drifting 245.4 to 245.6 g; 4 "US"
    assert err == [] and len(f) == 829 and sum(not r["stable"] for r in f) == 4
    assert {r["weight"] for r in f} == {245.2, 245.3, 245.4, 245.5, 245.6}
    assert (f[0]["weight"], f[-1]["weight"]) == (245.6, 245.5)
    f, err = _weights("nhb-indicator")  # 463 records, 221 "US", first 85.5 g, last 106.2 g
    assert err == [] and len(f) == 463 and sum(not r["stable"] for r in f) == 221
    assert (f[0]["weight"], f[-1]["weight"]) == (85.5, 106.2)
    f, err = _weights("spun-weight-scale")  # README: starts with noise 00 00 7F 7F; 997 "?G"
    assert err == ["noise"] and len(f) == 1690 and sum(not r["stable"] for r in f) == 997
    assert (f[0]["weight"], f[-1]["weight"]) == (0.0, 20.0)
    f, err = _weights("mettler-toledo-ms204ts00")  # README: 7 records; hexdump 0.3749, 0.3747, 5 x 0.3746
    assert err == [] and [r["weight"] for r in f] == [0.3749, 0.3747] + [0.3746] * 5


def test_mts_capture_is_free_air_o2_on_both_channels() -> None:
    # shared/data/mts/README.md: F=1 (O2 level), L=209 -> 20.9 % O2, both channels; no AFR in free air.
    f = frames(expected("afr_serial", "dlg1-two-sensors-free-air"))
    assert len(f) == 5
    for r in f:
        assert r["afr_1_status"] == r["afr_2_status"] == "o2"
        assert r["afr_1_o2"] == r["afr_2_o2"] == 20.9 and r["afr_1"] is None and r["afr_2"] is None


def test_synthetic_mts_stream_is_the_hand_decode() -> None:
    # case.toml: lambda = 0.5 + L/1000, AFR = lambda * 14.7, aux = 5 V * raw / 1023; packet 2 and the outlier dropped.
    lines = expected("afr_serial", "lc1-ramp-noise-outlier")
    assert [line["error"] for line in lines if "error" in line] == ["length", "isolated"]
    got = [(r["afr_1_lambda"], r["afr_1"], r["aux_1"]) for r in frames(lines)]
    assert got == [(1.0, 14.7, 2.502444), (1.005, 14.7735, 2.541544), (1.006, 14.7882, 2.541544)]


def test_obd_round_one_is_the_emulators_recorded_values() -> None:
    # shared/protocols.md §1c: RPM 1303.75, SPEED 10, COOLANT_TEMP 55, INTAKE_TEMP 17, GET_DTC [], VIN WP0ZZZ99ZTS39...
    f = frames(expected("obd", "elm327-emulator-car"))
    assert f[0] | {"_obs": None} == {
        "vin": "WP0ZZZ99ZTS390000",
        "rpm": 1303.75,
        "speed": 10.0,
        "coolant_temp": 55.0,
        "iat": 17.0,
        "_obs": None,
    }
    assert (f[1]["dtc"], f[1]["dtc_count"]) == ("", 0.0)
    assert (f[3]["dtc"], f[4]["rpm"], f[5]["dtc"]) == ("U100F,P0143", 1180.25, None)


def test_winpep_imports_hold_the_readme_peaks() -> None:
    # shared/data/dyno/README.md §3: peak corrected Power and the row it is on, per file.
    peaks = {
        "40": (312, 274.341, "12.050", 7.569),
        "86": (272, 276.48, "10.100", 7.032),
        "96": (285, 276.365, "11.050", 6.993),
    }
    for run, (rows, power, at, rpm) in peaks.items():
        f = frames(expected("file_import", f"winpep8-runfile-{run}"))
        assert len(f) == rows
        # the real WinPEP 8 columns: (DWRT CPU) Power -> horsepower, Engine RPM (thousands) -> rpm x 1000
        best = max((r for r in f if "horsepower" in r), key=lambda r: r["horsepower"])
        assert best["horsepower"] == power and best["rpm"] == pytest.approx(rpm * 1000, abs=1e-9)
        assert best["_obs"].startswith(f"2024-05-09T00:00:{at}")


def test_jetdrive_frames_are_the_hand_derived_ones() -> None:
    # datagrams.txt comments: Pong at 40 ms echoing host_ts 0 with remote 1000 -> latency 20, offset -960,
    # so provider ts 1020 is our 40 ms; values are the float32 written.
    f = frames(expected("dyno_udp", "one-provider-ping"))
    assert [(r["_obs"][17:23], r.get("rpm"), r["time_source"]) for r in f] == [
        ("00.000", 3000.0, "receive"),
        ("00.040", 3000.0, "ping"),
        ("00.050", 3100.0, "ping"),
        ("00.060", None, "ping"),
        ("00.080", None, "ping"),
        ("00.390", 3500.0, "ping"),
    ]


def test_week_rollover_moves_receiver_dates_by_exactly_1024_weeks() -> None:
    # The same capture under two min_dates: receiver-dated frames differ by 1024 weeks only.
    old, new = (frames(expected("gps_nmea", n)) for n in ("mtk-3301", "mtk-3301-production-min-date"))
    assert len(old) == len(new)
    shifted = 0
    for a, b in zip(old, new, strict=True):
        assert {k: v for k, v in a.items() if k != "_obs"} == {k: v for k, v in b.items() if k != "_obs"}
        ta, tb = dt.datetime.fromisoformat(a["_obs"]), dt.datetime.fromisoformat(b["_obs"])
        if a["date_source"] == "host":
            assert ta == tb
        else:
            assert tb - ta == dt.timedelta(weeks=1024)
            shifted += 1
    assert shifted == 6  # 5 epochs before the first RMC date are host-dated (no receiver date yet)


def test_every_gps_capture_is_checked_against_gpsd() -> None:
    assert {c.capture for c in GPS} == {c.capture for c in discover("gps_nmea") if c.capture}
    assert len(GPS) == 8
