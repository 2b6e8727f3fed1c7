"""Which DBC message decodes a CAN frame on a bus: 11-bit and 29-bit ids, J1939 by PGN. Pure
over loaded cantools databases (loading the files is ``load_bus_dbcs``; no bus I/O here).

J1939 (SAE J1939-21): a 29-bit id is priority (3 bits), extended data page, data page, PDU
format (PF), PDU specific (PS) and source address. The parameter group number is EDP/DP/PF/PS,
with PS dropped when PF < 240 (PDU1: PS is a destination address). A DBC message whose protocol
is J1939 (cantools ``Message.protocol == "j1939"``, from the DBC's ProtocolType/VFrameFormat) is
matched by PGN only, whatever priority and source address the frame carries; every other message
by its exact id and id kind (standard or extended).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import ConfigError
from producers.can.integrity import checksum_byte

INTEGRITY_SIGNALS = frozenset({"CHECKSUM", "COUNTER"})


def j1939_pgn(can_id: int) -> int:
    """Parameter group number of a 29-bit J1939 id."""
    pgn = (can_id >> 8) & 0x3FFFF
    if (pgn >> 8) & 0xFF < 240:
        pgn &= 0x3FF00
    return pgn


@dataclass(frozen=True)
class MessageSpec:
    """One DBC message with what the decoder needs besides cantools' own decode."""

    message: Any
    """cantools.database.can.Message."""
    checksum_index: int | None
    """Byte of a CHECKSUM signal this bus verifies (None: nothing to verify)."""
    checksum_scheme: str | None
    counter_bits: int
    """Width of a COUNTER signal (0: none)."""
    multiplexers: frozenset[str]
    """Multiplexer signals (selectors, not published)."""

    @property
    def name(self) -> str:
        return str(self.message.name)


def _spec(message: Any, scheme: str | None) -> MessageSpec:
    index = None
    counter = 0
    for s in message.signals:
        if s.name == "CHECKSUM" and scheme is not None:
            index = checksum_byte(s.start, s.length, s.byte_order == "big_endian")
            if index is None:
                raise ConfigError(f"DBC message {message.name}: CHECKSUM is not one aligned byte; cannot verify")
        elif s.name == "COUNTER":
            counter = s.length
    muxes = frozenset(s.name for s in message.signals if s.is_multiplexer)
    return MessageSpec(message, index, scheme if index is not None else None, counter, muxes)


class BusDbc:
    """The messages one bus's DBCs define, indexed for lookup."""

    def __init__(self, databases: Iterable[Any], checksum: str | None = None) -> None:
        self.by_id: dict[tuple[int, bool], MessageSpec] = {}
        self.by_pgn: dict[int, MessageSpec] = {}
        for db in databases:
            for message in db.messages:
                spec = _spec(message, checksum)
                if message.protocol == "j1939":
                    self.by_pgn.setdefault(j1939_pgn(message.frame_id), spec)
                else:
                    self.by_id.setdefault((message.frame_id, bool(message.is_extended_frame)), spec)

    def lookup(self, can_id: int, extended: bool) -> MessageSpec | None:
        spec = self.by_id.get((can_id, extended))
        if spec is None and extended and self.by_pgn:
            spec = self.by_pgn.get(j1939_pgn(can_id))
        return spec


def load_bus_dbcs(files: Mapping[str, Sequence[Path]], checksum: Mapping[str, str], strict: bool) -> dict[str, BusDbc]:
    """``{bus or "*": [dbc paths]}`` -> a BusDbc per bus; the ``*`` files apply to every bus too.

    Raises ConfigError naming TELEMETRY_CAN__DBC for a file cantools cannot load.
    """
    import cantools

    loaded: dict[Path, Any] = {}
    for paths in files.values():
        for path in paths:
            if path in loaded:
                continue
            try:
                loaded[path] = cantools.database.load_file(str(path), strict=strict)
            except (OSError, cantools.database.errors.UnsupportedDatabaseFormatError, ValueError) as exc:
                raise ConfigError(f"TELEMETRY_CAN__DBC: cannot load {str(path)!r}: {str(exc)[:300]}") from None
    common = [loaded[p] for p in files.get("*", [])]
    buses = {
        bus: BusDbc([loaded[p] for p in paths] + common, checksum.get(bus, checksum.get("*")))
        for bus, paths in files.items()
        if bus != "*"
    }
    buses["*"] = BusDbc(common, checksum.get("*"))
    return buses
