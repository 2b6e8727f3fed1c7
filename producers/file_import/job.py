"""The import job: stream a file's rows as frames into the bulk stream, paced, with progress.

``run_import(redis, path, options, progress)`` does the work (usable without rq, e.g. with fakeredis);
``import_file(path, options)`` is the rq job wrapping it. See the package docstring for the guarantees.
"""

from __future__ import annotations

import csv
import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import BaseModel, ConfigDict
from redis import Redis
from redis.exceptions import RedisError, ResponseError

from common.backoff import Backoff
from common.errors import ConfigError, ParseError
from common.publish import Publisher
from common.schema import Frame, Priority
from common.settings import RangeSpec
from common.streams import StreamNames
from producers.file_import.mapping import ColumnMapping, Plan, plan, sniff_delimiter
from producers.jsonl import parse_line
from producers.validate import RangeValidator

PROGRESS_INTERVAL_S = 0.5


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


@dataclass
class ImportStats:
    total_bytes: int
    producer: str
    rows: int = 0
    frames: int = 0
    bad_rows: int = 0
    bytes_read: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)
    state: str = "running"
    started: float = field(default_factory=time.monotonic)

    def meta(self, with_bad: bool = False) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        out: dict[str, Any] = {
            "state": self.state,
            "producer": self.producer,
            "rows": self.rows,
            "frames": self.frames,
            "bad_rows": self.bad_rows,
            "bytes": self.bytes_read,
            "total_bytes": self.total_bytes,
            "percent": round(100.0 * self.bytes_read / self.total_bytes, 1) if self.total_bytes else 100.0,
            "seconds": round(elapsed, 3),
            "rows_per_s": round(self.rows / elapsed, 1),
        }
        if with_bad:
            out["bad_row_samples"] = [list(b) for b in self.bad]
        return out


def content_id(path: Path, mapping: ColumnMapping) -> str:
    """``file_import/<hash>``: the same bytes read the same way always give the same producer id."""
    digest = hashlib.sha256(mapping.model_dump_json().encode())
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return f"file_import/{digest.hexdigest()[:24]}"


def _lines(fh: BinaryIO, stats: ImportStats) -> Iterator[str]:
    first = True
    for raw in fh:
        stats.bytes_read += len(raw)
        text = raw.decode("utf-8", errors="replace")
        if first and text.startswith("\ufeff"):  # BOM written by spreadsheet exports
            text = text[1:]
        first = False
        yield text


def _is_jsonl(path: Path, mapping: ColumnMapping) -> bool:
    if mapping.profile != "auto":
        return mapping.profile == "jsonl"
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return True
    with path.open("rb") as fh:
        return fh.read(256).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{")


def iter_items(path: Path, mapping: ColumnMapping, stats: ImportStats) -> Iterator[Frame | ParseError]:
    """Frames and per-row ParseErrors of a file, streamed. Raises ConfigError if the header is unusable."""
    now = datetime.now(UTC)
    with path.open("rb") as fh:
        if _is_jsonl(path, mapping):
            for lineno, line in enumerate(_lines(fh, stats), 1):
                if line.strip():
                    stats.rows += 1
                    yield _jsonl_row(line, lineno, now, mapping)
            return
        yield from _csv_items(path, _lines(fh, stats), mapping, stats, now)


def _jsonl_row(line: str, lineno: int, now: datetime, mapping: ColumnMapping) -> Frame | ParseError:
    try:
        frame = parse_line(line.encode(), lineno, now, time.monotonic_ns())
    except ParseError as exc:
        return exc
    return replace(frame, source="file_import", priority=Priority.BULK, session=frame.session or mapping.session)


def _csv_items(
    path: Path, lines: Iterator[str], mapping: ColumnMapping, stats: ImportStats, now: datetime
) -> Iterator[Frame | ParseError]:
    for _ in range(mapping.skip_lines):
        next(lines, None)
    header_line = next(lines, None)
    if header_line is None:
        return
    delimiter = mapping.delimiter or sniff_delimiter(header_line)
    header = next(csv.reader([header_line], delimiter=delimiter), [])
    reader = csv.reader(lines, delimiter=delimiter)
    start = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    resolved: Plan | None = None
    for fields in reader:
        lineno = mapping.skip_lines + 1 + reader.line_num
        if not any(f.strip() for f in fields):
            continue
        stats.rows += 1
        if resolved is None:
            try:
                resolved = plan(header, mapping, path.stem, start, fields)
            except ParseError as exc:
                raise ConfigError(f"{path.name}: {exc}") from None
        try:
            yield resolved.row(fields, lineno, now, time.monotonic_ns())
        except ParseError as exc:
            yield exc


def run_import(
    redis: Redis,
    path: Path,
    options: ImportOptions,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Import ``path`` into the bulk stream of ``options.namespace``; return the summary (also the job result)."""
    names = StreamNames(options.namespace)
    stats = ImportStats(path.stat().st_size, content_id(path, options.mapping))
    publisher = Publisher(redis, names, stats.producer)
    validator = RangeValidator(options.ranges)
    pacer = _Pacer(redis, names, options, stats, progress)
    for item in iter_items(path, options.mapping, stats):
        if isinstance(item, ParseError):
            stats.bad_rows += 1
            if len(stats.bad) < options.bad_rows_kept:
                stats.bad.append((_line_of(item), str(item)))
            continue
        publisher.stamp([validator.check(item)])
        if len(publisher.pending) >= options.chunk_rows:
            stats.frames += _send(publisher)
            pacer.after_chunk()
    stats.frames += _send(publisher)
    stats.state = "done"
    result = stats.meta(with_bad=True)
    if progress:
        progress(result)
    return result


def _line_of(error: ParseError) -> int:
    head = str(error).split(":", 1)[0]
    return int(head[5:]) if head.startswith("line ") and head[5:].isdigit() else 0


def _send(publisher: Publisher, attempts: int = 5) -> int:
    """Send pending frames; retry Redis errors briefly (the keys stay the same, so retries are safe)."""
    backoff = Backoff(base=0.2, cap=5.0)
    for attempt in range(attempts):
        try:
            return publisher.send()
        except RedisError:
            if attempt == attempts - 1:
                raise
            time.sleep(backoff.next_delay())
    return 0


class _Pacer:
    """Rate limit, writer back-pressure and progress reports between chunks."""

    def __init__(
        self,
        redis: Redis,
        names: StreamNames,
        options: ImportOptions,
        stats: ImportStats,
        progress: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        self.redis, self.names, self.options, self.stats, self.progress = redis, names, options, stats, progress
        self.last_report = 0.0

    def after_chunk(self) -> None:
        rate = self.options.max_rows_per_s
        if rate > 0:
            ahead = self.stats.rows / rate - (time.monotonic() - self.stats.started)
            if ahead > 0:
                time.sleep(ahead)
        while self.options.max_backlog and (lag := self.backlog()) > self.options.max_backlog:
            self.stats.state = f"waiting for the writer (bulk backlog {lag})"
            self.report(force=True)
            time.sleep(0.2)
        self.stats.state = "running"
        self.report()

    def backlog(self) -> int:
        """Bulk entries not yet read by the writer group (XINFO GROUPS lag; the stream length before
        a writer has created the group)."""
        key = self.names.stream(Priority.BULK)
        try:
            groups = self.redis.xinfo_groups(key)
        except ResponseError:  # no stream yet
            return 0
        for g in groups:
            if g["name"] in (self.names.group, self.names.group.encode()):
                return int(g.get("lag") or 0)
        return int(self.redis.xlen(key))

    def report(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.progress and (force or now - self.last_report >= PROGRESS_INTERVAL_S):
            self.last_report = now
            self.progress(self.stats.meta())


def import_file(path: str, options: dict[str, Any]) -> dict[str, Any]:
    """The rq job: import ``path`` using the worker's Redis connection; progress in ``job.meta``."""
    from rq import get_current_job

    job = get_current_job()
    if job is None:
        raise RuntimeError("import_file runs inside an rq worker; call run_import() directly otherwise")

    def progress(meta: dict[str, Any]) -> None:
        job.meta.update(meta)
        job.save_meta()  # type: ignore[no-untyped-call]

    return run_import(job.connection, Path(path), ImportOptions.model_validate(options), progress)
