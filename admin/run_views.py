"""``telemetry-admin run compare|plot|export``: looking at runs and taking them elsewhere.

Argument parsing and printing only: runs/compare.py, runs/plot.py and runs/export.py do the work;
the readings come from PostgreSQL through runs/store.py.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from admin.run_cli import connect
from common.settings import Settings
from runs import store
from runs.readings import DynoPoint, dyno_channels, pull_only, wide


def add_verbs(verbs: Any) -> None:
    # compare and plot use the acceleration part of each pull (runs/readings.py pull_only)
    v = verbs.add_parser("compare", help="two dyno runs: peak deltas and where in the RPM range they differ")
    v.add_argument("a")
    v.add_argument("b")
    v.add_argument("--bin-rpm", type=float, default=250.0)
    v.add_argument("--json", action="store_true")
    v.set_defaults(fn=_compare)
    v = verbs.add_parser("plot", help="runs to a PNG: power and torque against RPM, or channels against time")
    v.add_argument("runs", nargs="+", metavar="RUN")
    v.add_argument("--out", required=True, help="PNG file")
    v.add_argument("--channel", action="append", default=[], help="non-dyno runs: channel to draw (repeat)")
    v.set_defaults(fn=_plot)
    v = verbs.add_parser("export", help="a run as wide rows (csv, jsonl, parquet) with its metadata and summary")
    v.add_argument("run")
    v.add_argument("--format", choices=["csv", "jsonl", "parquet"], default="csv")
    v.add_argument("--out", help="file (default: run-<id>.<format>)")
    v.set_defaults(fn=_export)


def _points(conn: store.Conn, run: store.Run) -> tuple[list[DynoPoint], str, str]:
    columns, rows = wide(store.readings_of(conn, run))
    dyno = dyno_channels(columns)
    if dyno is None:
        raise store.RunError(f"run {run.name!r} has no RPM with power or torque: not a dyno run")
    return pull_only(dyno.points(rows)), dyno.power.unit if dyno.power else "", dyno.torque.unit if dyno.torque else ""


def _dyno_summary(run: store.Run) -> dict[str, Any]:
    if not run.summary or "dyno" not in run.summary:
        raise store.RunError(f"run {run.name!r} has no dyno summary (closed and summarised?)")
    dyno: dict[str, Any] = run.summary["dyno"]
    return dyno


def _compare(s: Settings, args: argparse.Namespace) -> int:
    from runs.compare import compare, render

    with connect(s) as conn:
        a, b = store.get_run(conn, args.a), store.get_run(conn, args.b)
        result = compare(_dyno_summary(a), _dyno_summary(b), _points(conn, a)[0], _points(conn, b)[0], args.bin_rpm)
    print(json.dumps(result, indent=2) if args.json else render(a.name, b.name, result))
    return 0


def _plot(s: Settings, args: argparse.Namespace) -> int:
    from runs.plot import DynoCurve, plot_channels, plot_dyno

    out = Path(args.out)
    with connect(s) as conn:
        runs = [store.get_run(conn, ref) for ref in args.runs]
        if args.channel:
            data = [(r.name, r.started_at.timestamp(), wide(store.readings_of(conn, r))[1]) for r in runs]
            plot_channels(data, args.channel, out)
        else:
            curves = [DynoCurve(r.name, *_points(conn, r)) for r in runs]
            plot_dyno(curves, out)
    print(f"{out} ({out.stat().st_size:,} bytes)")
    return 0


def _export(s: Settings, args: argparse.Namespace) -> int:
    from runs.export import table, write

    with connect(s) as conn:
        run = store.get_run(conn, args.run)
        header, rows = table(store.readings_of(conn, run), run.started_at)
        marks = [{"at": at.isoformat(), "label": label} for at, label in store.marks(conn, run)]
    out = Path(args.out or f"run-{run.id}.{args.format}")
    written = write(args.format, out, run.as_json() | {"marks": marks}, header, rows)
    print(f"run {run.id} {run.name!r}: {len(rows)} rows x {len(header)} columns -> {', '.join(map(str, written))}")
    return 0
