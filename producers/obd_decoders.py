"""OBD-II answers we decode from their raw bytes ourselves: the VIN and trouble codes. Pure.

python-OBD's own decoders lose information here (issue 14, finding 6): its VIN decoder strips the
characters ``0``, ``1``, ``2``, ``x`` and ``\\`` from both ends (``1HGCM82633A004352`` became
``HGCM82633A00435``), a ``NO DATA`` answer to a trouble-code request decodes as "no codes", and
codes come out in lower-case hex (``U100f``). Input is each ECU message's data bytes as python-OBD
assembles them (service byte first); python-OBD itself is not imported here.
"""

from __future__ import annotations

from collections.abc import Sequence

from common.errors import ParseError

VIN_LENGTH = 17
VIN_CHARS = frozenset("ABCDEFGHJKLMNPRSTUVWXYZ0123456789")
"""ISO 3779: digits and capitals except I, O and Q."""

_TRANSLITERATION = {
    **{str(d): d for d in range(10)},
    **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
    **dict(zip("JKLMN", range(1, 6), strict=True)),
    "P": 7,
    "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10), strict=True)),
}
_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)

DTC_LETTERS = "PCBU"
"""SAE J2012: the two top bits of a trouble code's first byte: powertrain, chassis, body, network."""


def decode_vin(payloads: Sequence[bytes]) -> str:
    """Service 09 PID 02 answer (one ECU's messages) -> the 17-character VIN (SAE J1979).

    ISO 15765-4 (CAN): one message ``49 02 01`` + 17 ASCII bytes (+ ISO-TP padding). Older
    protocols: five messages ``49 02 <n>`` + 4 bytes, n = 1..5, the first led by three 00 bytes.
    Raises ParseError(kind=vin) unless the result is 17 characters of the VIN alphabet.
    """
    if not payloads or any(p[:2] != b"\x49\x02" or len(p) < 7 for p in payloads):
        raise ParseError(f"not a service 09 PID 02 answer: {[p[:8].hex() for p in payloads]}", "vin")
    if len(payloads) == 1:
        body = payloads[0][3 : 3 + VIN_LENGTH]
    else:
        parts = sorted(payloads, key=lambda p: p[2])
        if [p[2] for p in parts] != list(range(1, len(parts) + 1)):
            raise ParseError(f"VIN message numbers {[p[2] for p in parts]} are not 1..n", "vin")
        body = b"".join(p[3:7] for p in parts)
        body = body[len(body) - VIN_LENGTH :] if body[: len(body) - VIN_LENGTH].strip(b"\x00") == b"" else body
    text = body.decode("latin-1")
    if len(text) != VIN_LENGTH or not set(text) <= VIN_CHARS:
        raise ParseError(f"VIN {text!r} is not 17 characters of the VIN alphabet", "vin")
    return text


def vin_check_digit_ok(vin: str) -> bool:
    """The 9th character is the check digit of 49 CFR 565 (mandatory in North America only)."""
    total = sum(_TRANSLITERATION[c] * w for c, w in zip(vin, _WEIGHTS, strict=True))
    return vin[8] == ("X" if total % 11 == 10 else str(total % 11))


def decode_dtc(pair: bytes) -> str:
    """Two bytes -> a trouble code as SAE J2012 writes it (``D0 0F`` -> ``U100F``)."""
    return f"{DTC_LETTERS[pair[0] >> 6]}{(pair[0] >> 4) & 3}{pair[0] & 0xF:X}{pair[1]:02X}"


def decode_dtcs(payloads: Sequence[bytes], service: int, can: bool = True) -> list[str]:
    """Answers to service 03/07/0A (one message per ECU) -> the codes, in order, without padding.

    ISO 15765-4 (``can``) puts the number of codes after the service byte (``43 02 01 43 D0 0F``,
    maybe followed by ISO-TP padding); older protocols do not (``43 01 43 D0 0F 00 00``). A CAN answer
    whose count byte does not fit is read without one (ELM327-emulator 4.0 answers that way, and
    so may some ECUs) if its length allows. ``00 00`` pairs are padding. ParseError(kind=dtc) else.
    """
    codes: list[str] = []
    for p in payloads:
        if not p or p[0] != service:
            raise ParseError(f"not a service {service - 0x40:02X} answer: {p[:8].hex()}", "dtc")
        end = 2 + 2 * p[1] if len(p) >= 2 else 0
        if can and 2 <= end <= len(p) and not p[end:].strip(b"\x00"):
            pairs = p[2:end]
        elif (len(p) - 1) % 2 == 0:
            pairs = p[1:]
        else:
            raise ParseError(f"trouble-code answer of odd length: {p.hex()}", "dtc")
        codes += [decode_dtc(pairs[i : i + 2]) for i in range(0, len(pairs), 2) if pairs[i : i + 2] != b"\x00\x00"]
    return codes
