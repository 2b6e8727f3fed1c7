"""Where the can source's messages come from: a live python-can bus, or a log file replayed.
I/O only; each python-can Message becomes a ``RawMessage`` (producers/can/decode.py).

* ``BusFeed``: ``can.Bus(interface, channel, bitrate)``. An interface that fails or goes down
  (SocketCAN ENETDOWN, bus-off reported as an error) raises SourceUnavailableError: the run loop
  counts the outage and reopens it with backoff. Time stamps are the interface's (epoch seconds).
* ``LogFeed``: a log file read with python-can's readers (candump ``.log``, ``.asc``, ``.blf``,
  ``.trc``, ``.csv``, ``.mf4`` with asammdf). Replay as fast as possible (speed 0) or paced at
  ``speed`` times real time by the messages' own time stamps. ``log_time`` ``shift`` puts the first
  message at the replay's start (a boot-time or old log still lands in the writer's partitions);
  ``keep`` keeps the log's epoch time. Shifted times are whole microseconds after the start.
  A malformed line of a text log (candump, ASC) is one
  ParseError(kind=syntax) and reading goes on with the next line; a damaged binary log ends there.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common.clock import Clock
from common.errors import ParseError, SourceUnavailableError
from producers.can.decode import RawMessage

TEXT_READERS = (".log", ".asc")
"""Suffixes whose reader is re-created after a bad line (it reads an open text file line by line)."""


def _raw(msg: Any, observed_at: datetime, default_bus: str) -> RawMessage:
    bus = msg.channel if isinstance(msg.channel, str) and msg.channel else default_bus
    if isinstance(msg.channel, int):
        bus = f"can{msg.channel}"
    return RawMessage(
        float(msg.timestamp),
        observed_at,
        bus,
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
    ) -> None:
        self.path, self.speed, self.log_time, self.clock = path, speed, log_time, clock
        self.start = start
        self.default_bus = default_bus
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
            yield from can.LogReader(self.path)
        except Exception as exc:  # a damaged binary log: everything before it was delivered
            yield ParseError(f"{self.path.name}: log unreadable from here: {str(exc)[:160]}", "log")

    def recv(self, timeout: float) -> RawMessage | ParseError | None:
        if self._it is None:
            self.open()
        assert self._it is not None
        msg = self._pending
        self._pending = None
        if msg is None:
            msg = next(self._it, None)
            if msg is None:
                self.exhausted = True
                return None
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
