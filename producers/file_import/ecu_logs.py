"""ECU logs as import frames: MLVLG ``.mlg`` (producers/file_import/mlg.py) and ASCII ``.msl``
(producers/file_import/msl.py) -> Frames of source ``file_import`` on the bulk stream.

* One frame per record: every column but the time column (``Time`` unless the mapping's
  ``time_column`` says otherwise) is a channel named as in the file, with the file's unit
  (common spellings normalised: ``kpa`` -> ``kPa``, ``sec`` -> ``s``; an empty unit stays empty)
  and the file's scale applied (``.mlg``: (raw + transform) * scale).
* Time: observed = origin + the time column's seconds. For ``.mlg`` the origin is the mapping's
  ``start_time`` or else the file header's capture time stamp; for ``.msl`` (whose Time has an
  arbitrary origin) the mapping's ``start_time`` is the first row's time, and it is required.
* Markers become a frame with one text channel ``marker`` at the time of the record before them.
* Bad records (CRC, truncation, non-numbers, wrong field count) are ParseErrors with their bytes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common.errors import ConfigError, DecodeError, ParseError
from common.schema import MAX_NAME_LEN, MAX_UNIT_LEN, Channel, Frame, Priority, validate_frame
from producers.file_import.mapping import UNIT_ALIASES, ColumnMapping
from producers.file_import.mlg import Marker, parse_blocks, parse_header
from producers.file_import.msl import MslHeader, MslMarker, MslRow, parse_msl

ECU_SUFFIXES = {".mlg": "mlg", ".msl": "msl"}


def unit_of(text: str) -> str:
    return UNIT_ALIASES.get(text.strip().lower(), text.strip())[:MAX_UNIT_LEN]


class _Framer:
    def __init__(self, path: Path, mapping: ColumnMapping, names: tuple[str, ...], units: tuple[str, ...]) -> None:
        self.device = (mapping.device or path.stem)[:MAX_NAME_LEN]
        self.session = mapping.session
        time_column = mapping.time_column or "Time"
        if time_column not in names:
            raise ConfigError(f"{path.name}: no time column {time_column!r} in {list(names)[:20]}; set time_column")
        self.time_index = names.index(time_column)
        self.columns = [
            (i, n[:MAX_NAME_LEN], unit_of(u))
            for i, (n, u) in enumerate(zip(names, units, strict=True))
            if i != self.time_index
        ]
        self.last: datetime | None = None

    def frame(self, observed: datetime, values: tuple[float | None, ...]) -> Frame:
        channels = tuple(Channel(n, values[i], u) for i, n, u in self.columns if values[i] is not None)
        self.last = observed
        return self._bulk(observed, channels)

    def marker(self, text: str, fallback: datetime) -> Frame:
        return self._bulk(self.last or fallback, (Channel("marker", text or "marker"),))

    def _bulk(self, observed: datetime, channels: tuple[Channel, ...]) -> Frame:
        now, mono = datetime.now(UTC), time.monotonic_ns()
        frame = Frame("file_import", self.device, observed, now, mono, channels, self.session, priority=Priority.BULK)
        return self._checked(frame)

    @staticmethod
    def _checked(frame: Frame) -> Frame:
        try:
            validate_frame(frame)
        except DecodeError as exc:
            raise ParseError(str(exc), "schema") from None
        return frame


def mlg_items(path: Path, mapping: ColumnMapping, data: bytes) -> Iterator[Frame | ParseError]:
    """Frames and bad records of an ``.mlg`` file's bytes. ConfigError if the header is unusable."""
    try:
        header = parse_header(data)
    except ParseError as exc:
        raise ConfigError(f"{path.name}: {exc}") from None
    start = mapping.start_time or header.timestamp
    if start is None:
        raise ConfigError(f"{path.name}: the header has no capture time: set start_time in the mapping")
    start = (start if start.tzinfo else start.replace(tzinfo=UTC)).astimezone(UTC)  # frames are UTC
    fields = header.fields
    framer = _Framer(path, mapping, tuple(f.name for f in fields), tuple(f.units for f in fields))
    for block in parse_blocks(data, header):
        if isinstance(block, ParseError):
            yield block
        elif isinstance(block, Marker):
            yield framer.marker(block.message, start)
        else:
            values = tuple(f.value(raw) for f, raw in zip(fields, block.raw, strict=True))
            try:
                yield framer.frame(start + timedelta(seconds=values[framer.time_index] or 0.0), values)
            except (ParseError, OverflowError) as exc:
                yield ParseError(f"byte {block.offset}: {exc}", "time", raw=data[block.offset : block.offset + 4096])


def msl_items(path: Path, mapping: ColumnMapping, lines: Iterator[tuple[int, str]]) -> Iterator[Frame | ParseError]:
    """Frames and bad rows of an ``.msl`` file's lines. ConfigError if the header is unusable."""
    if mapping.start_time is None:
        raise ConfigError(f"{path.name}: MegaLogViewer Time has no origin: set start_time (the first row's time)")
    start = mapping.start_time if mapping.start_time.tzinfo else mapping.start_time.replace(tzinfo=UTC)
    start = start.astimezone(UTC)  # a start_time in another zone (-05:00) still gives UTC frames
    framer: _Framer | None = None
    first: float | None = None
    for item in parse_msl(lines):
        if isinstance(item, MslHeader):
            framer = _Framer(path, mapping, item.names, item.units)
        elif isinstance(item, ParseError):
            if item.kind == "header":
                raise ConfigError(f"{path.name}: {item}")
            yield item
        elif framer is None:
            continue
        elif isinstance(item, MslMarker):
            yield framer.marker(item.text, start)
        elif isinstance(item, MslRow):
            t = item.values[framer.time_index]
            if t is None:
                yield ParseError(f"line {item.line}: no time", "time", line=item.line, raw=b"")
                continue
            first = t if first is None else first
            try:
                yield framer.frame(start + timedelta(seconds=t - first), item.values)
            except ParseError as exc:
                exc.args, exc.line = (f"line {item.line}: {exc}",), item.line
                yield exc
