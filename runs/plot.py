"""Runs drawn to a PNG with matplotlib (the optional ``plot`` extra). No database here.

Dyno runs: power (solid, left axis) and torque (dashed, right axis) against RPM, one colour per
run, overlaid. Other runs: the chosen channels against seconds from each run's start, one panel
per channel. Uses the non-interactive Agg backend; 1200 x 700 pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import ConfigError
from runs.readings import DynoPoint, WideRow

WIDTH_PX, HEIGHT_PX, DPI = 1200, 700, 100


@dataclass(frozen=True, slots=True)
class DynoCurve:
    name: str
    points: Sequence[DynoPoint]
    power_unit: str
    torque_unit: str


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise ConfigError(f"plots need matplotlib: pip install 'edge-telemetry[plot]' ({exc})") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_dyno(curves: Sequence[DynoCurve], out: Path, title: str = "") -> Path:
    plt = _pyplot()
    fig, ax_p = plt.subplots(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI)
    ax_t = ax_p.twinx()
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, c in enumerate(curves):
        colour = colours[i % len(colours)]
        pts = sorted((p for p in c.points if p.power is not None or p.torque is not None), key=lambda p: p.observed_at)
        power = [(p.rpm, p.power) for p in pts if p.power is not None]
        torque = [(p.rpm, p.torque) for p in pts if p.torque is not None]
        if power:
            ax_p.plot(*zip(*power, strict=True), color=colour, lw=1.8, label=f"{c.name} power [{c.power_unit}]")
        if torque:
            label = f"{c.name} torque [{c.torque_unit}]"
            ax_t.plot(*zip(*torque, strict=True), color=colour, lw=1.4, ls="--", label=label)
    ax_p.set_xlabel("engine speed [rpm]")
    ax_p.set_ylabel("power (solid)")
    ax_t.set_ylabel("torque (dashed)")
    ax_p.grid(True, alpha=0.3)
    handles = ax_p.get_legend_handles_labels()[0] + ax_t.get_legend_handles_labels()[0]
    labels = ax_p.get_legend_handles_labels()[1] + ax_t.get_legend_handles_labels()[1]
    ax_p.legend(handles, labels, loc="lower center", fontsize=8, ncol=2)
    ax_p.set_title(title or " vs ".join(c.name for c in curves))
    fig.tight_layout()
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return out


def plot_channels(runs: Sequence[tuple[str, float, Sequence[WideRow]]], channels: Sequence[str], out: Path) -> Path:
    """``runs``: (name, start as epoch seconds, rows); one panel per channel name, against elapsed seconds."""
    plt = _pyplot()
    fig, axes = plt.subplots(max(len(channels), 1), 1, figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI,
                             sharex=True, squeeze=False)  # fmt: skip
    for ax, channel in zip(axes[:, 0], channels, strict=False):
        for name, start, rows in runs:
            xs, ys = [], []
            for row in rows:
                for col, v in row.values.items():
                    if col.channel == channel and isinstance(v, float):
                        xs.append(row.observed_at.timestamp() - start)
                        ys.append(v)
            if xs:
                ax.plot(xs, ys, lw=1.2, label=name)
        ax.set_ylabel(channel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    axes[-1, 0].set_xlabel("seconds from run start")
    fig.tight_layout()
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return out
