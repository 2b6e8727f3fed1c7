"""What ``telemetry-admin import`` sends to the import job: the column mapping and the job's options.

These pydantic models are the contract between the two sides, so they live in ``common``: the
admin side (``admin/imports.py``) builds and enqueues them, the job (``producers/file_import``)
reads them, and neither imports the other. ``IMPORT_JOB`` is the job's dotted name: rq resolves
it in the worker, whose allow-list (``producers/file_import/worker.py`` ``ALLOWED_JOBS``) holds
the same string. Pure data; no parsing (``producers/file_import/mapping.py`` applies a mapping).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from common.settings import RangeSpec

IMPORT_JOB = "producers.file_import.job.import_file"
"""The rq job run for each import (by name: the admin side does not import producers)."""

TimeFormat = Literal["auto", "iso", "epoch_s", "epoch_ms", "elapsed_s", "elapsed_ms"] | str


class ChannelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str | None = None
    """Channel name; default the header text without its unit."""
    unit: str | None = None
    """Unit name (common/units.py spelling); default the unit found in the header."""


class ColumnMapping(BaseModel):
    """How to read a CSV file. Every field has a default, so ``ColumnMapping()`` imports most files."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    profile: Literal["auto", "generic", "powervision", "winpep8", "jsonl", "mlg", "msl"] = "auto"
    """File kind; auto = by extension (.jsonl, .mlg, .msl) or header (WinPEP 8, PowerVision), else generic CSV."""
    delimiter: str | None = None
    """Field separator; default the most frequent of , ; TAB in the header line."""
    skip_lines: int = 0
    """Lines before the header row (title lines of some exports)."""
    time_column: str | None = None
    """Default: the first header named like time/timestamp/date."""
    time_format: TimeFormat = "auto"
    """iso | epoch_s | epoch_ms | elapsed_s | elapsed_ms | a strptime pattern ("%d/%m/%Y %H:%M:%S");
    auto decides from the first value (ISO text, epoch s or ms by magnitude, else elapsed s)."""
    timezone: str = "UTC"
    """Zone of times written without an offset."""
    start_time: datetime | None = None
    """Origin of elapsed times (required with them: an import's times come only from the file and the
    mapping, so importing it again gives the same rows); also the time of JSONL lines without one."""
    device_column: str | None = None
    device: str | None = None
    """Fixed device name when there is no device column; default the file name without extension."""
    channels: dict[str, ChannelSpec] | None = None
    """Columns to import (header -> spec); default every column but time and device."""
    session: str | None = None


class ImportOptions(BaseModel):
    """Everything the job needs (JSON in the rq job: no secrets, no settings lookup in the worker)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    namespace: str
    chunk_rows: int = 1000
    max_backlog: int = 200_000
    max_rows_per_s: float = 0.0
    bad_rows_kept: int = 100
    mapping: ColumnMapping = ColumnMapping()
    ranges: dict[str, RangeSpec] = {}
