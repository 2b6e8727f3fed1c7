"""MegaLogViewer/TunerStudio ASCII logs (``.msl``): tab-separated, units line. Pure.

Layout (the shared MegaSquirt-I log; MegaLogViewer writes the same): header lines in double
quotes (firmware signature, capture date), then the column names, then their units (some empty),
then one line per sample. A line starting with ``MARK`` is a marker. Cells are numbers; an
empty cell is a value the ECU did not give (no channel). ``parse_msl`` works line by line on any
iterable of text lines, so the caller bounds memory.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from common.errors import ParseError


@dataclass(frozen=True)
class MslHeader:
    info: tuple[str, ...]
    names: tuple[str, ...]
    units: tuple[str, ...]


@dataclass(frozen=True)
class MslRow:
    line: int
    values: tuple[float | None, ...]


@dataclass(frozen=True)
class MslMarker:
    line: int
    text: str


def parse_msl(lines: Iterable[tuple[int, str]]) -> Iterator[MslHeader | MslRow | MslMarker | ParseError]:
    """(line number, text without newline) pairs -> the header once, then rows and markers.

    ParseError(kind=header) if the names or units line is missing; per row ParseError(kind=columns
    or value) naming the line.
    """
    info: list[str] = []
    names: list[str] | None = None
    units: list[str] | None = None
    for number, text in lines:
        if not text.strip():
            continue
        if names is None:
            if text.startswith('"'):
                info.append(text.strip().strip('"'))
                continue
            names = [n.strip() for n in text.split("\t")]
            continue
        if units is None:
            units = [u.strip() for u in text.split("\t")]
            if len(units) < len(names):
                units += [""] * (len(names) - len(units))
            if len(units) != len(names):
                yield ParseError(f"line {number}: {len(units)} units for {len(names)} columns", "header")
                return
            yield MslHeader(tuple(info), tuple(names), tuple(units))
            continue
        if text.startswith("MARK"):
            yield MslMarker(number, text.strip())
            continue
        cells = text.split("\t")
        if len(cells) != len(names):
            yield ParseError(
                f"line {number}: {len(cells)} fields, header has {len(names)}", "columns", **_where(number, text)
            )
            continue
        try:
            values = tuple(_number(c) for c in cells)
        except ValueError as exc:
            yield ParseError(f"line {number}: {exc}", "value", **_where(number, text))
            continue
        yield MslRow(number, values)
    if units is None:
        yield ParseError("no column names and units lines", "header")


def _where(number: int, text: str) -> dict[str, Any]:
    raw = text.encode("latin-1", errors="replace")
    return {"line": number, "raw": raw[:4096], "size": len(raw)}


def _number(cell: str) -> float | None:
    cell = cell.strip()
    if not cell:
        return None
    value = float(cell)  # ValueError names the cell
    if not math.isfinite(value):
        raise ValueError(f"{cell[:40]!r} is not a finite number")
    return value
