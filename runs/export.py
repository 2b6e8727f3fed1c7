"""A run as a file: wide rows (one per frame time and device, a column per channel with the unit
in its header), UTC time and seconds from the run's start, and the run's metadata and summary
alongside. Formats: ``csv`` (the run beside it in ``FILE.run.json``, so the CSV opens as-is in a
spreadsheet, pandas or a tuning tool), ``jsonl`` (first line ``{"run": ...}``, then one object a
row), ``parquet`` (the run as JSON in the schema metadata key ``run``; needs pyarrow, the
``archive`` extra).

Only good readings are exported as values; another quality is an empty cell (the summary says
how many there were). ``reimport_mapping`` reads an exported CSV back through the file import
(``telemetry-admin run import`` recognises the header): the same good readings come back.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from common.import_request import ChannelSpec, ColumnMapping
from runs.readings import Reading

TIME, ELAPSED, DEVICE = "time_utc", "elapsed_s", "device"
FORMATS = ("csv", "jsonl", "parquet")


def header_of(channel: str, unit: str) -> str:
    return f"{channel} [{unit}]" if unit else channel


def table(readings: Sequence[Reading], started_at: datetime) -> tuple[list[str], list[list[Any]]]:
    """Header and rows: time_utc (ISO, Z), elapsed_s, device, then one column per (channel, unit)."""
    columns: dict[tuple[str, str], int] = {}
    cells: dict[tuple[datetime, str], dict[int, Any]] = {}
    for r in readings:
        col = columns.setdefault((r.channel, r.unit), len(columns))
        value = (r.value if r.value is not None else r.text_value) if r.quality == "good" else None
        cells.setdefault((r.observed_at, r.device), {})[col] = value
    header = [TIME, ELAPSED, DEVICE] + [header_of(c, u) for c, u in columns]
    rows = []
    for (at, device), values in sorted(cells.items()):
        t = at.astimezone(UTC)
        elapsed = (at - started_at).total_seconds()
        rows.append([t.isoformat().replace("+00:00", "Z"), elapsed, device]
                    + [values.get(i) for i in range(len(columns))])  # fmt: skip
    return header, rows


def write(fmt: str, out: Path, run: dict[str, Any], header: list[str], rows: list[list[Any]]) -> list[Path]:
    """Write the file(s); returns the paths written."""
    if fmt == "csv":
        with out.open("w", newline="") as fh:
            _csv(fh, header, rows)
        side = out.with_name(out.name + ".run.json")
        side.write_text(json.dumps(run, indent=2) + "\n")
        return [out, side]
    if fmt == "jsonl":
        with out.open("w") as fh:
            fh.write(json.dumps({"run": run}) + "\n")
            for row in rows:
                fh.write(json.dumps(dict(zip(header, row, strict=True))) + "\n")
        return [out]
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        data = {h: [row[i] for row in rows] for i, h in enumerate(header)}
        tbl = pa.table(data).replace_schema_metadata({"run": json.dumps(run)})
        pq.write_table(tbl, out)
        return [out]
    raise ValueError(f"format {fmt!r}: choose one of {', '.join(FORMATS)}")


def _csv(fh: TextIO, header: list[str], rows: list[list[Any]]) -> None:
    w = csv.writer(fh, lineterminator="\n")
    w.writerow(header)
    for row in rows:
        w.writerow(["" if v is None else repr(v) if isinstance(v, float) else v for v in row])


def is_export(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.readline(65536).startswith(f"{TIME},{ELAPSED},{DEVICE}".encode())


def reimport_mapping(path: Path) -> ColumnMapping:
    """How to read an exported CSV back: ISO times, the device column, each ``name [unit]`` column exactly."""
    with path.open(newline="") as fh:
        header = next(csv.reader(fh))
    channels = {}
    for col in header[3:]:
        name, sep, unit = col.rpartition(" [")
        channels[col] = (
            ChannelSpec(name=name, unit=unit[:-1]) if sep and unit.endswith("]") else ChannelSpec(name=col, unit="")
        )
    return ColumnMapping(profile="generic", time_column=TIME, time_format="iso", device_column=DEVICE,
                         channels=channels)  # fmt: skip
