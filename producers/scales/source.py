"""ScalesSource: many scales (hundreds) in one process, one thread reading them all.

Every scale has its own connection (a serial port or a TCP serial-server port, any pyserial
URL) and is its own device. Readable connections are found with one ``selectors`` poll over
their file descriptors (pyserial ``fileno()``: ttys, ptys, sockets); a URL without one is
polled. Connections are opened by a small thread pool, so an unreachable TCP server never
stalls reading the others, and each scale reconnects on its own backoff. A scale going
away or coming back is a frame with channel ``connected`` 0/1. Parsing lives in formats.py.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import serial

from common.backoff import Backoff
from common.clock import Clock, SystemClock
from common.errors import ParseError, SourceUnavailableError, unexpected
from common.schema import Channel, Frame
from producers.scales.config import ScaleConfig, ScalesConfig
from producers.scales.formats import (
    LineFormat,
    LineFramer,
    ScaleReading,
    ToledoFramer,
    parse_line,
    parse_toledo,
    to_frame,
)
from producers.scales.guards import DecimalsGuard, ToledoGuard

logger = logging.getLogger(__name__)

READ_CHUNK = 4096
OPEN_WAIT_S = 10.0
"""How long ``open()`` waits for the first scale to connect before returning anyway."""
POLL_INTERVAL_S = 0.05
"""Read interval of connections without a file descriptor."""


def connect(cfg: ScaleConfig) -> serial.SerialBase:
    """Open one scale's connection, non-blocking (timeout 0). Runs in the opener pool."""
    return serial.serial_for_url(
        cfg.url,
        baudrate=cfg.baudrate,
        bytesize=cfg.bytesize,
        parity=cfg.parity,
        stopbits=cfg.stopbits,
        timeout=0,
    )


@dataclass(eq=False)
class _Scale:
    """One scale's connection state."""

    cfg: ScaleConfig
    fmt: LineFormat | None
    backoff: Backoff
    framer: LineFramer | ToledoFramer | None = None
    guard: DecimalsGuard = field(default_factory=DecimalsGuard)
    toledo: ToledoGuard = field(default_factory=ToledoGuard)
    port: serial.SerialBase | None = None
    opening: Future[serial.SerialBase] | None = None
    retry_at: float = 0.0
    polled: bool = False
    last: ScaleReading | None = None
    last_sent_ns: int = 0
    events: Counter[str] = field(default_factory=Counter)
    """This scale's ``connects``, ``losses``, ``open_failures``, ``suppressed`` (records dropped by
    min_interval_s) and ``rejected_<kind>`` (bad records): the source's counters()."""

    def new_framer(self) -> LineFramer | ToledoFramer:
        self.guard, self.toledo = DecimalsGuard(), ToledoGuard()
        if self.fmt is None:
            return ToledoFramer(self.cfg.checksum)
        return LineFramer(self.fmt.width)


class ScalesSource:
    """Reads every scale of a ScalesConfig; frames per record, one device per scale."""

    source = "scales"

    def __init__(
        self,
        config: ScalesConfig,
        open_workers: int = 16,
        reconnect_max: float = 30.0,
        clock: Clock | None = None,
    ) -> None:
        self.clock = clock or SystemClock()
        self.open_workers = open_workers
        self.scales = [_Scale(c, c.line_format(), Backoff(base=0.5, cap=reconnect_max)) for c in config.scales]
        self._selector: selectors.BaseSelector | None = None
        self._pool: ThreadPoolExecutor | None = None

    @property
    def exhausted(self) -> bool:
        return False

    def counters(self) -> dict[tuple[str, str], int]:
        """(device, event) -> count, per scale (see ``_Scale.events``); exported to /metrics."""
        return {(s.cfg.device, event): n for s in self.scales for event, n in dict(s.events).items()}

    @property
    def stats(self) -> Counter[str]:
        """The events of all scales summed (a view of ``counters()``)."""
        total: Counter[str] = Counter()
        for (_, event), n in self.counters().items():
            total[event] += n
        return total

    def open(self) -> None:
        """Start connecting every scale; return once one is up (SourceUnavailableError if none)."""
        self._selector = selectors.DefaultSelector()
        self._pool = ThreadPoolExecutor(self.open_workers, thread_name_prefix="scale-open")
        for scale in self.scales:
            self._start(scale)
        pending = {s.opening for s in self.scales if s.opening is not None}
        deadline = time.monotonic() + OPEN_WAIT_S
        while pending and time.monotonic() < deadline:
            done, pending = wait(pending, timeout=deadline - time.monotonic(), return_when=FIRST_COMPLETED)
            if any(f.exception() is None for f in done):
                return
        if not pending:
            self.close()
            raise SourceUnavailableError(f"none of the {len(self.scales)} scales could be opened")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        for scale in self.scales:
            if scale.opening is not None:
                scale.opening.add_done_callback(_close_result)
                scale.opening = None
            self._drop(scale)
        if self._selector is not None:
            self._selector.close()
        self._selector = self._pool = None

    def read(self, timeout: float) -> Sequence[Frame | ParseError]:
        if self._selector is None:
            self.open()
        assert self._selector is not None
        out: list[Frame | ParseError] = []
        self._collect_opened(out)
        polled = [s for s in self.scales if s.polled and s.port is not None]
        wait_s = min(timeout, POLL_INTERVAL_S) if polled else timeout
        if self._selector.get_map():
            events = self._selector.select(wait_s)
        else:
            time.sleep(wait_s)
            events = []
        for key, _ in events:
            self._read_scale(key.data, out)
        for scale in polled:
            self._read_scale(scale, out)
        return out

    # --- connection management -------------------------------------------------------------

    def _start(self, scale: _Scale) -> None:
        assert self._pool is not None
        scale.opening = self._pool.submit(connect, scale.cfg)

    def _collect_opened(self, out: list[Frame | ParseError]) -> None:
        now = time.monotonic()
        for scale in self.scales:
            if scale.opening is None:
                if scale.port is None and now >= scale.retry_at:
                    self._start(scale)
                continue
            if not scale.opening.done():
                continue
            future, scale.opening = scale.opening, None
            try:
                port = future.result()
            except (serial.SerialException, OSError, ValueError) as exc:
                self._failed(scale, f"cannot open {scale.cfg.url!r}: {exc}")
                continue
            self._attach(scale, port, out)

    def _attach(self, scale: _Scale, port: serial.SerialBase, out: list[Frame | ParseError]) -> None:
        assert self._selector is not None
        scale.port, scale.framer, scale.last = port, scale.new_framer(), None
        scale.backoff.reset()
        try:
            self._selector.register(port.fileno(), selectors.EVENT_READ, scale)
        except (AttributeError, OSError, NotImplementedError, ValueError):
            scale.polled = True  # e.g. rfc2217:// or loop://: read on every cycle
        scale.events["connects"] += 1
        logger.info("scale %s connected (%s)", scale.cfg.device, scale.cfg.url)
        out.append(self._status(scale, 1.0))

    def _failed(self, scale: _Scale, reason: str) -> None:
        scale.events["open_failures"] += 1
        delay = scale.backoff.next_delay()
        scale.retry_at = time.monotonic() + delay
        # One warning per outage; 300 scales retrying must not flood the log.
        level = logging.WARNING if scale.backoff.attempts == 1 else logging.DEBUG
        logger.log(level, "scale %s: %s; retry in %.1fs", scale.cfg.device, reason, delay)

    def _lost(self, scale: _Scale, reason: str, out: list[Frame | ParseError]) -> None:
        scale.events["losses"] += 1
        self._drop(scale)
        self._failed(scale, f"connection lost: {reason}")
        out.append(self._status(scale, 0.0))

    def _drop(self, scale: _Scale) -> None:
        if scale.port is None:
            return
        if self._selector is not None and not scale.polled:
            with contextlib.suppress(KeyError, OSError, ValueError):
                self._selector.unregister(scale.port.fileno())
        close_port(scale.port)
        scale.port, scale.polled = None, False

    def _status(self, scale: _Scale, connected: float) -> Frame:
        now, mono = self.clock.now(), self.clock.monotonic_ns()
        return Frame("scales", scale.cfg.device, now, now, mono, (Channel("connected", connected),))

    # --- data ------------------------------------------------------------------------------

    def _read_scale(self, scale: _Scale, out: list[Frame | ParseError]) -> None:
        if scale.port is None or scale.framer is None:
            return
        try:
            data = scale.port.read(READ_CHUNK)
        except (serial.SerialException, OSError) as exc:
            self._lost(scale, str(exc), out)
            return
        if not data:
            return
        now, mono = self.clock.now(), self.clock.monotonic_ns()
        for item in scale.framer.feed(data):
            try:
                if isinstance(item, ParseError):
                    raise item
                if scale.fmt is None:
                    reading = parse_toledo(item, scale.cfg.checksum)
                    scale.toledo.check(item)
                else:
                    reading = scale.guard.check(parse_line(item, scale.fmt))
            except ParseError as exc:
                scale.events[f"rejected_{exc.kind}"] += 1
                out.append(ParseError(f"{scale.cfg.device}: {exc}", exc.kind))
                continue
            except Exception as exc:  # one frame must never end the producer (issue 12)
                scale.events["rejected_internal"] += 1
                out.append(unexpected(exc, f"{scale.cfg.device}: frame {str(item)[:40]!r}"))
                continue
            if self._suppress(scale, reading, mono):
                continue
            out.append(to_frame(reading, scale.cfg.device, now, mono))

    def _suppress(self, scale: _Scale, reading: ScaleReading, mono: int) -> bool:
        interval_ns = int(scale.cfg.min_interval_s * 1e9)
        if interval_ns and reading == scale.last and mono - scale.last_sent_ns < interval_ns:
            scale.events["suppressed"] += 1
            return True
        scale.last, scale.last_sent_ns = reading, mono
        return False


def close_port(port: serial.SerialBase) -> None:
    """Close a connection without pyserial's socket:// pause.

    pyserial's socket ``close()`` sleeps 0.3 s ("give the server some time"): 90 s to stop
    300 scales, and a stalled read loop whenever one drops. Close the socket directly instead.
    """
    sock = getattr(port, "_socket", None)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.close()
        port._socket = None
        port.is_open = False
        return
    with contextlib.suppress(serial.SerialException, OSError):
        port.close()


def _close_result(future: Future[serial.SerialBase]) -> None:
    """A connection finished opening after the source closed: close it, do not leak it."""
    if not future.cancelled() and future.exception() is None:
        close_port(future.result())
