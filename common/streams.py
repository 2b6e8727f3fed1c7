"""All Redis names: priority stream keys, the dead-letter stream, the writer group, consumers;
and the two small readers of what Redis answers about them (entry IDs, reply text).

Every key shares one hash tag (``{namespace}``) so a single XREADGROUP can read all
priorities, on Redis Cluster too. Nothing else in the project builds a Redis name.
Pure: no Redis calls here.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass

from common.schema import Priority

WRITER_GROUP = "writer"
"""The one consumer group every writer replica joins."""

RUNS_GROUP = "runs"
"""The run detector's group (telemetry-runs); trimming waits for it when it exists (writer/trim.py)."""

KNOWN_GROUPS = (WRITER_GROUP, RUNS_GROUP)
"""The groups the project creates: every other group on a priority stream is foreign."""

DEFAULT_NAMESPACE = "telemetry"

_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def parse_entry_id(raw: bytes | str | None) -> tuple[int, int]:
    """A stream entry ID (``b"1700000000000-3"``, ``"5"``, None = ``0-0``) as (milliseconds, sequence)."""
    text = raw.decode() if isinstance(raw, bytes) else (raw or "0-0")
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def reply_text(value: object) -> str:
    """A value from a Redis reply (bytes or not) as text; undecodable bytes replaced."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def consumer_name() -> str:
    """A consumer name unique to this process: ``<hostname>-<pid>``."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class StreamNames:
    """The Redis keys of one deployment, derived from its namespace.

    >>> StreamNames("telemetry").stream(Priority.CRITICAL)
    '{telemetry}:critical'
    """

    namespace: str = DEFAULT_NAMESPACE

    def __post_init__(self) -> None:
        if not _NAMESPACE_RE.match(self.namespace):
            raise ValueError(f"invalid Redis namespace {self.namespace!r}: use 1-64 of A-Z a-z 0-9 _ . -")

    @property
    def tag(self) -> str:
        return "{" + self.namespace + "}"

    def stream(self, priority: Priority) -> str:
        return f"{self.tag}:{priority.value}"

    @property
    def streams(self) -> tuple[str, ...]:
        """Stream keys in strict priority order, critical first."""
        return tuple(self.stream(p) for p in Priority)

    @property
    def deadletter(self) -> str:
        return f"{self.tag}:deadletter"

    @property
    def deadletter_index(self) -> str:
        """Sorted set of the priority-stream entries already dead-lettered (``<priority>:<padded id>``).

        Keeps a poison entry from being dead-lettered twice when it is delivered again (a
        consumer group recreated at 0 after NOGROUP); trimmed with the streams.
        """
        return f"{self.tag}:deadletter:index"

    @property
    def group(self) -> str:
        return WRITER_GROUP

    def priority_of(self, key: str | bytes) -> Priority:
        """The priority a stream key stands for; ValueError for a key not ours."""
        text = key.decode() if isinstance(key, bytes) else key
        prefix = self.tag + ":"
        if text.startswith(prefix):
            try:
                return Priority(text[len(prefix) :])
            except ValueError:
                pass
        raise ValueError(f"{text!r} is not a priority stream of namespace {self.namespace!r}")
