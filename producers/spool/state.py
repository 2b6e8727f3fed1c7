"""The spool's small state file: producer identity, sequence reservation, replay cursors.

Two fixed-size slots written alternately, each ``magic | counter | length | crc32 | json``;
loading takes the valid slot with the highest counter, so a write torn by a crash or power
loss leaves the previous state readable. Writes are ``pwrite`` (they survive kill -9 via
the page cache); ``sync()`` makes them survive power loss. No spool segments here.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import orjson

SLOT = 2048
_MAGIC = b"TSTATE1\n"
_HEAD = struct.Struct("<8sQII")


def boot_id() -> str:
    """This boot's id (Linux); a different id means the machine restarted (page cache lost)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


@dataclass
class SpoolState:
    """What a restarted producer needs to continue without reusing a key."""

    producer: str = ""
    """Producer id (``name/run``) the spooled frames and sequence belong to."""
    reserved: int = 1
    """Next sequence number; every number below it was assigned to a frame already read."""
    durable: int = 1
    """Every frame with a lower sequence number is in Redis, in the spool, or counted as dropped."""
    boot: str = ""
    clean: bool = False
    """True after an orderly close (reserved == durable then)."""
    cursors: dict[str, list[int]] = field(default_factory=dict)
    """priority -> [segment index, byte offset, records consumed] of the replay position."""


class StateFile:
    """Load and store a SpoolState in ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self.counter = 0
        self.dirty = False
        try:
            size = os.fstat(self.fd).st_size
            if size < 2 * SLOT:  # allocate both slots now: a full disk must not stop a later store
                os.pwrite(self.fd, bytes(2 * SLOT - size), size)
        except OSError:
            os.close(self.fd)
            raise

    def load(self) -> SpoolState | None:
        best: tuple[int, SpoolState] | None = None
        for slot in (0, 1):
            raw = os.pread(self.fd, SLOT, slot * SLOT)
            state = _parse(raw)
            if state is not None and (best is None or state[0] > best[0]):
                best = state
        if best is None:
            return None
        self.counter = best[0]
        return best[1]

    def store(self, state: SpoolState) -> None:
        body = orjson.dumps(state.__dict__)
        if len(body) > SLOT - _HEAD.size:
            raise ValueError("spool state too large")
        self.counter += 1
        data = _HEAD.pack(_MAGIC, self.counter, len(body), zlib.crc32(body)) + body
        os.pwrite(self.fd, data, (self.counter % 2) * SLOT)
        self.dirty = True

    def sync(self) -> None:
        if self.dirty:
            os.fsync(self.fd)
            self.dirty = False

    def close(self) -> None:
        os.close(self.fd)


def _parse(raw: bytes) -> tuple[int, SpoolState] | None:
    if len(raw) < _HEAD.size:
        return None
    magic, counter, length, crc = _HEAD.unpack_from(raw)
    body = raw[_HEAD.size : _HEAD.size + length]
    if magic != _MAGIC or len(body) != length or zlib.crc32(body) != crc:
        return None
    try:
        data = orjson.loads(body)
        return counter, SpoolState(**data)
    except (orjson.JSONDecodeError, TypeError):
        return None
