"""Checksums and rolling counters of CAN messages: verdicts on one message's bytes. Pure.

Only schemes that are documented and checked against real captures are here:

* ``toyota`` (opendbc ``toyota_checksum``; /work/shared/data/can/README.md): the checksum byte is the
  low 8 bits of the frame length + every byte of the arbitration id + every payload byte before the
  checksum byte. It validates on all checksummed frames of the RAV4 capture.

A rolling counter (a DBC signal named ``COUNTER``) is expected to step by one modulo its bit width;
a skip or a repeat is counted by the caller, and the message's values are still published (a
skip usually means a frame lost on the way, not a wrong value). Nothing here knows python-can.
"""

from __future__ import annotations

CHECKSUM_SCHEMES = ("toyota",)


def toyota_checksum(can_id: int, data: bytes, index: int) -> int:
    """Toyota checksum of ``data`` whose checksum byte is ``data[index]``."""
    total = len(data)
    addr = can_id
    while addr:
        total += addr & 0xFF
        addr >>= 8
    return (total + sum(data[:index])) & 0xFF


def checksum_ok(scheme: str, can_id: int, data: bytes, index: int) -> bool:
    """Whether ``data[index]`` is the ``scheme`` checksum of the message (False if too short)."""
    if index >= len(data):
        return False
    if scheme == "toyota":
        return toyota_checksum(can_id, data, index) == data[index]
    raise ValueError(f"unknown checksum scheme {scheme!r}")


def checksum_byte(start: int, length: int, big_endian: bool) -> int | None:
    """Byte index of an 8-bit, byte-aligned CHECKSUM signal (cantools start bit), else None."""
    if length != 8:
        return None
    if big_endian and start % 8 == 7:
        return start // 8
    if not big_endian and start % 8 == 0:
        return start // 8
    return None


class CounterCheck:
    """Expected next value of each (bus, message) rolling counter."""

    def __init__(self) -> None:
        self.last: dict[tuple[str, int], int] = {}

    def check(self, key: tuple[str, int], value: int, bits: int) -> bool:
        """True if ``value`` follows the previous one (or is the first); remembers it."""
        previous = self.last.get(key)
        self.last[key] = value
        return previous is None or value == (previous + 1) % (1 << bits)
