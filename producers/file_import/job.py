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
from typing import Any, BinaryIO, NamedTuple

from redis import Redis
from redis.exceptions import RedisError, ResponseError

from common.backoff import Backoff
from common.errors import ConfigError, DecodeError, ParseError
from common.import_request import ImportOptions
from common.publish import Publisher
from common.schema import MAX_NAME_LEN, MAX_RAW_LEN, Frame, Priority, Rejection, validate_frame
from common.streams import StreamNames
from producers.file_import.ecu_logs import ECU_SUFFIXES, mlg_items, msl_items
from producers.file_import.mapping import ColumnMapping, Plan, plan, sniff_delimiter
from producers.jsonl import MAX_LINE, parse_line
from producers.validate import RangeValidator

PROGRESS_INTERVAL_S = 0.5


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


MAX_ROW_BYTES = MAX_LINE
"""Longest line of an import (bytes): a longer one is one bad row, skipped in bounded chunks."""


class _Line(NamedTuple):
    number: int
    data: bytes
    """The line without its newline; only the first MAX_RAW_LEN bytes when ``size`` > MAX_ROW_BYTES."""
    size: int


def _lines(fh: BinaryIO, stats: ImportStats) -> Iterator[_Line]:
    """Physical lines with their numbers; memory bounded by MAX_ROW_BYTES whatever the line length."""
    number = 0
    while True:
        raw = fh.readline(MAX_ROW_BYTES + 1)
        if not raw:
            return
        number += 1
        stats.bytes_read += len(raw)
        size = len(raw)
        if len(raw) > MAX_ROW_BYTES and not raw.endswith(b"\n"):
            head = raw[:MAX_RAW_LEN]
            while raw and not raw.endswith(b"\n"):  # skip the rest of the line, a chunk at a time
                raw = fh.readline(1 << 16)
                stats.bytes_read += len(raw)
                size += len(raw)
            yield _Line(number, head, size - (1 if raw.endswith(b"\n") else 0))
            continue
        data = raw.rstrip(b"\n").rstrip(b"\r")
        if number == 1 and data.startswith(b"\xef\xbb\xbf"):  # BOM written by spreadsheet exports
            data = data[3:]
        yield _Line(number, data, len(data))


def _too_long(line: _Line) -> ParseError:
    msg = f"line {line.number}: {line.size} bytes, longer than {MAX_ROW_BYTES}"
    return ParseError(msg, "too_long", line=line.number, raw=line.data, size=line.size)


def _is_jsonl(path: Path, mapping: ColumnMapping) -> bool:
    if mapping.profile != "auto":
        return mapping.profile == "jsonl"
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return True
    with path.open("rb") as fh:
        return fh.read(256).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{")


def iter_items(path: Path, mapping: ColumnMapping, stats: ImportStats) -> Iterator[Frame | ParseError]:
    """Frames and per-row ParseErrors of a file, streamed. Raises ConfigError if the header is unusable.

    Every observed time comes from the file and the mapping (never the import time or the file's
    mtime), so the same file and mapping always give the same frames. Every ParseError of a row
    carries its line number and raw bytes.
    """
    now = datetime.now(UTC)
    ecu = mapping.profile if mapping.profile in ("mlg", "msl") else ECU_SUFFIXES.get(path.suffix.lower())
    if ecu == "mlg" and mapping.profile in ("auto", "mlg"):
        data = path.read_bytes()  # binary blocks: no line framing to stream by
        stats.bytes_read = len(data)
        yield from _counted(mlg_items(path, mapping, data), stats)
        return
    with path.open("rb") as fh:
        if ecu == "msl" and mapping.profile in ("auto", "msl"):
            lines = ((line.number, line.data.decode("latin-1")) for line in _lines(fh, stats))
            yield from _counted(msl_items(path, mapping, lines), stats)
            return
        if _is_jsonl(path, mapping):
            for line in _lines(fh, stats):
                if line.data.strip():
                    stats.rows += 1
                    yield _too_long(line) if line.size > MAX_ROW_BYTES else _jsonl_row(line, now, mapping)
            return
        yield from _csv_items(path, _lines(fh, stats), mapping, stats, now)


def _counted(items: Iterator[Frame | ParseError], stats: ImportStats) -> Iterator[Frame | ParseError]:
    for item in items:
        stats.rows += 1
        yield item


def _jsonl_row(line: _Line, now: datetime, mapping: ColumnMapping) -> Frame | ParseError:
    try:
        frame = parse_line(line.data, line.number, now, time.monotonic_ns(), mapping.start_time, required_time=True)
        return replace(frame, source="file_import", priority=Priority.BULK, session=frame.session or mapping.session)
    except ParseError as exc:
        return exc


def _csv_items(
    path: Path, lines: Iterator[_Line], mapping: ColumnMapping, stats: ImportStats, now: datetime
) -> Iterator[Frame | ParseError]:
    for _ in range(mapping.skip_lines):
        next(lines, None)
    header_line = next(lines, None)
    if header_line is None:
        return
    header_text = header_line.data.decode("utf-8", errors="replace")
    delimiter = mapping.delimiter or sniff_delimiter(header_text)
    try:
        header = next(csv.reader([header_text], delimiter=delimiter), [])
    except csv.Error as exc:
        raise ConfigError(f"{path.name}: unreadable header: {exc}") from None
    resolved: Plan | None = None
    for line in lines:
        if not line.data.strip():
            continue
        stats.rows += 1
        if line.size > MAX_ROW_BYTES:
            yield _too_long(line)
            continue
        try:
            # One physical line is one row: a quoted field cannot span lines (a bad row instead).
            fields = next(csv.reader([line.data.decode("utf-8", errors="replace")], delimiter=delimiter), [])
            if not any(f.strip() for f in fields):
                stats.rows -= 1
                continue
            if resolved is None:
                try:
                    resolved = plan(header, mapping, path.stem, fields)
                except ParseError as exc:
                    raise ConfigError(f"{path.name}: {exc}") from None
            frame = resolved.row(fields, line.number, now, time.monotonic_ns())
            try:
                validate_frame(frame)  # the producer accepts exactly what the writer accepts
            except DecodeError as exc:
                raise ParseError(f"line {line.number}: {exc}", "schema") from None
            yield frame
        except ParseError as exc:
            exc.line, exc.raw, exc.size = line.number, line.data[:MAX_RAW_LEN], line.size
            yield exc
        except csv.Error as exc:
            yield ParseError(f"line {line.number}: {exc}", "csv", line=line.number, raw=line.data[:MAX_RAW_LEN])
        except ConfigError:
            raise
        except Exception as exc:  # anything unforeseen is this row's problem, not the import's
            msg = f"line {line.number}: unexpected {type(exc).__name__}: {str(exc)[:200]}"
            yield ParseError(msg, "internal", line=line.number, raw=line.data[:MAX_RAW_LEN], size=line.size)


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
    device = (options.mapping.device or path.stem)[:MAX_NAME_LEN]  # a bad row's device, as far as it is known
    pacer = _Pacer(redis, names, options, stats, progress)
    for item in iter_items(path, options.mapping, stats):
        if isinstance(item, Frame):
            publisher.stamp([validator.check(item)])
        else:
            stats.bad_rows += 1
            if len(stats.bad) < options.bad_rows_kept:
                stats.bad.append((item.line or _line_of(item), str(item)))
            raw = item.raw or b""
            publisher.reject(
                Rejection("file_import", device, item.kind, str(item), raw, item.size, str(path), item.line or 0)
            )
        if len(publisher.pending) + len(publisher.rejections) >= options.chunk_rows:
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
    before = len(publisher.pending)
    for attempt in range(attempts):
        try:
            publisher.send()
            break
        except RedisError:
            if attempt == attempts - 1:
                raise
            time.sleep(backoff.next_delay())
    return before - len(publisher.pending)


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
