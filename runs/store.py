"""Runs in PostgreSQL (migration 009): create with an auto-numbered name, stop, mark, find, list,
read a run's readings (through the ``readings`` view), store its summary.

Every value goes as a query parameter. The caller owns the connection and, where it says so,
the transaction. No stream reading and no summary arithmetic here (runs/summary.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from runs.readings import Reading
from runs.summary import assemble, detail_channels

Conn = psycopg.Connection[tuple[Any, ...]]
_COLUMNS = "id, kind, name, devices, started_at, ended_at, status, origin, metadata, summary"
_NAME_LOCK = 0x7E1E_0017
MAX_READINGS = 5_000_000
"""A run longer than this many readings is refused by ``readings_of`` (summarise a shorter span)."""


class RunError(ValueError):
    """A run that does not exist, is already closed, or a bad argument; the message says which."""


@dataclass(frozen=True, slots=True)
class Run:
    id: int
    kind: str
    name: str
    devices: list[str]
    started_at: datetime
    ended_at: datetime | None
    status: str
    origin: str
    metadata: dict[str, Any]
    summary: dict[str, Any] | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "devices": self.devices,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "status": self.status,
            "origin": self.origin,
            "metadata": self.metadata,
            "summary": self.summary,
        }


def _run(row: Sequence[Any]) -> Run:
    return Run(row[0], row[1], row[2], list(row[3]), row[4], row[5], row[6], row[7], dict(row[8]), row[9])


def next_name(taken: Sequence[str], base: str) -> str:
    """``base`` if free, else ``base N`` with N one more than the highest taken (``stock`` counts as 1)."""
    pattern = re.compile(re.escape(base) + r" (\d{1,9})")
    highest = 0
    for name in taken:
        if name == base:
            highest = max(highest, 1)
        elif m := pattern.fullmatch(name):
            highest = max(highest, int(m.group(1)))
    return base if highest == 0 else f"{base} {highest + 1}"


def create_run(
    conn: Conn,
    base_name: str,
    devices: Sequence[str],
    started_at: datetime,
    kind: str = "run",
    metadata: Mapping[str, Any] | None = None,
    origin: str = "manual",
    ended_at: datetime | None = None,
    start_key: str | None = None,
) -> Run:
    """Insert a run named ``base_name`` (auto-numbered), open unless ``ended_at`` is given.

    With ``start_key`` an existing run of that key is returned instead (a boundary seen twice).
    Runs in the caller's transaction if there is one (the advisory lock is held to its end).
    """
    base_name = base_name.strip()
    if not base_name or len(base_name) > 180 or any(ord(c) < 32 for c in base_name):
        raise RunError("a run name is 1-180 printable characters")
    if not devices:
        raise RunError("a run needs at least one device")
    with conn.transaction():
        if start_key is not None:
            row = conn.execute(f"SELECT {_COLUMNS} FROM runs WHERE start_key = %s", [start_key]).fetchone()
            if row:
                return _run(row)
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [_NAME_LOCK])
        taken = [r[0] for r in conn.execute("SELECT name FROM runs WHERE name = %s OR name LIKE %s",
                                            [base_name, _like_prefix(base_name) + " %"])]  # fmt: skip
        row = conn.execute(
            f"INSERT INTO runs (kind, name, devices, started_at, ended_at, status, origin, metadata, start_key)"
            f" VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
            [kind, next_name(taken, base_name), list(devices), started_at, ended_at,
             "open" if ended_at is None else "closed", origin, Jsonb(dict(metadata or {})), start_key],
        ).fetchone()  # fmt: skip
    assert row is not None
    return _run(row)


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def get_run(conn: Conn, ref: str | int) -> Run:
    """A run by id (digits) or exact name; RunError if none."""
    if isinstance(ref, int) or ref.isdigit():
        row = conn.execute(f"SELECT {_COLUMNS} FROM runs WHERE id = %s", [int(ref)]).fetchone()
    else:
        row = conn.execute(f"SELECT {_COLUMNS} FROM runs WHERE name = %s", [ref]).fetchone()
    if row is None:
        raise RunError(f"no run {ref!r}")
    return _run(row)


def open_run(conn: Conn, ref: str | None) -> Run:
    """``ref``, or the only open run when ``ref`` is None (RunError if there are none or several)."""
    if ref is not None:
        return get_run(conn, ref)
    rows = conn.execute(f"SELECT {_COLUMNS} FROM runs WHERE status = 'open' ORDER BY id LIMIT 2").fetchall()
    if len(rows) != 1:
        raise RunError("no open run" if not rows else "several runs are open: name one")
    return _run(rows[0])


def stop_run(conn: Conn, run: Run, ended_at: datetime, end_key: str | None = None, end_entry: str | None = None) -> Run:
    """Close an open run at ``ended_at``; RunError if it is closed already or ``ended_at`` is before its start."""
    if run.status != "open":
        raise RunError(f"run {run.name!r} is already closed (at {run.ended_at})")
    if ended_at < run.started_at:
        raise RunError(f"end {ended_at.isoformat()} is before the run's start {run.started_at.isoformat()}")
    row = conn.execute(
        f"UPDATE runs SET ended_at = %s, status = 'closed', end_key = %s, end_entry = %s"
        f" WHERE id = %s AND status = 'open' RETURNING {_COLUMNS}",
        [ended_at, end_key, end_entry, run.id],
    ).fetchone()
    if row is None:
        raise RunError(f"run {run.name!r} was closed meanwhile")
    return _run(row)


def add_mark(conn: Conn, run: Run, at: datetime, label: str) -> int:
    """Annotate an instant inside ``run`` (between its start and its end, or now if open)."""
    end = run.ended_at or datetime.now(UTC)
    if not (run.started_at <= at <= end):
        raise RunError(f"{at.isoformat()} is outside run {run.name!r} ({run.started_at.isoformat()} .. {end})")
    if not label.strip() or len(label) > 1000:
        raise RunError("a mark's label is 1-1000 characters")
    row = conn.execute("INSERT INTO run_marks (run_id, at, label) VALUES (%s, %s, %s) RETURNING id",
                       [run.id, at, label]).fetchone()  # fmt: skip
    assert row is not None
    return int(row[0])


def marks(conn: Conn, run: Run) -> list[tuple[datetime, str]]:
    return [(r[0], r[1]) for r in conn.execute("SELECT at, label FROM run_marks WHERE run_id = %s ORDER BY at, id",
                                               [run.id])]  # fmt: skip


def list_runs(conn: Conn, limit: int = 50) -> list[Run]:
    return [_run(r) for r in conn.execute(f"SELECT {_COLUMNS} FROM runs ORDER BY id DESC LIMIT %s", [limit])]


_SPAN = "device = ANY(%s) AND observed_at >= %s AND (observed_at < %s OR (%s AND observed_at = %s))"


def _span(run: Run, until: datetime | None) -> list[Any]:
    end = run.ended_at or until or datetime.now(UTC)
    return [run.devices, run.started_at, end, run.ended_at is None, end]


def readings_of(
    conn: Conn, run: Run, until: datetime | None = None, channels: Sequence[str] | None = None
) -> list[Reading]:
    """The run's readings (its devices, start <= observed_at < end, or <= ``until``/now while open), in time order.

    Half-open, so back-to-back runs never share a frame and a detector's run ends before the first
    frame below its threshold.
    """
    only = " AND channel = ANY(%s)" if channels is not None else ""
    rows = conn.execute(
        f"SELECT observed_at, device, channel, unit, value, quality, text_value FROM readings WHERE {_SPAN}{only}"
        " ORDER BY observed_at, device, channel LIMIT %s",
        [*_span(run, until), *([list(channels)] if channels is not None else []), MAX_READINGS + 1],
    ).fetchall()
    if len(rows) > MAX_READINGS:
        raise RunError(f"run {run.name!r} has more than {MAX_READINGS:,} readings")
    return [Reading(*r) for r in rows]


_STATS = (
    "SELECT device, channel, unit, count(*), count(*) FILTER (WHERE quality = 'good'),"
    " min(value) FILTER (WHERE {g}), max(value) FILTER (WHERE {g}), avg(value) FILTER (WHERE {g}),"
    " count(value) FILTER (WHERE {g})"
    " FROM readings WHERE {span} GROUP BY device, channel, unit ORDER BY min(observed_at), device, channel, unit"
).format(g="quality = 'good' AND value <> 'NaN'::float8", span=_SPAN)


def channel_stats_sql(conn: Conn, run: Run) -> tuple[list[dict[str, Any]], int]:
    """runs/summary.py channel_stats computed by PostgreSQL (no reading leaves it), and the frame count."""
    stats = []
    for device, channel, unit, n, good, lo, hi, mean, numeric in conn.execute(_STATS, _span(run, None)):
        row: dict[str, Any] = {"device": device, "channel": channel, "unit": unit, "count": n, "good_share": good / n}
        if numeric:
            row.update(min=lo, max=hi, mean=mean)
        stats.append(row)
    frames = conn.execute(f"SELECT count(*) FROM (SELECT DISTINCT observed_at, device FROM readings WHERE {_SPAN}) f",
                          _span(run, None)).fetchone()  # fmt: skip
    return stats, int(frames[0]) if frames else 0


def summarise_run(conn: Conn, run: Run) -> dict[str, Any]:
    """Compute and store the summary of a closed run; returns it. Per-channel figures come from
    PostgreSQL; only the RPM, power, torque and ambient channels are read here (runs/summary.py)."""
    if run.ended_at is None:
        raise RunError(f"run {run.name!r} is open: stop it first")
    stats, frames = channel_stats_sql(conn, run)
    detail = readings_of(conn, run, channels=detail_channels(stats))
    count = sum(int(c["count"]) for c in stats)
    summary = assemble(stats, frames, count, detail, run.started_at, run.ended_at, run.metadata)
    conn.execute("UPDATE runs SET summary = %s WHERE id = %s", [Jsonb(summary), run.id])
    return summary
