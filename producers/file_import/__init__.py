"""file_import: CSV and JSONL files streamed into the bulk priority stream by an rq job.

    telemetry-admin import run.csv               # enqueue (rq) and show a progress bar (admin/imports.py)
    telemetry-import-worker                      # runs the job (producers/file_import/worker.py)

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

from common.import_request import ColumnMapping, ImportOptions
from producers.file_import.job import import_file, run_import

__all__ = ["ColumnMapping", "ImportOptions", "import_file", "run_import"]
