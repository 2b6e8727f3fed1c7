"""The GPS source: bytes from any pyserial URL -> lines -> sentences -> one Frame per epoch.

``NmeaDecoder`` (pure) chains the framing, sentence decoding and epoch assembly;
``GpsNmeaSource`` (I/O) reads the serial port and turns a vanished port (unplugged USB, a
closed pty: SerialException, OSError, "device reports readiness to read but returned no
data") into SourceUnavailableError so the run loop reconnects with backoff. Frames of the
epoch in progress when the link drops are returned first (nothing read is lost); the
error is raised on the next ``read``.
"""

from __future__ import annotations

import contextlib
import datetime as dt

import serial

from common.clock import Clock, SystemClock
from common.errors import ParseError, SourceUnavailableError
from common.schema import Frame
from producers.device_name import device_from_url
from producers.gps_nmea.epochs import DEFAULT_MIN_DATE, EpochAssembler
from producers.gps_nmea.framing import MAX_LINE, LineSplitter
from producers.gps_nmea.sentences import Update, parse_sentence

READ_CHUNK = 4096
"""Most bytes taken from the port per read call."""

INCOMPLETE_KINDS = frozenset(
    ["checksum", "parse", "format", "field", "too_long", "no_dollar", "unknown_type", "unknown_talker"]
)
"""Rejections of what was (or looked like) a sentence of ours: its epoch is incomplete (epochs.py).
Not ``non_nmea`` (debug text some receivers interleave), ``proprietary`` or ``unsupported``."""


class NmeaDecoder:
    """Pure pipeline: ``feed(bytes)`` -> Frames and ParseErrors in arrival order.

    Nothing one sentence contains can raise out of ``feed`` or ``flush``: an unexpected exception
    is a ParseError of kind ``internal`` and the epoch in progress is dropped with it.
    """

    def __init__(
        self,
        device: str,
        strict_checksum: bool = False,
        min_date: dt.date = DEFAULT_MIN_DATE,
        max_line: int = MAX_LINE,
    ) -> None:
        self.strict_checksum = strict_checksum
        self.splitter = LineSplitter(max_line)
        self.epochs = EpochAssembler(device, min_date)
        self._checksummed: set[bytes] = set()

    def feed(self, data: bytes, received_at: dt.datetime, monotonic_ns: int) -> list[Frame | ParseError]:
        out: list[Frame | ParseError] = []
        for item in self.splitter.push(data):
            if isinstance(item, ParseError):
                out.append(self._rejected(item))
                continue
            try:
                update = self.decode_line(item)
            except ParseError as exc:
                out.append(self._rejected(exc))
                continue
            except Exception as exc:  # a decoder bug must not end the producer (issue 12)
                out.append(self._internal(exc, item))
                continue
            try:
                out.extend(self.epochs.add(update, received_at, monotonic_ns))
            except ParseError as exc:
                out.append(exc)
            except Exception as exc:
                out.append(self._internal(exc, item))
        return out

    def decode_line(self, line: bytes) -> Update:
        """One sentence candidate -> Update, with this receiver's checksum habit applied.

        A receiver that has sent a sentence type with a ``*hh`` checksum sends it with one: once
        seen, the same talker and type without a checksum is rejected (kind ``checksum``), as in
        strict mode. Line noise that cuts a sentence, or hits its ``*``, leaves it without one.
        """
        key = line[1:6]
        update = parse_sentence(line, self.strict_checksum or key in self._checksummed)
        if b"*" in line[-4:] and len(self._checksummed) < 256:
            self._checksummed.add(key)
        return update

    def _rejected(self, error: ParseError) -> ParseError:
        if error.kind in INCOMPLETE_KINDS:
            self.epochs.reject()
        return error

    def flush(self) -> list[Frame | ParseError]:
        """End the epoch in progress (idle, end of input, link lost)."""
        try:
            return list(self.epochs.flush())
        except ParseError as exc:
            return [exc]
        except Exception as exc:
            return [self._internal(exc, b"")]

    def _internal(self, exc: Exception, sentence: bytes) -> ParseError:
        self.epochs.reset()
        return ParseError(f"unexpected {type(exc).__name__} at {sentence[:90]!r}: {str(exc)[:200]}", "internal")


class GpsNmeaSource:
    """One NMEA receiver on a pyserial URL (``/dev/ttyUSB0``, ``socket://host:port``, ``rfc2217://``...)."""

    source = "gps_nmea"

    def __init__(
        self,
        url: str,
        baudrate: int = 4800,
        device: str | None = None,
        clock: Clock | None = None,
        strict_checksum: bool = False,
        min_date: dt.date = DEFAULT_MIN_DATE,
        epoch_idle_s: float = 0.3,
    ) -> None:
        self.url = url
        self.baudrate = baudrate
        self.device = device or device_from_url(url, "gps")
        self.clock = clock or SystemClock()
        self.epoch_idle_ns = int(epoch_idle_s * 1e9)
        self.decoder = NmeaDecoder(self.device, strict_checksum, min_date)
        self.bytes_read = 0
        self._port: serial.SerialBase | None = None
        self._lost: SourceUnavailableError | None = None
        self._last_data_ns = 0

    @property
    def rollovers(self) -> int:
        """Epochs whose date was corrected for a GPS week rollover."""
        return self.decoder.epochs.rollovers

    def counters(self) -> dict[tuple[str, str], int]:
        """(device, event) -> count for /metrics: ``week_rollovers``, ``bytes_read``."""
        return {(self.device, "week_rollovers"): self.rollovers, (self.device, "bytes_read"): self.bytes_read}

    @property
    def is_open(self) -> bool:
        """The port is open (bytes sent before it opens are lost: pyserial flushes input on open)."""
        return self._port is not None

    @property
    def exhausted(self) -> bool:
        return False

    def open(self) -> None:
        try:
            self._port = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=0)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise SourceUnavailableError(f"cannot open {self.url!r}: {exc}") from None
        self.decoder.splitter.reset()
        self._lost = None

    def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(serial.SerialException, OSError):  # the device is already gone
                port.close()

    def read(self, timeout: float) -> list[Frame | ParseError]:
        if self._lost is not None:
            lost, self._lost = self._lost, None
            raise lost
        if self._port is None:
            self.open()
        try:
            data = self._read_port(timeout)
        except (serial.SerialException, OSError) as exc:
            return self._link_lost(exc)
        mono = self.clock.monotonic_ns()
        out: list[Frame | ParseError] = []
        if data:
            self.bytes_read += len(data)
            self._last_data_ns = mono
            out = self.decoder.feed(data, self.clock.now(), mono)
        if mono - self._last_data_ns >= self.epoch_idle_ns:
            out.extend(self.decoder.flush())
        return out

    def _read_port(self, timeout: float) -> bytes:
        port = self._port
        assert port is not None
        port.timeout = timeout
        data: bytes = port.read(1)  # blocks up to ``timeout`` for the first byte
        waiting = port.in_waiting if data else 0
        if waiting:
            data += port.read(min(waiting, READ_CHUNK))
        return data

    def _link_lost(self, exc: Exception) -> list[Frame | ParseError]:
        """Close the port, hand back the epoch in progress, and raise on the next read."""
        self.close()
        self.decoder.splitter.reset()
        lost = SourceUnavailableError(f"{self.url!r}: {exc}")
        frames = self.decoder.flush()
        if not frames:
            raise lost from None
        self._lost = lost
        return frames
