"""file_import: CSV and JSONL files streamed into the bulk priority stream by an rq job.

    telemetry-admin import run.csv               # enqueue (rq) and show a progress bar
    rq worker --url redis://127.0.0.1:6379/0 imports

* Streaming: rows are read one at a time and published in chunks of ``chunk_rows`` frames, so
  memory stays bounded whatever the file size. Frames go to ``{ns}:bulk`` with source ``file_import``.
* Idempotent: the producer id is ``file_import/<sha256 of file bytes + mapping>`` and seq counts good
  rows from 1, so importing the same file with the same mapping again yields the same
  ``(producer, seq)`` keys and the writer drops them as duplicates. A different mapping is a new import.
  Every observed time comes from the file and the mapping, never the import time or the file's mtime
  (elapsed times need ``start_time``; JSONL rows need ``observed_at`` or ``start_time``), so the frames
  behind those keys are the same too.
* Pacing: after each chunk the job waits while the writer group's lag on the bulk stream exceeds
  ``max_backlog`` (and holds ``max_rows_per_s`` if set); live data never queues behind a file
  because the writer drains higher priorities first. The job waits (up to its rq timeout) if no
  writer runs at all.
* Progress (rows, bytes, percent, rows/s, bad rows) is in ``job.meta``; bad rows never stop the import
  and are reported with their line numbers (the first ``bad_rows_kept``, plus a count) and dead-lettered:
  each is a rejection entry (common.schema) on the bulk stream with its raw bytes, file and line, which
  the writer moves to the dead-letter stream. Lines are read in bounded chunks: a line over
  MAX_ROW_BYTES is one bad row, whatever its length; a quoted CSV field cannot span lines.
* Timestamps older than the writer's partitions (retention) need ``telemetry-admin partitions create``.

Column mappings and the recognised exports: see ``producers.file_import.mapping``. JSONL lines use
the ``jsonl`` source's format (``producers.jsonl.parse_line``). Not a live source: no ``from_settings``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from redis import Redis
from rq.exceptions import NoSuchJobError

from common.errors import ConfigError
from common.queue import fetch_job, get_queue
from common.settings import Settings
from producers.file_import.job import ImportOptions, import_file, run_import
from producers.file_import.mapping import ColumnMapping

__all__ = [
    "ColumnMapping",
    "ImportOptions",
    "enqueue_import",
    "import_file",
    "render_progress",
    "run_import",
    "watch_import",
]


def enqueue_import(
    settings: Settings,
    path: str | Path,
    mapping: ColumnMapping | None = None,
    connection: Redis | None = None,
) -> str:
    """Queue an import of ``path`` (resolved to an absolute path the worker must see); return the job id."""
    file = Path(path).resolve()
    if not file.is_file():
        raise ConfigError(f"{file}: not a readable file")
    f = settings.file_import
    options = ImportOptions(
        namespace=settings.redis.namespace,
        chunk_rows=f.chunk_rows,
        max_backlog=f.max_backlog,
        max_rows_per_s=f.max_rows_per_s,
        bad_rows_kept=f.bad_rows_kept,
        mapping=mapping or ColumnMapping(),
        ranges=dict(settings.producer.ranges),
    )
    job = get_queue(settings, connection).enqueue_call(
        import_file,
        args=(str(file), options.model_dump(mode="json")),
        timeout=f.job_timeout_s,
        result_ttl=f.result_ttl_s,
        failure_ttl=f.result_ttl_s,
        description=f"import {file.name}",
        meta={"state": "queued", "path": str(file), "rows": 0, "percent": 0.0},
    )
    return str(job.id)


def render_progress(meta: dict[str, Any], width: int = 30) -> str:
    """One line: ``[#########-----]  31.0%  12,345 rows  2 bad  45,678 rows/s  running``."""
    percent = float(meta.get("percent") or 0.0)
    done = min(width, int(width * percent / 100))
    return (
        f"[{'#' * done}{'-' * (width - done)}] {percent:5.1f}%  {int(meta.get('rows') or 0):,} rows"
        f"  {int(meta.get('bad_rows') or 0):,} bad  {float(meta.get('rows_per_s') or 0):,.0f} rows/s"
        f"  {meta.get('state', '?')}"
    )


def watch_import(
    settings: Settings,
    job_id: str,
    out: TextIO | None = None,
    interval: float = 0.5,
    connection: Redis | None = None,
) -> int:
    """Show a job's progress bar until it ends; print its summary and bad rows. 0 = imported, 1 = failed."""
    out = out or sys.stderr
    try:
        job = fetch_job(settings, job_id, connection)
    except NoSuchJobError:
        out.write(f"telemetry-admin: no import job {job_id} (unknown, or its result expired)\n")
        return 1
    tty = out.isatty()
    last = ""
    while True:
        status = job.get_status(refresh=True)
        line = render_progress(job.get_meta(refresh=True))
        if line != last:
            out.write(("\r" + line) if tty else (line + "\n"))
            out.flush()
            last = line
        if status in ("finished", "failed", "stopped", "canceled"):
            break
        time.sleep(interval)
    if tty:
        out.write("\n")
    if status != "finished":
        latest = job.latest_result()
        out.write(f"import {job_id} {status}: {(latest.exc_string if latest else None) or ''}\n")
        return 1
    result = job.return_value() or {}
    for lineno, reason in result.get("bad_row_samples", []):
        reason = str(reason).removeprefix(f"line {lineno}: ")  # the parser's reason may name the line too
        out.write(f"  bad row, line {lineno}: {reason}\n")
    out.write(json.dumps({k: v for k, v in result.items() if k != "bad_row_samples"}) + "\n")
    return 0


def admin_import(s: Settings, args: argparse.Namespace) -> int:
    """``telemetry-admin import FILE``: enqueue, then watch unless ``--no-watch``."""
    mapping: dict[str, Any] = json.loads(Path(args.mapping).read_text()) if args.mapping else {}
    for key in ("device", "device_column", "time_column", "time_format", "session", "profile"):
        if getattr(args, key, None) is not None:
            mapping[key] = getattr(args, key)
    job_id = enqueue_import(s, args.file, ColumnMapping.model_validate(mapping))
    print(job_id)
    return 0 if args.no_watch else watch_import(s, job_id)


def admin_import_watch(s: Settings, args: argparse.Namespace) -> int:
    """``telemetry-admin import-status JOB_ID``."""
    return watch_import(s, args.job_id)
