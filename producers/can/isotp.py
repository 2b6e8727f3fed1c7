"""ISO-TP (ISO 15765-2) reassembly of OBD-II answers, and the answers DBCs cannot decode. Pure.

Only what an OBD-II tester sees on 0x7E8-0x7EF (ISO 15765-4, 11-bit physical addressing) is
handled: single frames, first frame + consecutive frames (sequence numbers checked, 4 KiB at most),
flow control ignored. An answer that completes becomes channels: service 09 PID 02 -> ``vin``
(text), service 03 -> ``dtc`` (codes) and ``dtc_count``, the names the ``obd`` source uses.
Service 01 single frames are left to the DBC (CSS Electronics' OBD2 DBC multiplexes them).
"""

from __future__ import annotations

from common.errors import ParseError
from common.schema import Channel, Quality
from producers.obd_decoders import decode_dtcs, decode_vin, vin_check_digit_ok

OBD_ANSWER_IDS = range(0x7E8, 0x7F0)
"""11-bit ids of ECU answers (ISO 15765-4 physical response ids)."""

MAX_LENGTH = 4095
"""The largest ISO-TP message (12-bit length of classic CAN)."""


def pci_type(data: bytes) -> int:
    """Protocol control information type: 0 single, 1 first, 2 consecutive, 3 flow control."""
    return data[0] >> 4 if data else -1


class IsoTpAssembler:
    """One reassembly in progress per (bus, id)."""

    def __init__(self) -> None:
        self.partial: dict[tuple[str, int], tuple[int, int, bytearray]] = {}
        """key -> (declared length, next sequence number, bytes so far)."""

    def feed(self, key: tuple[str, int], data: bytes) -> bytes | None:
        """One CAN payload -> the complete message, or None while incomplete.

        Raises ParseError(kind=isotp) for a consecutive frame without a first frame, a wrong sequence
        number, or a bad length; the reassembly in progress is then dropped.
        """
        kind = pci_type(data)
        if kind == 0:
            size = data[0] & 0x0F
            if not 0 < size <= len(data) - 1:
                raise ParseError(f"single frame of length {size} in {len(data)} bytes", "isotp")
            return bytes(data[1 : 1 + size])
        if kind == 1:
            if len(data) < 2:
                raise ParseError("first frame shorter than 2 bytes", "isotp")
            size = ((data[0] & 0x0F) << 8) | data[1]
            if size < 8 or size > MAX_LENGTH:
                raise ParseError(f"first frame announces {size} bytes", "isotp")
            self.partial[key] = (size, 1, bytearray(data[2:]))
            return None
        if kind == 2:
            state = self.partial.pop(key, None)
            if state is None:
                raise ParseError("consecutive frame without a first frame", "isotp")
            size, expected, buf = state
            if data[0] & 0x0F != expected:
                raise ParseError(f"consecutive frame {data[0] & 0x0F}, expected {expected}", "isotp")
            buf += data[1:]
            if len(buf) >= size:
                return bytes(buf[:size])
            self.partial[key] = (size, (expected + 1) % 16, buf)
            return None
        return None  # flow control (the tester's) or nothing: not part of an answer


def obd_channels(payload: bytes) -> tuple[Channel, ...] | None:
    """A reassembled OBD-II answer -> channels, or None if it is not one decoded here.

    Raises ParseError (kind vin or dtc) for an answer of a known service that does not decode.
    """
    if payload[:2] == b"\x49\x02":
        vin = decode_vin([payload])
        checked = vin[0] not in "12345" or vin_check_digit_ok(vin)  # mandatory in North America only
        return (Channel("vin", vin, "", Quality.GOOD if checked else Quality.WARN),)
    if payload[:1] == b"\x43":
        codes = decode_dtcs([payload], 0x43, can=True)
        return (Channel("dtc", ",".join(codes)), Channel("dtc_count", float(len(codes)), "count"))
    return None


def is_obd_special(data: bytes) -> bool:
    """Whether an answer frame belongs to ISO-TP reassembly here rather than to the DBC."""
    kind = pci_type(data)
    return kind in (1, 2) or (kind == 0 and len(data) > 1 and data[1] in (0x43, 0x49))
