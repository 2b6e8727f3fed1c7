"""``telemetry-admin import`` and ``import-status``: enqueue a file import (rq) and watch its progress.

The operator side of imports. The job itself (``producers/file_import``, run by
``telemetry-import-worker``) is named by its dotted string (``common.import_request.IMPORT_JOB``),
so this module does not import ``producers``; the mapping and options it sends are the models of
``common/import_request.py``. It does not read files (the worker does, at the same path).
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
from common.import_request import IMPORT_JOB, ColumnMapping, ImportOptions
from common.queue import fetch_job, get_queue
from common.settings import Settings


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
        IMPORT_JOB,
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
