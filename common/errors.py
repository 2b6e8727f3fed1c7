"""The project's exception tree. Every error we raise on purpose is one of these.

    TelemetryError
    ├── ConfigError              a setting is wrong; the message names the env variable
    ├── ParseError               device bytes or a line could not be parsed (has a ``kind``)
    ├── DecodeError              a stream entry does not match the frame schema (poison)
    │   └── RejectedInputError   a producer's rejection entry: bad input it dead-letters via the writer
    ├── SourceUnavailableError   the device or link is gone; the run loop reconnects
    ├── SpoolUnavailableError    the spool's filesystem refuses writes (read-only, I/O error): run without it
    └── KeyReuseError            a committed (producer, seq) came again with other content: dead-lettered

Database errors are psycopg's own: ``writer/retry.py`` sorts them by SQLSTATE into retried
(everything outside classes 22 and 23) and dead-lettered (bad data). Parsers raise; only the
run loops (``producers/base.py``, ``writer/loop.py``) catch.
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

    ``line`` (1-based) and ``raw`` (the rejected input, possibly truncated) are set for input
    that is data (a jsonl line, an import row): the run loop dead-letters those. Line noise on a
    serial link leaves them unset and is only counted.
    """

    def __init__(
        self,
        message: str,
        kind: str = "syntax",
        *,
        line: int | None = None,
        raw: bytes | None = None,
        size: int = 0,
        file: str = "",
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.line = line
        self.file = file
        self.raw = raw
        self.size = size or (len(raw) if raw is not None else 0)
        """Length of the whole rejected input in bytes (``raw`` may hold only its start)."""


def unexpected(exc: Exception, what: str) -> ParseError:
    """A ParseError of kind ``internal`` for an exception no parser foresaw (a bug, an odd value):
    it costs the one input it came from, never the producer."""
    return ParseError(f"{what}: unexpected {type(exc).__name__}: {str(exc)[:200]}", "internal")


class DecodeError(TelemetryError):
    """A stream entry cannot be turned into a Frame; it goes to the dead-letter stream."""


class RejectedInputError(DecodeError):
    """A rejection entry (common.schema.encode_rejection): the writer dead-letters it as is."""


class SourceUnavailableError(TelemetryError):
    """The device, port or socket is unavailable; the run loop reconnects with backoff."""


class SpoolUnavailableError(TelemetryError):
    """The spool cannot be used (read-only filesystem, I/O error); the producer runs without it.

    A full filesystem is not this error: the spool treats it as full (drops by priority).
    """


class KeyReuseError(TelemetryError):
    """A frame's idempotency key (producer, seq) was committed before with other content.

    The frame is not stored (the first one keeps the key) and goes to the dead-letter stream.
    """

    def __init__(self, producer: str, seq: int) -> None:
        super().__init__(f"key reuse: ({producer!r}, {seq}) was committed before with different content; not stored")
