"""jsonl: frames as JSON lines from stdin, a file or a FIFO, so any script can feed the pipeline.

One line, one frame (like Telegraf's execd input)::

    {"device": "pump-1", "observed_at": "2026-11-23T10:00:00Z", "session": "s1",
     "priority": "normal",
     "channels": {"pressure": 1.25, "state": "on",
                  "temp": {"value": 20.5, "unit": "degC", "quality": "good"}}}

Only ``device`` and ``channels`` are required; ``observed_at`` defaults to the time the line
was read. A bad line becomes a ParseError naming its line number and carrying the line (the run
loop dead-letters it); reading goes on. The producer accepts exactly what the writer accepts
(common.schema ``validate_frame``). A line longer than MAX_LINE is one ``too_long`` rejection,
read in bounded chunks and never held in memory whole.

A regular file is read from where the last run stopped when ``offset_file`` is set: the offset
and line number of the last line whose frame was published or spooled (``commit``, called by the
run loop) are stored there, keyed by the file's device and inode (a replaced or truncated file
starts again at 0). ``parse_line`` is pure; ``JsonlSource`` does the reading.
"""

from __future__ import annotations

import logging
import math
import os
import select
import stat
import sys
import time
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from common.clock import Clock, SystemClock
from common.errors import DecodeError, ParseError, SourceUnavailableError
from common.schema import MAX_NAME_LEN, MAX_RAW_LEN, MAX_UNIT_LEN, Channel, Frame, Priority, Quality, validate_frame
from common.settings import Settings
from producers.source_spec import SourceSpec

logger = logging.getLogger(__name__)

MAX_LINE = 1 << 20
"""Longest accepted line (bytes); longer lines are rejected as ``too_long``."""

TAIL_CHECK = 4096
"""Bytes before a saved offset whose CRC must match for a restart to resume there."""

_KEYS = frozenset(["device", "observed_at", "session", "priority", "channels"])


def parse_line(
    line: bytes,
    lineno: int,
    received_at: datetime,
    monotonic_ns: int,
    observed_default: datetime | None = None,
    required_time: bool = False,
) -> Frame:
    """One JSON line -> Frame the writer accepts. Raises ParseError naming the line, carrying it.

    ``observed_default`` is the time of a line without ``observed_at``: default ``received_at``,
    unless ``required_time`` (an import: its times must come from the file) makes it a ``time``
    error. Any failure is a ParseError (kind json, schema, time or internal), never another exception.
    """
    try:
        default = observed_default or (None if required_time else received_at)
        frame = _parse(line, lineno, received_at, monotonic_ns, default)
        validate_frame(frame)
        return frame
    except ParseError as exc:
        error = exc
    except DecodeError as exc:
        error = ParseError(f"line {lineno}: {exc}", "schema")
    except Exception as exc:  # anything unforeseen is this line's problem, not the producer's
        error = ParseError(f"line {lineno}: unexpected {type(exc).__name__}: {str(exc)[:200]}", "internal")
    error.line, error.raw, error.size = lineno, line[:MAX_RAW_LEN], len(line)
    raise error


def _parse(
    line: bytes, lineno: int, received_at: datetime, monotonic_ns: int, observed_default: datetime | None
) -> Frame:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ParseError(f"line {lineno}: invalid JSON: {str(exc)[:100]}", "json") from None
    if not isinstance(obj, dict):
        raise ParseError(f"line {lineno}: expected a JSON object", "schema")
    unknown = set(obj) - _KEYS
    if unknown:
        raise ParseError(f"line {lineno}: unknown keys {sorted(unknown)[:5]}", "schema")
    device = obj.get("device")
    if not isinstance(device, str) or not device or len(device) > MAX_NAME_LEN:
        raise ParseError(f"line {lineno}: 'device' must be a 1-{MAX_NAME_LEN} character string", "schema")
    session = obj.get("session")
    if session is not None and (not isinstance(session, str) or not session or len(session) > MAX_NAME_LEN):
        raise ParseError(f"line {lineno}: 'session' must be a non-empty string", "schema")
    try:
        priority = Priority(obj.get("priority", "normal"))
    except ValueError:
        raise ParseError(f"line {lineno}: unknown priority {obj.get('priority')!r}", "schema") from None
    observed_at = _time(obj.get("observed_at"), lineno) or observed_default
    if observed_at is None:
        raise ParseError(f"line {lineno}: 'observed_at' is required here (or a start_time in the mapping)", "time")
    channels = _channels(obj.get("channels"), lineno)
    return Frame("jsonl", device, observed_at, received_at, monotonic_ns, channels, session, priority=priority)


def _time(raw: Any, lineno: int) -> datetime | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise ParseError(f"line {lineno}: 'observed_at' must be an ISO 8601 string", "schema")
    try:
        ts = datetime.fromisoformat(raw)
    except ValueError:
        raise ParseError(f"line {lineno}: 'observed_at' is not ISO 8601: {raw[:40]!r}", "schema") from None
    if ts.tzinfo is None:
        raise ParseError(f"line {lineno}: 'observed_at' has no timezone", "schema")
    try:
        # 0001-01-01T00:00:00+01:00 and 9999-12-31T23:59:59-05:00 parse but have no UTC form.
        return ts.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ParseError(f"line {lineno}: 'observed_at' {raw[:40]!r} is out of range in UTC", "time") from None


def _channels(raw: Any, lineno: int) -> tuple[Channel, ...]:
    if not isinstance(raw, dict) or not raw:
        raise ParseError(f"line {lineno}: 'channels' must be a non-empty object", "schema")
    out = []
    for name, spec in raw.items():
        if not name or len(name) > MAX_NAME_LEN:
            raise ParseError(f"line {lineno}: channel name must be 1-{MAX_NAME_LEN} characters", "schema")
        unit, quality = "", Quality.GOOD
        value = spec
        if isinstance(spec, dict):
            value = spec.get("value")
            unit = spec.get("unit", "")
            try:
                quality = Quality(spec.get("quality", "good"))
            except ValueError:
                raise ParseError(f"line {lineno}: channel {name[:40]!r}: unknown quality", "schema") from None
            if not isinstance(unit, str) or len(unit) > MAX_UNIT_LEN:
                raise ParseError(f"line {lineno}: channel {name[:40]!r}: bad unit", "schema")
        if isinstance(value, bool) or not (value is None or isinstance(value, int | float | str)):
            raise ParseError(f"line {lineno}: channel {name[:40]!r}: value must be number, string or null", "schema")
        if isinstance(value, int):
            value = float(value)
        if isinstance(value, float) and not math.isfinite(value):
            raise ParseError(f"line {lineno}: channel {name[:40]!r}: value is not finite", "schema")
        if value is None and quality in (Quality.GOOD, Quality.WARN):
            quality = Quality.NO_DATA
        out.append(Channel(name, value, unit, quality))
    return tuple(out)


class JsonlSource:
    """Reads JSON lines from ``path`` (``-`` = stdin), optionally following a file or FIFO."""

    source = "jsonl"

    def __init__(
        self, path: str = "-", follow: bool = False, clock: Clock | None = None, offset_file: Path | None = None
    ) -> None:
        self.path = path
        self.follow = follow
        self.clock = clock or SystemClock()
        self.offset_file = offset_file
        self.lineno = 0
        self.resumed_at = 0
        """Byte offset this run started reading at (0 unless resumed)."""
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None
        """(st_dev, st_ino) of the regular file being read."""
        self._pos = 0
        """Offset of the next byte to read from the file."""
        self._buf = bytearray()
        self._skip_head = b""
        self._skip_size = -1
        """Bytes of an over-long line seen so far; -1 when not inside one."""
        self._saved: tuple[int, int] | None = None
        self._eof = False

    def open(self) -> None:
        if self.path == "-":
            self._fd = sys.stdin.fileno()
            return
        try:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            raise SourceUnavailableError(f"cannot open {self.path!r}: {exc.strerror}") from None
        st = os.fstat(self._fd)
        if not stat.S_ISREG(st.st_mode):
            return
        identity = (st.st_dev, st.st_ino)
        if self._identity is None:
            self._identity = identity
            if self.offset_file is not None:
                self._resume(st.st_size)
        elif identity == self._identity and st.st_size >= self._pos:
            os.lseek(self._fd, self._pos, os.SEEK_SET)  # reopened after an error: go on where it was
        else:
            logger.warning("jsonl: %s was replaced while being read: reading the new file from the start", self.path)
            self._identity, self._pos, self.lineno = identity, 0, 0
            self._buf.clear()
            self._skip_size, self._skip_head, self._saved = -1, b"", None

    def _resume(self, size: int) -> None:
        assert self._fd is not None and self.offset_file is not None and self._identity is not None
        try:
            saved = orjson.loads(self.offset_file.read_bytes())
            same = [saved["dev"], saved["ino"]] == list(self._identity) and saved["path"] == self.path
            offset, lineno = int(saved["offset"]), int(saved["line"])
            same = same and offset <= size and saved["tail"] == self._tail_crc(offset)
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
            logger.warning("jsonl: offset file %s unreadable (%s): reading from the start", self.offset_file, exc)
            return
        if not same:
            logger.warning("jsonl: %s was replaced or truncated since the last run: reading from the start", self.path)
            return
        os.lseek(self._fd, offset, os.SEEK_SET)
        self._pos = self.resumed_at = offset
        self.lineno = lineno
        self._saved = (offset, lineno)
        logger.info("jsonl: %s resumes at line %d (byte %d)", self.path, lineno + 1, offset)

    def _tail_crc(self, offset: int) -> int:
        """CRC of the bytes before ``offset``: tells an appended file from a replaced one (inodes are reused)."""
        n = min(offset, TAIL_CHECK)
        if not n:
            return 0
        if self._fd is not None:
            return zlib.crc32(os.pread(self._fd, n, offset - n))
        fd = os.open(self.path, os.O_RDONLY)  # closed already (commit at exit)
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != self._identity:
                raise OSError(f"{self.path} was replaced while being read")
            return zlib.crc32(os.pread(fd, n, offset - n))
        finally:
            os.close(fd)

    def commit(self) -> None:
        """Persist the position after the last whole line read: everything before it is delivered."""
        if self._identity is None or self.offset_file is None:
            return
        skipped = self._skip_size if self._skip_size >= 0 else 0
        position = (self._pos - len(self._buf) - skipped, self.lineno)
        if position == self._saved:
            return
        dev, ino = self._identity
        state = {"path": self.path, "dev": dev, "ino": ino, "offset": position[0], "line": position[1]}
        state["tail"] = self._tail_crc(position[0])
        body = orjson.dumps(state)
        tmp = self.offset_file.with_name(self.offset_file.name + ".tmp")
        tmp.write_bytes(body)
        os.replace(tmp, self.offset_file)  # atomic: a crash leaves the old or the new offset
        self._saved = position

    def close(self) -> None:
        if self._fd is not None and self.path != "-":
            os.close(self._fd)
        self._fd = None

    @property
    def exhausted(self) -> bool:
        return self._eof and not self.follow

    def read(self, timeout: float) -> Sequence[Frame | ParseError]:
        if self._fd is None:
            self.open()
        assert self._fd is not None
        ready, _, _ = select.select([self._fd], [], [], timeout)
        if not ready:
            return []
        try:
            chunk = os.read(self._fd, 1 << 16)
        except BlockingIOError:
            return []
        except OSError as exc:
            raise SourceUnavailableError(f"{self.path}: {exc.strerror}") from None
        if not chunk:
            return self._at_eof(timeout)
        self._pos += len(chunk)
        return self._lines(chunk)

    def _at_eof(self, timeout: float) -> Sequence[Frame | ParseError]:
        regular = self.path != "-" and stat.S_ISREG(os.fstat(self._fd or 0).st_mode)
        if self.follow and regular:
            out: list[Frame | ParseError] = []  # a followed file's last line may still be being written
        else:
            out = self._lines(b"\n") if self._buf or self._skip_size >= 0 else []
        if not self.follow:
            self._eof = True
        elif self.path != "-" and stat.S_ISFIFO(os.fstat(self._fd or 0).st_mode):
            self.close()  # the FIFO's writer went away: reopen for the next one
            self.open()
        else:
            time.sleep(timeout)
        return out

    def _lines(self, chunk: bytes) -> list[Frame | ParseError]:
        """Split ``chunk`` into lines; a line longer than MAX_LINE is skipped in place (bounded memory)."""
        out: list[Frame | ParseError] = []
        now, mono = self.clock.now(), self.clock.monotonic_ns()
        pos = 0
        while pos < len(chunk):
            nl = chunk.find(b"\n", pos)
            end = len(chunk) if nl < 0 else nl
            if self._skip_size >= 0:  # inside an over-long line: count it, keep only its start
                self._skip_size += end - pos
            else:
                self._buf += chunk[pos:end]
                if len(self._buf) > MAX_LINE:
                    self._skip_head, self._skip_size = bytes(self._buf[:MAX_RAW_LEN]), len(self._buf)
                    self._buf.clear()
            if nl < 0:
                break
            pos = nl + 1
            self.lineno += 1
            if self._skip_size >= 0:
                size, self._skip_size = self._skip_size, -1
                out.append(self._too_long(size))
                continue
            line = bytes(self._buf)
            self._buf.clear()
            if line.strip():
                try:
                    out.append(parse_line(line, self.lineno, now, mono))
                except ParseError as exc:
                    exc.file = self.path
                    out.append(exc)
        return out

    def _too_long(self, size: int) -> ParseError:
        raw, self._skip_head = self._skip_head, b""
        msg = f"line {self.lineno}: {size} bytes, longer than {MAX_LINE}"
        return ParseError(msg, "too_long", line=self.lineno, raw=raw, size=size, file=self.path)


def from_settings(s: Settings) -> JsonlSource:
    """The source for ``telemetry-produce jsonl``, from the ``TELEMETRY_JSONL__*`` settings."""
    return JsonlSource(s.jsonl.path, s.jsonl.follow, offset_file=s.jsonl.offset_file)


SPEC = SourceSpec("jsonl", "jsonl", from_settings, "JSON lines from stdin, a file or a FIFO")
