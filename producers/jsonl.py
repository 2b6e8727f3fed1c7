"""jsonl: frames as JSON lines from stdin, a file or a FIFO, so any script can feed the pipeline.

One line, one frame (like Telegraf's execd input)::

    {"device": "pump-1", "observed_at": "2026-11-23T10:00:00Z", "session": "s1",
     "priority": "normal",
     "channels": {"pressure": 1.25, "state": "on",
                  "temp": {"value": 20.5, "unit": "degC", "quality": "good"}}}

Only ``device`` and ``channels`` are required; ``observed_at`` defaults to the time the line
was read. A bad line becomes a ParseError naming its line number; reading goes on.
``parse_line`` is pure; ``JsonlSource`` does the reading.
"""

from __future__ import annotations

import math
import os
import select
import stat
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from common.clock import Clock, SystemClock
from common.errors import ParseError, SourceUnavailableError
from common.schema import MAX_NAME_LEN, Channel, Frame, Priority, Quality

MAX_LINE = 1 << 20
"""Longest accepted line (bytes); longer lines are rejected as ``too_long``."""

_KEYS = frozenset(["device", "observed_at", "session", "priority", "channels"])


def parse_line(line: bytes, lineno: int, received_at: datetime, monotonic_ns: int) -> Frame:
    """One JSON line -> Frame. Raises ParseError(kind=json|schema) naming the line."""
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
    observed_at = _time(obj.get("observed_at"), lineno) or received_at
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
    return ts.astimezone(UTC)


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
            if not isinstance(unit, str) or len(unit) > 32:
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

    def __init__(self, path: str = "-", follow: bool = False, clock: Clock | None = None) -> None:
        self.path = path
        self.follow = follow
        self.clock = clock or SystemClock()
        self.lineno = 0
        self._fd: int | None = None
        self._buf = b""
        self._skipping = False
        self._eof = False

    def open(self) -> None:
        if self.path == "-":
            self._fd = sys.stdin.fileno()
            return
        try:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            raise SourceUnavailableError(f"cannot open {self.path!r}: {exc.strerror}") from None

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
        chunk = os.read(self._fd, 1 << 16)
        if not chunk:
            return self._at_eof(timeout)
        return self._lines(chunk)

    def _at_eof(self, timeout: float) -> Sequence[Frame | ParseError]:
        out = self._lines(b"\n") if self._buf else []
        if not self.follow:
            self._eof = True
        elif self.path != "-" and stat.S_ISFIFO(os.fstat(self._fd or 0).st_mode):
            self.close()  # the FIFO's writer went away: reopen for the next one
            self.open()
        else:
            time.sleep(timeout)
        return out

    def _lines(self, chunk: bytes) -> list[Frame | ParseError]:
        out: list[Frame | ParseError] = []
        data = self._buf + chunk
        *lines, self._buf = data.split(b"\n")
        now, mono = self.clock.now(), self.clock.monotonic_ns()
        for line in lines:
            self.lineno += 1
            if self._skipping:
                self._skipping = False
                continue
            if not line.strip():
                continue
            try:
                out.append(parse_line(line, self.lineno, now, mono))
            except ParseError as exc:
                out.append(exc)
        if len(self._buf) > MAX_LINE:
            self.lineno += 1
            out.append(ParseError(f"line {self.lineno}: longer than {MAX_LINE} bytes", "too_long"))
            self._buf = b""
            self._skipping = True
        return out
