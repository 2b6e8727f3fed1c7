"""``telemetry-admin run ...``: start, stop, mark, list, show, summarise runs (and, via runs/,
import a dyno export as a run, compare, plot and export runs).

Argument parsing and printing only; the work is in runs/ (store, summary, compare, plot, export).
Times are ISO 8601; one without an offset is refused (say ``Z`` or ``+02:00``), default now (UTC).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from common.settings import Settings
from runs import store


def add_parser(sub: Any) -> None:
    """Add ``run`` and its verbs to telemetry-admin's subparsers."""
    p = sub.add_parser("run", help="runs and sessions: start, stop, mark, list, show, import, compare, plot, export")
    verbs = p.add_subparsers(dest="verb", required=True)
    v = verbs.add_parser("start", help="open a run now (or --at)")
    v.add_argument("--name", required=True, help='base name; "stock" again becomes "stock 2"')
    v.add_argument("--device", action="append", required=True, help="device (repeat for several)")
    v.add_argument("--kind", default="run", help="run, session, batch, dyno ...")
    v.add_argument("--at", help="start time, ISO 8601 with offset (default now)")
    v.add_argument(
        "--meta",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="metadata: vehicle=..., operator=..., notes=..., pressure_kpa=98.2, temperature_c=24, humidity_pct=40",
    )
    v.set_defaults(fn=_start)
    v = verbs.add_parser("stop", help="close a run and store its summary")
    v.add_argument("run", nargs="?", help="id or name (default: the only open run)")
    v.add_argument("--at", help="end time (default now)")
    v.set_defaults(fn=_stop)
    v = verbs.add_parser("mark", help="an annotated instant inside a run")
    v.add_argument("label")
    v.add_argument("--run", help="id or name (default: the only open run)")
    v.add_argument("--at", help="time (default now)")
    v.set_defaults(fn=_mark)
    v = verbs.add_parser("list", help="the latest runs")
    v.add_argument("--count", type=int, default=50)
    v.add_argument("--json", action="store_true")
    v.set_defaults(fn=_list)
    v = verbs.add_parser("show", help="a run with its marks and summary")
    v.add_argument("run")
    v.add_argument("--json", action="store_true")
    v.set_defaults(fn=_show)
    v = verbs.add_parser("summarise", help="recompute and store a closed run's summary")
    v.add_argument("run")
    v.set_defaults(fn=_summarise)
    v = verbs.add_parser("import", help="a dyno export (WinPEP 8 CSV) or mapped CSV as a run (needs the import worker)")
    v.add_argument("file")
    v.add_argument("--start", help="time of the file's time 0, for elapsed times (WinPEP exports); ISO with offset")
    v.add_argument("--name", help="base name (default: the file name without extension)")
    v.add_argument("--kind", default="dyno")
    v.add_argument("--mapping", help="JSON column mapping (common/import_request.py ColumnMapping)")
    v.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE")
    v.add_argument("--wait-s", type=float, default=120.0, help="how long to wait for the writer before summarising")
    v.set_defaults(fn=_import)
    from admin.run_views import add_verbs

    add_verbs(verbs)


def when(text: str | None) -> datetime:
    """An ISO 8601 time with an offset, or now (UTC)."""
    if text is None:
        return datetime.now(UTC)
    ts = datetime.fromisoformat(text)
    if ts.tzinfo is None:
        raise ValueError(f"time {text!r} has no UTC offset: add Z or +HH:MM")
    return ts.astimezone(UTC)


def parse_meta(items: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs; numbers stay numbers (pressure_kpa=98.2)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"metadata {item!r} is not KEY=VALUE")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            out[key.strip()] = value
    return out


def connect(s: Settings) -> store.Conn:
    from writer.pg import connect_pg

    return connect_pg(s.postgres)


def _start(s: Settings, args: argparse.Namespace) -> int:
    with connect(s) as conn:
        run = store.create_run(conn, args.name, args.device, when(args.at), args.kind, parse_meta(args.meta))
    print(f"run {run.id} {run.name!r} started at {run.started_at.isoformat()} ({', '.join(run.devices)})")
    return 0


def _stop(s: Settings, args: argparse.Namespace) -> int:
    with connect(s) as conn:
        run = store.stop_run(conn, store.open_run(conn, args.run), when(args.at))
        summary = store.summarise_run(conn, run)
    print(f"run {run.id} {run.name!r} stopped after {summary['duration_s']:.1f} s ({summary['readings']} readings)")
    return 0


def _mark(s: Settings, args: argparse.Namespace) -> int:
    with connect(s) as conn:
        run = store.open_run(conn, args.run)
        at = when(args.at)
        store.add_mark(conn, run, at, args.label)
    print(f"marked {at.isoformat()} in run {run.id} {run.name!r}: {args.label}")
    return 0


def _list(s: Settings, args: argparse.Namespace) -> int:
    with connect(s) as conn:
        runs = store.list_runs(conn, args.count)
    if args.json:
        print(json.dumps([r.as_json() for r in runs], indent=2))
        return 0
    print(f"{'id':>5}  {'name':<24} {'kind':<8} {'status':<7} {'origin':<8} {'started (UTC)':<20} {'s':>8}  devices")
    for r in runs:
        dur = f"{(r.ended_at - r.started_at).total_seconds():8.1f}" if r.ended_at else "    open"
        started = r.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        print(f"{r.id:>5}  {r.name[:24]:<24} {r.kind:<8} {r.status:<7} {r.origin:<8} {started:<20} {dur}  "
              + ", ".join(r.devices))  # fmt: skip
    return 0


def _show(s: Settings, args: argparse.Namespace) -> int:
    with connect(s) as conn:
        run = store.get_run(conn, args.run)
        marks = store.marks(conn, run)
    out = run.as_json() | {"marks": [{"at": at.isoformat(), "label": label} for at, label in marks]}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(render(out))
    return 0


def render(run: dict[str, Any]) -> str:
    """A run as text: header, metadata, marks, dyno peaks, channel table."""
    lines = [f"run {run['id']} {run['name']!r} ({run['kind']}, {run['status']}, {run['origin']})",
             f"  devices   {', '.join(run['devices'])}",
             f"  start     {run['started_at']}", f"  end       {run['ended_at'] or '(open)'}"]  # fmt: skip
    lines += [f"  {k:<9} {json.dumps(v) if isinstance(v, dict | list) else v}" for k, v in run["metadata"].items()]
    lines += [f"  mark      {m['at']}  {m['label']}" for m in run["marks"]]
    summary = run["summary"]
    if not summary:
        lines.append("  summary   (none yet)")
        return "\n".join(lines)
    lines.append(
        f"  duration  {summary['duration_s']:.2f} s, {summary['frames']} frames, {summary['readings']} readings"
    )
    dyno = summary.get("dyno") or {}
    for key in ("peak_power", "peak_torque"):
        if key in dyno:
            p = dyno[key]
            lines.append(f"  {key.replace('_', ' '):<11} {p['value']:.2f} {p['unit']} at {p['rpm']:.0f} rpm"
                         f" (+{p['elapsed_s']:.2f} s)")  # fmt: skip
    sae = dyno.get("sae_j1349")
    if sae and "error" in sae:
        lines.append(f"  SAE J1349 not applied: {sae['error']}")
    elif sae:
        conditions = f"{sae['pressure_kpa']:.2f} kPa, {sae['temperature_c']:.1f} degC, {sae['humidity_pct']:.0f} % RH"
        peaks = "".join(f" {k.replace('_', ' ')} {sae[k]:.2f}" for k in ("peak_power", "peak_torque") if k in sae)
        lines.append(f"  SAE J1349 CF {sae['correction_factor']:.4f} ({conditions} from {sae['ambient_from']}):{peaks}")
    lines.append(f"  {'channel':<34} {'unit':<8} {'count':>7} {'good':>6} {'min':>11} {'max':>11} {'mean':>11}")
    for c in summary["channels"]:
        nums = "".join(f" {c[k]:>11.3f}" if k in c else f" {'-':>11}" for k in ("min", "max", "mean"))
        lines.append(f"  {c['channel'][:34]:<34} {c['unit'][:8]:<8} {c['count']:>7} {c['good_share']:>6.1%}{nums}")
    return "\n".join(lines)


def _summarise(s: Settings, args: argparse.Namespace) -> int:
    with connect(s) as conn:
        summary = store.summarise_run(conn, store.get_run(conn, args.run))
    print(json.dumps(summary, indent=2))
    return 0


def _import(s: Settings, args: argparse.Namespace) -> int:
    """Enqueue the file import (the worker reads the file), wait for it, then make its run."""
    from pathlib import Path

    from admin.imports import enqueue_import, watch_import
    from common.import_request import ColumnMapping
    from common.queue import fetch_job
    from common.redis_client import connect_redis
    from runs.importer import mapping_for, run_from_import

    path = Path(args.file)
    given = ColumnMapping.model_validate_json(Path(args.mapping).read_text()) if args.mapping else None
    mapping = mapping_for(path, when(args.start) if args.start else None, path.stem, given)
    redis = connect_redis(s.redis)
    job_id = enqueue_import(s, path, mapping, redis)
    if watch_import(s, job_id, connection=redis) != 0:
        return 1
    result = fetch_job(s, job_id, redis).return_value() or {}
    meta = {"file": path.name, "import": {k: result.get(k) for k in ("producer", "rows", "frames", "bad_rows")}}
    with connect(s) as conn:
        run = run_from_import(conn, redis, s.redis.names, str(result["producer"]), args.name or path.stem,
                              args.kind, meta | parse_meta(args.meta), args.wait_s)  # fmt: skip
    print(
        f"run {run.id} {run.name!r}: {result.get('frames')} frames from {path.name} ({result.get('bad_rows')} bad rows)"
    )
    return 0


def fail(message: str) -> int:
    print(f"telemetry-admin: {message}", file=sys.stderr)
    return 1
