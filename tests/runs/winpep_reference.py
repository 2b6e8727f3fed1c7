"""A minimal, independent reader of the WinPEP 8 CSVs for the tests' expected values (csv module only;
shares no code with runs/ or producers/file_import). Column names as in shared/data/dyno/README.md."""

from __future__ import annotations

import csv
from pathlib import Path


def columns(path: Path) -> dict[str, list[float | None]]:
    """Header (trimmed) -> values per row (None for a blank cell)."""
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    header = [h.strip() for h in rows[0]]
    out: dict[str, list[float | None]] = {h: [] for h in header if h}
    for row in rows[1:]:
        for h, cell in zip(header, row, strict=True):
            if h:
                out[h].append(float(cell) if cell.strip() else None)
    return out


def peak(cols: dict[str, list[float | None]], name: str) -> tuple[int, float]:
    """(row index, value) of the column's maximum (the first row at a tie)."""
    best = max((v, -i) for i, v in enumerate(cols[name]) if v is not None)
    return -best[1], best[0]


def mean(cols: dict[str, list[float | None]], name: str) -> float:
    values = [v for v in cols[name] if v is not None]
    return sum(values) / len(values)
