"""Run summaries and the SAE J1349 correction, against values computed by hand (pure; no servers)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from runs.readings import Reading
from runs.sae import Ambient, correction_factor, dry_pressure_kpa, pressure_kpa, saturation_kpa, temperature_c
from runs.store import next_name
from runs.summary import summarise

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_correction_factor_is_one_at_the_reference_conditions() -> None:
    assert correction_factor(Ambient(99.0, 25.0, 0.0)) == pytest.approx(1.0, abs=1e-12)


def test_correction_factor_by_hand() -> None:
    # 100 kPa dry, 25 degC: 1.18 * 99/100 * 1 - 0.18 = 0.9882
    assert correction_factor(Ambient(100.0, 25.0)) == pytest.approx(0.9882, abs=1e-12)
    # 90 kPa dry, 35 degC: 1.18 * 1.1 * sqrt(308/298) - 0.18 = 1.298 * 1.0166401 - 0.18 = 1.1395988
    assert correction_factor(Ambient(90.0, 35.0)) == pytest.approx(1.298 * math.sqrt(308 / 298) - 0.18, abs=1e-12)
    assert correction_factor(Ambient(90.0, 35.0)) == pytest.approx(1.1395988, abs=1e-6)


def test_humidity_lowers_the_dry_pressure() -> None:
    # saturation at 25 degC is 3.169 kPa (steam tables); 50 % RH -> 1.5845 kPa of vapour
    assert saturation_kpa(25.0) == pytest.approx(3.169, abs=0.002)
    amb = Ambient(100.0, 25.0, 50.0)
    assert dry_pressure_kpa(amb) == pytest.approx(100.0 - 1.5845, abs=0.002)
    # 1.18 * 99 / 98.4155 - 0.18 = 1.00701
    assert correction_factor(amb) == pytest.approx(1.00701, abs=5e-5)


def test_winpep_row_reproduces_the_dynos_correction_factor() -> None:
    # RunFile_40 at Time = 5 (shared/data/dyno/README.md): 24.29 inHg, 69.46 degF, 18.23 % RH; the file says 1.238
    amb = Ambient(pressure_kpa(24.29, "inHg"), temperature_c(69.46, "degF"), 18.23)
    assert correction_factor(amb) == pytest.approx(1.238, abs=0.002)


@pytest.mark.parametrize("amb", [Ambient(20.0, 25.0), Ambient(99.0, 90.0), Ambient(99.0, 25.0, 120.0)])
def test_impossible_conditions_are_refused(amb: Ambient) -> None:
    with pytest.raises(ValueError):
        correction_factor(amb)


def _frame(t: float, rpm: float, power: float, torque: float) -> list[Reading]:
    at = T0 + timedelta(seconds=t)
    return [
        Reading(at, "dyno", "Engine RPM", "rpm", rpm, "good"),
        Reading(at, "dyno", "Power", "kW", power, "good"),
        Reading(at, "dyno", "Torque", "N*m", torque, "good"),
    ]


def test_dyno_summary_by_hand() -> None:
    readings = [
        *_frame(0.5, 3000, 50.0, 160.0),
        *_frame(1.0, 5000, 80.0, 153.0),
        *_frame(1.5, 6000, 75.0, 119.0),
        # a bad reading higher than every good one: never a peak, never in min/max/mean
        Reading(T0 + timedelta(seconds=1.7), "dyno", "Power", "kW", 999.0, "warn"),
        Reading(T0 + timedelta(seconds=1.7), "dyno", "Engine RPM", "rpm", 6500.0, "good"),
    ]
    out = summarise(readings, T0, T0 + timedelta(seconds=2), {"pressure_kpa": 90.0, "temperature_c": 35.0})
    assert out["duration_s"] == 2.0 and out["readings"] == 11 and out["frames"] == 4
    power = next(c for c in out["channels"] if c["channel"] == "Power")
    assert power["count"] == 4 and power["good_share"] == 0.75
    assert (power["min"], power["max"]) == (50.0, 80.0) and power["mean"] == pytest.approx(205 / 3)
    rpm = next(c for c in out["channels"] if c["channel"] == "Engine RPM")
    assert rpm["good_share"] == 1.0 and rpm["max"] == 6500.0
    dyno = out["dyno"]
    assert dyno["peak_power"] | {"at": None} == {
        "value": 80.0, "unit": "kW", "rpm": 5000.0, "at": None, "elapsed_s": 1.0,
    }  # fmt: skip
    assert (dyno["peak_torque"]["value"], dyno["peak_torque"]["rpm"]) == (160.0, 3000.0)
    sae = dyno["sae_j1349"]
    assert sae["ambient_from"] == "metadata"
    assert sae["correction_factor"] == pytest.approx(1.1395988, abs=1e-6)
    assert sae["peak_power"] == pytest.approx(80.0 * 1.1395988, abs=1e-4)


def test_ambient_from_channels_and_krpm() -> None:
    at = T0 + timedelta(seconds=1)
    readings = [
        Reading(at, "w", "Engine RPM", "krpm", 7.5, "good"),
        Reading(at, "w", "Power", "hp", 200.0, "good"),
        Reading(at, "w", "Pressure", "inHg", 29.2348, "good"),  # 99.0 kPa
        Reading(at, "w", "Air Temperature", "degF", 77.0, "good"),  # 25 degC
        Reading(at, "w", "Manifold Pressure", "kPa", 30.0, "good"),  # never taken for ambient
    ]
    dyno = summarise(readings, T0, T0 + timedelta(seconds=2), {})["dyno"]
    assert dyno["peak_power"]["rpm"] == 7500.0
    assert dyno["sae_j1349"]["ambient_from"] == "channels"
    assert dyno["sae_j1349"]["correction_factor"] == pytest.approx(1.0, abs=1e-4)


def test_no_dyno_section_without_rpm_and_no_correction_without_ambient() -> None:
    at = T0 + timedelta(seconds=1)
    out = summarise([Reading(at, "gps", "speed", "km/h", 50.0, "good")], T0, at, {})
    assert "dyno" not in out and out["channels"][0]["mean"] == 50.0
    dyno = summarise(_frame(1, 3000, 10.0, 20.0), T0, at, {})["dyno"]
    assert "sae_j1349" not in dyno and dyno["peak_power"]["value"] == 10.0


def test_auto_numbered_names() -> None:
    assert next_name([], "stock") == "stock"
    assert next_name(["stock"], "stock") == "stock 2"
    assert next_name(["stock", "stock 2", "stock 7", "stock tune"], "stock") == "stock 8"
    assert next_name(["stock 2"], "stock") == "stock 3"
    assert next_name(["stock"], "stock 2") == "stock 2"


def test_pull_only_drops_the_coast_down() -> None:
    from runs.readings import DynoPoint, pull_only

    pts = [DynoPoint(T0 + timedelta(seconds=t), rpm, p, None) for t, rpm, p in
           [(0, 3000, 50.0), (1, 5000, 80.0), (2, 7000, 90.0), (3, 7000, 85.0), (4, 5000, -20.0)]]  # fmt: skip
    assert [p.rpm for p in pull_only(list(reversed(pts)))] == [3000, 5000, 7000]
    assert pull_only([]) == []
