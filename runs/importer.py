"""A dyno export (or any CSV the file import reads) as a run of its own.

The rows take the ordinary import path: ``telemetry-admin run import`` enqueues the file-import job
(rq, ``telemetry-import-worker``) with the mapping chosen here, waits for it, then
``run_from_import`` waits until the writer group has acknowledged every bulk entry up to the
stream's last ID (so every row is in PostgreSQL or dead-lettered) and creates the run (origin
``import``, closed) over exactly what was stored for the import's producer id: its devices, first
to last reading (+1 ms: runs are half-open). The summary is computed like any run's. Importing
the same file the same way again gives the same producer id (no duplicate readings) and the same
run (start_key ``import:<producer>``). A CSV exported by ``telemetry-admin run export`` is read
back with its own mapping (runs/export.py).

WinPEP 8 "Time Export" CSVs (shared/data/dyno/README.md) are recognised by their ``(DWRT CPU)``
headers and read with ``WINPEP8_CHANNELS``: the measured (uncorrected) power and torque become
``Power`` and ``Torque`` (so the run's SAE J1349 figures are ours, from the ATMO channels), WinPEP's
own corrected columns are kept as ``Power (WinPEP corrected)`` / ``Torque (WinPEP corrected)``;
``Engine RPM`` is in thousands (unit ``krpm``). Units are those the README infers. No file parsing
here (the import job does it) and no rq calls (admin/run_cli.py makes them).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from redis import Redis

from common.import_request import ChannelSpec, ColumnMapping
from common.schema import Priority
from common.streams import StreamNames, parse_entry_id
from runs import store
from runs.export import is_export, reimport_mapping
from writer.trim import safe_trim_point

WINPEP8_CHANNELS: dict[str, tuple[str, str]] = {
    "(DWRT CPU) Engine RPM": ("Engine RPM", "krpm"),
    "(DWRT CPU) Power (uncorrected)": ("Power", "hp"),
    "(DWRT CPU) Torque (uncorrected)": ("Torque", "ft_lb"),
    "(DWRT CPU) Power": ("Power (WinPEP corrected)", "hp"),
    "(DWRT CPU) Torque": ("Torque (WinPEP corrected)", "ft_lb"),
    "(DWRT CPU) Correction Factor": ("Correction Factor (WinPEP)", ""),
    "(DWRT CPU) Speed": ("Speed", "mph"),
    "(DWRT CPU) Distance": ("Distance", "mi"),
    "(DWRT CPU) Acceleration": ("Acceleration", ""),
    "(DWRT CPU) Force": ("Force", ""),
    "(DWRT CPU) Gear Ratio": ("Gear Ratio", ""),
    "(DWRT CPU) WB Volts Petrol AFR": ("AFR", "afr"),
    "(DWRT ATMO) Pressure": ("Barometric Pressure", "inHg"),
    "(DWRT ATMO) Temperature 1": ("Air Temperature", "degF"),
    "(DWRT ATMO) Temperature 2": ("Temperature 2", "degF"),
    "(DWRT ATMO) Humidity": ("Humidity", "%"),
}


def is_winpep8(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.readline(65536).decode("utf-8", errors="replace")
    return head.startswith("Time,") and "(DWRT CPU)" in head


def mapping_for(path: Path, start: datetime | None, device: str, given: ColumnMapping | None) -> ColumnMapping:
    """The given mapping with ``start_time`` and ``device`` set, else the one for our own export
    (runs/export.py) or for a WinPEP 8 export, else the file import's defaults."""
    if given is not None:
        return given.model_copy(update={"start_time": given.start_time or start, "device": given.device or device})
    if is_export(path):
        return reimport_mapping(path)
    if not is_winpep8(path):
        return ColumnMapping(start_time=start, device=device)
    channels = {col: ChannelSpec(name=name, unit=unit) for col, (name, unit) in WINPEP8_CHANNELS.items()}
    return ColumnMapping(
        profile="generic", time_column="Time", time_format="elapsed_s", start_time=start, device=device,
        channels=channels,
    )  # fmt: skip


def writer_caught_up(redis: Redis, names: StreamNames, upto: tuple[int, int]) -> bool:
    """Whether the writer group has acknowledged every bulk entry up to ``upto`` (ms, seq)."""
    point = safe_trim_point(redis, names.stream(Priority.BULK), names.group)
    return point is not None and parse_entry_id(point) > upto


def run_from_import(
    conn: store.Conn,
    redis: Redis,
    names: StreamNames,
    producer: str,
    name: str,
    kind: str = "dyno",
    metadata: dict[str, Any] | None = None,
    wait_s: float = 120.0,
    sleep: Callable[[float], None] = time.sleep,
) -> store.Run:
    """The run of a finished import (its producer id), summarised, once the writer has every row.

    RunError when the writer is not done within ``wait_s`` (run the same command again later: it
    gives the same run) or when nothing of the import was stored.
    """
    info: Any = redis.xinfo_stream(names.stream(Priority.BULK))
    upto = parse_entry_id(info["last-generated-id"])
    deadline = time.monotonic() + wait_s
    while not writer_caught_up(redis, names, upto):
        if time.monotonic() > deadline:
            raise store.RunError(f"the writer has not committed the import within {wait_s:g} s: run it again later")
        sleep(0.2)
    row = conn.execute(
        "SELECT min(observed_at), max(observed_at), array_agg(DISTINCT device ORDER BY device) FROM readings"
        " WHERE producer = %s",
        [producer],
    ).fetchone()
    if row is None or row[0] is None:
        raise store.RunError(f"nothing of import {producer} is in PostgreSQL (every row bad?)")
    run = store.create_run(
        conn, name, list(row[2]), row[0], kind, metadata or {}, "import",
        ended_at=row[1] + timedelta(milliseconds=1), start_key=f"import:{producer}",
    )  # fmt: skip
    if run.summary is None:
        store.summarise_run(conn, run)
    return store.get_run(conn, run.id)
