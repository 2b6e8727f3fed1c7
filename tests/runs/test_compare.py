"""Comparing two dyno runs, by hand (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from runs.compare import compare, render
from runs.readings import DynoPoint

T = datetime(2026, 1, 1, tzinfo=UTC)


def _pts(rows: list[tuple[float, float, float]]) -> list[DynoPoint]:
    return [DynoPoint(T, rpm, power, torque) for rpm, power, torque in rows]


def test_peaks_and_bins_by_hand() -> None:
    a_pts = _pts([(3000, 50, 160), (3100, 52, 160), (3300, 60, 170), (3600, 70, 150)])
    b_pts = _pts([(3050, 55, 170), (3200, 60, 175), (3350, 58, 165), (3700, 80, 152)])
    a = {"peak_power": {"value": 70.0, "unit": "kW", "rpm": 3600.0},
         "peak_torque": {"value": 170.0, "unit": "N*m", "rpm": 3300.0}}  # fmt: skip
    # B in hp and ft-lb: converted to A's units first (80 kW = 107.2818 hp; 175 N*m = 129.0709 ft-lb)
    b = {"peak_power": {"value": 80.0 * 1.341022090, "unit": "hp", "rpm": 3700.0},
         "peak_torque": {"value": 175.0 * 0.7375621493, "unit": "ft_lb", "rpm": 3200.0}}  # fmt: skip
    b_imperial = _pts([(p.rpm, p.power * 1.341022090, p.torque * 0.7375621493) for p in b_pts])  # type: ignore[operator]
    out = compare(a, b, a_pts, b_imperial, bin_rpm=250)
    power = out["peaks"]["peak_power"]
    assert power["unit"] == "kW" and power["b"] == pytest.approx(80.0) and power["delta"] == pytest.approx(10.0)
    assert power["delta_pct"] == pytest.approx(100 * 10 / 70) and power["delta_rpm"] == 100.0
    assert out["peaks"]["peak_torque"]["delta"] == pytest.approx(5.0, abs=1e-6)
    # common range 3050..3600: bins 3000-3250, 3250-3500, 3500-3750
    assert [r["rpm_from"] for r in out["bins"]] == [3000, 3250, 3500]
    first = out["bins"][0]["power"]  # A: 50, 52 -> 51; B: 55, 60 -> 57.5
    assert (first["a"], first["b"], first["delta"]) == pytest.approx((51.0, 57.5, 6.5))
    assert out["bins"][1]["power"]["delta"] == pytest.approx(-2.0)
    assert out["bins"][2]["power"]["delta"] == pytest.approx(10.0)
    assert out["power_largest_gain"] == {"rpm_from": 3500, "delta": pytest.approx(10.0)}
    assert out["power_largest_loss"] == {"rpm_from": 3250, "delta": pytest.approx(-2.0)}
    # the same B stored in A's units compares the same
    b_si = {"peak_power": {"value": 80.0, "unit": "kW", "rpm": 3700.0},
            "peak_torque": {"value": 175.0, "unit": "N*m", "rpm": 3200.0}}  # fmt: skip
    same = compare(a, b_si, a_pts, b_pts, bin_rpm=250)
    assert len(same["bins"]) == 3
    for x, y in zip(same["bins"], out["bins"], strict=True):
        assert x["power"]["b"] == pytest.approx(y["power"]["b"]) and x["torque"]["b"] == pytest.approx(y["torque"]["b"])
    assert same["peaks"]["peak_power"]["b"] == pytest.approx(out["peaks"]["peak_power"]["b"])
    assert "largest gain +10.00 at 3500+ rpm" in render("stock", "tuned", out)
