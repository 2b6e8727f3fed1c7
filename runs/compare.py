"""Two dyno runs compared: peak deltas, and where in the RPM range they differ. Pure.

B's figures are converted to A's units (kW/hp, N*m/ft_lb) before any difference is taken. The
RPM range both runs cover is cut into bins (default 250 rpm); in each, the mean power and torque
of each run are compared, and the bins of largest gain and loss are named.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from common.units import convert
from runs.readings import DynoPoint


def _in(value: float, src: str, dst: str) -> float:
    return value if src == dst or not src or not dst else convert(value, src, dst)


def compare(
    a: dict[str, Any],
    b: dict[str, Any],
    a_points: Sequence[DynoPoint],
    b_points: Sequence[DynoPoint],
    bin_rpm: float = 250,
) -> dict[str, Any]:
    """``a``/``b``: the runs' ``summary["dyno"]``; points from runs/readings.py. JSON-able result."""
    out: dict[str, Any] = {"peaks": {}, "bins": [], "bin_rpm": bin_rpm}
    units = {}
    for key, field in (("peak_power", "power"), ("peak_torque", "torque")):
        if key not in a or key not in b:
            continue
        unit = a[key]["unit"]
        units[field] = (unit, b[key]["unit"])
        bv = _in(b[key]["value"], b[key]["unit"], unit)
        out["peaks"][key] = {
            "unit": unit, "a": a[key]["value"], "b": bv, "delta": bv - a[key]["value"],
            "delta_pct": 100.0 * (bv - a[key]["value"]) / a[key]["value"] if a[key]["value"] else None,
            "a_rpm": a[key]["rpm"], "b_rpm": b[key]["rpm"], "delta_rpm": b[key]["rpm"] - a[key]["rpm"],
        }  # fmt: skip
    if not a_points or not b_points or not units:
        return out
    lo = max(min(p.rpm for p in a_points), min(p.rpm for p in b_points))
    hi = min(max(p.rpm for p in a_points), max(p.rpm for p in b_points))
    start = (lo // bin_rpm) * bin_rpm
    while start < hi:
        row: dict[str, Any] = {"rpm_from": start, "rpm_to": start + bin_rpm}
        for field, (ua, ub) in units.items():
            ma = _mean([getattr(p, field) for p in a_points if start <= p.rpm < start + bin_rpm])
            mb = _mean([getattr(p, field) for p in b_points if start <= p.rpm < start + bin_rpm])
            if ma is not None and mb is not None:
                mb = _in(mb, ub, ua)
                row[field] = {"a": ma, "b": mb, "delta": mb - ma}
        if len(row) > 2:
            out["bins"].append(row)
        start += bin_rpm
    for field in units:
        rows = [r for r in out["bins"] if field in r]
        if rows:
            gain = max(rows, key=lambda r: r[field]["delta"])
            loss = min(rows, key=lambda r: r[field]["delta"])
            out[f"{field}_largest_gain"] = {"rpm_from": gain["rpm_from"], "delta": gain[field]["delta"]}
            out[f"{field}_largest_loss"] = {"rpm_from": loss["rpm_from"], "delta": loss[field]["delta"]}
    return out


def _mean(values: Sequence[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return sum(got) / len(got) if got else None


def render(name_a: str, name_b: str, result: dict[str, Any]) -> str:
    """The comparison as text (B minus A)."""
    lines = [f"B {name_b!r} minus A {name_a!r}"]
    for key, p in result["peaks"].items():
        pct = f" ({p['delta_pct']:+.1f} %)" if p["delta_pct"] is not None else ""
        a_at, b_at = f"A {p['a']:8.2f} @ {p['a_rpm']:6.0f}", f"B {p['b']:8.2f} @ {p['b_rpm']:6.0f}"
        delta = f"delta {p['delta']:+7.2f} {p['unit']}{pct}, {p['delta_rpm']:+.0f} rpm"
        lines.append(f"  {key.replace('_', ' '):<11} {a_at}  {b_at}  {delta}")
    for field in ("power", "torque"):
        if f"{field}_largest_gain" in result:
            g, lo = result[f"{field}_largest_gain"], result[f"{field}_largest_loss"]
            lines.append(f"  {field:<11} largest gain {g['delta']:+.2f} at {g['rpm_from']:.0f}+ rpm,"
                         f" largest loss {lo['delta']:+.2f} at {lo['rpm_from']:.0f}+ rpm")  # fmt: skip
    if result["bins"]:
        heads = "".join(f"  {f + ' A':>9} {f + ' B':>9} {'delta':>8}" for f in ("power", "torque"))
        lines.append(f"  {'rpm':>11}{heads}")
        empty = f"  {'-':>9} {'-':>9} {'-':>8}"
        for r in result["bins"]:
            cells = "".join(
                f"  {r[f]['a']:9.2f} {r[f]['b']:9.2f} {r[f]['delta']:+8.2f}" if f in r else empty
                for f in ("power", "torque")
            )
            lines.append(f"  {r['rpm_from']:5.0f}-{r['rpm_to']:<5.0f}{cells}")
    return "\n".join(lines)
