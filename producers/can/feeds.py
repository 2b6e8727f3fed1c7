"""Where the can source's messages come from: a live python-can bus, or a log file replayed.
I/O only; each python-can Message becomes a ``RawMessage`` (producers/can/decode.py).

* ``BusFeed``: ``can.Bus(interface, channel, bitrate)``. An interface that fails or goes down
  (SocketCAN ENETDOWN, bus-off reported as an error) raises SourceUnavailableError: the run loop
  counts the outage and reopens it with backoff. Time stamps are the interface's (epoch seconds).
* ``LogFeed``: a log file read with python-can's readers (candump ``.log``, ``.asc``, ``.blf``,
  ``.trc``, ``.csv``, ASAM MDF4 ``.mf4`` with asammdf, the ``mf4`` extra). Replay as fast
  as possible (speed 0) or paced at ``speed`` times real time by the messages' own time stamps.
  ``log_time`` ``shift`` puts the first message at the replay's start (a boot-time or old log
  still lands in the writer's partitions); ``keep`` keeps the log's epoch time. Shifted times are
  whole microseconds after the start. A malformed line of a text log (candump, ASC) is one
  ParseError(kind=syntax) and reading goes on with the next line; a damaged binary log (an MF4
  asammdf refuses) ends there with one ParseError(kind=log). ``channels`` keeps only the messages
  of those buses (a candump interface such as ``can1``; an MF4 bus channel n is ``can{n}``); the
  others are counted in ``counts["other_bus"]``, not decoded. The first kept message sets the
  shifted time base. A ``.mf4`` log without asammdf installed is a ConfigError at construction.
"""

from __future__ import annotations

import importlib.util
import time
from collections import Counter
from collections.abc import Collection, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common.clock import Clock
from common.errors import ConfigError, ParseError, SourceUnavailableError
from producers.can.decode import RawMessage

TEXT_READERS = (".log", ".asc")
"""Suffixes whose reader is re-created after a bad line (it reads an open text file line by line)."""
MF4_SUFFIX = ".mf4"
"""ASAM MDF4 (CANedge, Vector): python-can's MF4Reader, which needs asammdf."""


def _bus_name(msg: Any, default_bus: str) -> str:
    """The bus a logged message was on: candump's interface, ``can{n}`` for a numbered channel."""
    if isinstance(msg.channel, int) and not isinstance(msg.channel, bool):
        return f"can{msg.channel}"
    return msg.channel if isinstance(msg.channel, str) and msg.channel else default_bus


def _raw(msg: Any, observed_at: datetime, default_bus: str) -> RawMessage:
    return RawMessage(
        float(msg.timestamp),
        observed_at,
        _bus_name(msg, default_bus),
        int(msg.arbitration_id),
        bool(msg.is_extended_id),
        bytes(msg.data or b""),
        bool(msg.is_error_frame),
        bool(msg.is_remote_frame),
    )


def _epoch(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


class BusFeed:
    """A live bus through python-can."""

    def __init__(self, interface: str, channel: str, bitrate: int | None) -> None:
        self.interface, self.channel, self.bitrate = interface, channel, bitrate
        self.bus: Any = None
        self.exhausted = False

    def open(self) -> None:
        import can

        kwargs: dict[str, Any] = {"interface": self.interface, "channel": self.channel}
        if self.bitrate is not None:
            kwargs["bitrate"] = self.bitrate
        try:
            self.bus = can.Bus(**kwargs)
        except (can.CanError, OSError, ValueError, ImportError) as exc:
            raise SourceUnavailableError(f"{self.interface}:{self.channel}: {str(exc)[:200]}") from None

    def recv(self, timeout: float) -> RawMessage | ParseError | None:
        import can

        if self.bus is None:
            self.open()
        try:
            msg = self.bus.recv(timeout)
        except (can.CanError, OSError) as exc:
            raise SourceUnavailableError(f"{self.interface}:{self.channel}: {str(exc)[:200]}") from None
        if msg is None:
            return None
        return _raw(msg, _epoch(msg.timestamp) if msg.timestamp > 0 else datetime.now(UTC), self.channel)

    def close(self) -> None:
        if self.bus is not None:
            bus, self.bus = self.bus, None
            bus.shutdown()


class LogFeed:
    """A log file replayed at ``speed`` (0 = as fast as possible)."""

    def __init__(
        self,
        path: Path,
        speed: float,
        log_time: str,
        clock: Clock,
        default_bus: str = "can0",
        start: datetime | None = None,
        channels: Collection[str] = (),
        counts: Counter[str] | None = None,
    ) -> None:
        if path.suffix.lower() == MF4_SUFFIX and importlib.util.find_spec("asammdf") is None:
            raise ConfigError(f"{path.name}: reading an MF4 log needs asammdf (pip install 'edge-telemetry[mf4]')")
        self.path, self.speed, self.log_time, self.clock = path, speed, log_time, clock
        self.start = start
        self.default_bus = default_bus
        self.channels = frozenset(channels)
        self.counts = counts if counts is not None else Counter()
        self.exhausted = False
        self._it: Iterator[Any | ParseError] | None = None
        self._pending: Any = None
        self._t0: float | None = None
        self._base: datetime | None = None
        self._start = 0.0

    def open(self) -> None:
        if not self.path.is_file():
            raise SourceUnavailableError(f"{self.path}: no such log file")
        if self._it is None:
            self._it = self._messages()

    def _messages(self) -> Iterator[Any | ParseError]:
        import can

        suffix = self.path.suffix.lower()
        if suffix in TEXT_READERS:
            # the text readers take an open file too (typed as a path only): latin-1 keeps a bad byte readable
            reader_class: Any = can.io.player.MESSAGE_READERS[suffix]
            with self.path.open(encoding="latin-1", newline=None) as fh:
                while True:
                    try:
                        yield from reader_class(fh)
                        return
                    except (ValueError, IndexError, KeyError) as exc:  # python-can's parse errors
                        yield ParseError(f"{self.path.name}: unreadable line: {str(exc)[:120]}", "syntax")
        try:
            if suffix == MF4_SUFFIX:  # our own handle: python-can leaks its own when asammdf refuses the file
                with self.path.open("rb") as binary, can.io.MF4Reader(binary) as mf4:
                    yield from mf4
            else:
                with can.LogReader(self.path) as reader:  # closes the file at the end
                    yield from reader
        except Exception as exc:  # a damaged binary log: everything before it was delivered
            yield ParseError(f"{self.path.name}: log unreadable from here: {str(exc)[:160]}", "log")

    def recv(self, timeout: float) -> RawMessage | ParseError | None:
        if self._it is None:
            self.open()
        assert self._it is not None
        msg = self._pending
        self._pending = None
        while msg is None:
            msg = next(self._it, None)
            if msg is None:
                self.exhausted = True
                return None
            if (
                self.channels
                and not isinstance(msg, ParseError)
                and _bus_name(msg, self.default_bus) not in self.channels
            ):
                self.counts["other_bus"] += 1
                msg = None
        if isinstance(msg, ParseError):
            return msg
        t = float(msg.timestamp)
        if self._t0 is None:
            self._t0, self._base, self._start = t, (self.start or self.clock.now()).astimezone(UTC), time.monotonic()
        if self.speed > 0:
            wait = self._start + (t - self._t0) / self.speed - time.monotonic()
            if wait > timeout:
                time.sleep(max(timeout, 0.0))
                self._pending = msg
                return None
            if wait > 0:
                time.sleep(wait)
        if self.log_time == "keep":
            observed = _epoch(t)
        else:
            assert self._base is not None
            observed = self._base + timedelta(microseconds=round((t - self._t0) * 1e6))
        return _raw(msg, observed, self.default_bus)

    def close(self) -> None:
        """Nothing to release between reads; the file closes when the replay ends."""
