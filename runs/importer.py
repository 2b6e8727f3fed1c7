"""A dyno export (or any CSV the file import reads) imported as a run of its own.

The rows go through the existing import path (producers/file_import: ColumnMapping -> frames ->
the bulk stream -> the writer), synchronously in this process; the run (origin ``import``, closed)
spans the file's first to last row (+1 ms: runs are half-open). A CSV exported by
``telemetry-admin run export`` is read back with its own mapping (runs/export.py). Once the writer has committed the
rows (``wait_s``) the summary is computed from PostgreSQL like any run's. Importing the same file
the same way again gives the same producer id (no duplicate readings) and the same run
(start_key ``import:<content id>``).

WinPEP 8 "Time Export" CSVs (shared/data/dyno/README.md) are recognised by their ``(DWRT CPU)``
headers and read with ``WINPEP8_CHANNELS``: the measured (uncorrected) power and torque become
``Power`` and ``Torque`` (so the run's SAE J1349 figures are ours, from the ATMO channels), WinPEP's
own corrected columns are kept as ``Power (WinPEP corrected)`` / ``Torque (WinPEP corrected)``;
``Engine RPM`` is in thousands (unit ``krpm``). Units are those the README infers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from redis import Redis

from common.settings import Settings
from producers.file_import.job import ImportOptions, ImportStats, content_id, iter_items, run_import
from producers.file_import.mapping import ChannelSpec, ColumnMapping
from runs import store
from runs.export import is_export, reimport_mapping

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


def file_span(path: Path, mapping: ColumnMapping) -> tuple[datetime, datetime, list[str], int]:
    """First and last row time, devices and readings the import will publish (good rows only)."""
    stats = ImportStats(path.stat().st_size, "span")
    first = last = None
    devices: set[str] = set()
    readings = 0
    for item in iter_items(path, mapping, stats):
        if isinstance(item, Exception):
            continue
        first = item.observed_at if first is None else min(first, item.observed_at)
        last = item.observed_at if last is None else max(last, item.observed_at)
        devices.add(item.device)
        readings += len(item.channels)
    if first is None or last is None:
        raise store.RunError(f"{path}: no row could be read")
    return first, last, sorted(devices), readings


def import_run(
    settings: Settings,
    redis: Redis,
    conn: store.Conn,
    path: Path,
    start: datetime | None,
    name: str | None = None,
    kind: str = "dyno",
    metadata: dict[str, Any] | None = None,
    given: ColumnMapping | None = None,
    wait_s: float = 120.0,
    sleep: Callable[[float], None] = time.sleep,
) -> store.Run:
    """Publish ``path``'s rows, create its run, and summarise it once the writer has them all (its
    ``summary`` stays None if that takes longer than ``wait_s``)."""
    mapping = mapping_for(path, start, path.stem, given)
    first, last, devices, readings = file_span(path, mapping)
    f = settings.file_import
    options = ImportOptions(
        namespace=settings.redis.namespace, chunk_rows=f.chunk_rows, max_backlog=f.max_backlog,
        max_rows_per_s=f.max_rows_per_s, bad_rows_kept=f.bad_rows_kept, mapping=mapping,
        ranges=dict(settings.producer.ranges),
    )  # fmt: skip
    result = run_import(redis, path, options)
    meta = {"file": path.name, "import": {k: result[k] for k in ("producer", "rows", "frames", "bad_rows")}}
    run = store.create_run(
        conn, name or path.stem, devices, first, kind, meta | (metadata or {}), "import",
        ended_at=last + timedelta(milliseconds=1), start_key=f"import:{content_id(path, mapping)}",
    )  # fmt: skip
    deadline = time.monotonic() + wait_s
    while len(store.readings_of(conn, run)) < readings:
        if time.monotonic() > deadline:
            return run
        sleep(0.2)
    store.summarise_run(conn, run)
    return store.get_run(conn, run.id)
