"""The project's exception tree. Every error we raise on purpose is one of these.

    TelemetryError
    ├── ConfigError              a setting is wrong; the message names the env variable
    ├── ParseError               device bytes or a line could not be parsed (has a ``kind``)
    ├── DecodeError              a stream entry does not match the frame schema (poison)
    ├── SourceUnavailableError   the device or link is gone; the run loop reconnects
    └── WriteError
        ├── TransientWriteError  retry with backoff (connection loss, timeouts, OOM)
        └── PermanentWriteError  the data is bad; dead-letter it (SQLSTATE 22, 23)
            └── KeyReuseError    a committed (producer, seq) came again with other content

Parsers raise; only the run loops (``producers/base.py``, ``writer/loop.py``) catch.
"""

from __future__ import annotations


class TelemetryError(Exception):
    """Base class of every error raised on purpose by this project."""


class ConfigError(TelemetryError):
    """A setting is missing or invalid; raised at start-up."""


class ParseError(TelemetryError):
    """Input from a device could not be parsed.

    ``kind`` is a short, bounded label (``checksum``, ``syntax``, ``non_nmea`` ...) used
    for counting; the message says what was wrong with which input.
    """

    def __init__(self, message: str, kind: str = "syntax") -> None:
        super().__init__(message)
        self.kind = kind


class DecodeError(TelemetryError):
    """A stream entry cannot be turned into a Frame; it goes to the dead-letter stream."""


class SourceUnavailableError(TelemetryError):
    """The device, port or socket is unavailable; the run loop reconnects with backoff."""


class WriteError(TelemetryError):
    """Writing a batch to PostgreSQL failed."""


class TransientWriteError(WriteError):
    """Infrastructure trouble: retry the same batch later; never dead-letter."""


class PermanentWriteError(WriteError):
    """The data itself is rejected: isolate the bad frames and dead-letter them."""


class KeyReuseError(PermanentWriteError):
    """A frame's idempotency key (producer, seq) was committed before with other content.

    The frame is not stored (the first one keeps the key) and goes to the dead-letter stream.
    """

    def __init__(self, producer: str, seq: int) -> None:
        super().__init__(f"key reuse: ({producer!r}, {seq}) was committed before with different content; not stored")
