"""afr_serial: Innovate MTS ("Serial Protocol 2") wideband AFR chains: LC-1, LC-2, DLG-1, LM-2.

``MtsSplitter`` is a pure push parser (feed bytes, get packets) that syncs on the header word
and resyncs after line noise; ``parse_packet`` decodes a data packet into channels and
``to_frame`` names them. ``AfrSerialSource`` reads any pyserial URL. Response packets (D=0)
and LM-1 legacy blocks are not decoded (see shared/protocols.md §3).

Channels of one packet, for a lambda channel named N (default ``afr_1`` ... in packet order,
the device nearest the host last) and an aux channel named A (default ``aux_1`` ...)::

    N_status  text   lambda | o2 | free_air_cal | cal_needed | warmup | heater_cal | error | reserved
    N         afr    AFR = lambda * stoich (F=0); null with quality no_data otherwise, error on F=6
    N_lambda  lambda (F=0 only)
    N_o2      %      O2 level (F=1)          N_warmup  %  warm-up progress (F=4)
    N_heater  -      heater calibration countdown (F=5)
    N_error   -      error code, quality error (F=6; LC-1 manual App. C)
    A         unit   raw 0..1023 scaled linearly onto the configured min..max
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

import serial

from common.clock import Clock, SystemClock
from common.errors import ParseError, SourceUnavailableError, unexpected
from common.schema import Channel, Frame, Quality
from common.settings import AfrSerialSettings, MtsAuxSettings, Settings
from producers.device_name import device_from_url
from producers.mts_consistency import MtsConsistency
from producers.mts_words import FUNCTIONS, AuxWord, LambdaWord, check_lambda
from producers.source_spec import SourceSpec

logger = logging.getLogger(__name__)

MAX_WORDS = 64
"""Longest accepted payload: 32 channels of at most 2 words (SDK: "at most 32 channels")."""

ERROR_CODES = {
    1: "heater short",
    2: "heater open",
    3: "pump cell short",
    4: "pump cell open",
    5: "reference cell short",
    6: "reference cell open",
    7: "system error",
    8: "sensor timing",
}
"""LC-1 manual Appendix C; codes above 8 exist but were not checked, so they are reported by number."""


def is_header(hi: int, lo: int) -> bool:
    """True if the byte pair is an MTS header word (the only word with bit 7 set in both bytes)."""
    return hi & 0x80 != 0 and lo & 0x80 != 0 and ((hi << 8) | lo) & 0xA280 == 0xA280


def packet_words(hi: int, lo: int) -> int:
    """Number of payload words announced by a header word."""
    w = (hi << 8) | lo
    return ((w >> 1) & 0x80) | (w & 0x7F)


class MtsSplitter:
    """Push parser: ``feed(bytes)`` returns whole packets (header included) and ParseErrors.

    Error kinds: ``garbage`` (bytes before a header), ``truncated`` (a header arrived inside a
    packet), ``length`` (no header where the announced length ends, or an impossible length).
    Payload bytes always have bit 7 clear, so a high byte inside a packet is a resync point.

    MTS has no checksum, so a packet is released only once the next packet's header has arrived
    where its announced length ends (the devices stream without pause, about 12 packets/s): the
    newest packet waits for the next one. ``flush()`` releases a held packet unverified, for when
    the line has gone quiet. One error per resynchronisation, whatever the read sizes.
    """

    def __init__(self, max_buffer: int = 4096) -> None:
        self._buf = bytearray()
        self._max_buffer = max_buffer
        self._syncing = False

    def feed(self, data: bytes) -> list[bytes | ParseError]:
        self._buf += data
        out: list[bytes | ParseError] = []
        while True:
            item = self._next()
            if item is None:
                break
            if isinstance(item, ParseError):
                if self._syncing:
                    continue  # the same resynchronisation: counted once
                self._syncing = True
            else:
                self._syncing = False
            out.append(item)
        if len(self._buf) > self._max_buffer:  # unreachable with MAX_WORDS, kept as a hard bound
            out.append(ParseError(f"{len(self._buf)} bytes without a packet", "garbage"))
            self._buf.clear()
        return out

    def flush(self) -> list[bytes]:
        """The held packet, if the buffer holds exactly one whole packet (not verified by a next header)."""
        buf = self._buf
        if len(buf) >= 2 and is_header(buf[0], buf[1]) and len(buf) == 2 + 2 * packet_words(buf[0], buf[1]):
            packet = bytes(buf)
            buf.clear()
            return [packet]
        return []

    def _next(self) -> bytes | ParseError | None:
        buf = self._buf
        start = self._find_header()
        if start > 0:
            del buf[:start]
            return ParseError(f"{start} bytes of line noise before a header", "garbage")
        if len(buf) < 2:
            return None
        self._syncing = False  # a header: the resynchronisation (if any) ended; what follows is new
        words = packet_words(buf[0], buf[1])
        if words > MAX_WORDS:
            del buf[:1]
            return ParseError(f"header announces {words} words (max {MAX_WORDS})", "length")
        end = 2 + 2 * words
        for j in range(2, min(end, len(buf))):
            if buf[j] & 0x80:
                del buf[:j]
                return ParseError(f"packet cut after {j} of {end} bytes", "truncated")
        if len(buf) < end + 2:
            return None  # wait for the next header (protocols.md §3)
        if not is_header(buf[end], buf[end + 1]):
            del buf[:2]
            return ParseError(f"no header where the {end}-byte packet ends", "length")
        packet = bytes(buf[:end])
        del buf[:end]
        return packet

    def _find_header(self) -> int:
        """Index of the first header in the buffer, or the length to drop if there is none."""
        buf = self._buf
        for i in range(len(buf) - 1):
            if is_header(buf[i], buf[i + 1]):
                return i
        # Keep a last byte with bit 7 set: it may be the first half of a header.
        return len(buf) - 1 if buf and buf[-1] & 0x80 else len(buf)


def _word(packet: bytes, i: int) -> int:
    return (packet[i] << 8) | packet[i + 1]


def _value13(w: int) -> int:
    return ((w >> 8) & 0x3F) << 7 | (w & 0x7F)


def parse_packet(packet: bytes) -> list[LambdaWord | AuxWord] | None:
    """A whole packet -> its channels in packet order; None for a response packet (D=0).

    Raises ParseError(kind=channel) for a word that is neither an aux nor a lambda word,
    ``truncated`` for a lambda word missing its second word, ``length`` for a bad header.
    """
    if len(packet) < 2 or not is_header(packet[0], packet[1]):
        raise ParseError("packet does not start with a header", "length")
    if len(packet) != 2 + 2 * packet_words(packet[0], packet[1]):
        raise ParseError(f"packet of {len(packet)} bytes does not match its header", "length")
    if not _word(packet, 0) & 0x1000:
        return None
    out: list[LambdaWord | AuxWord] = []
    i = 2
    while i < len(packet):
        w = _word(packet, i)
        if w & 0x8080:
            raise ParseError(f"word {w:04X} at byte {i} has bit 7 set", "channel")
        if not w & 0x4000:
            out.append(AuxWord(_value13(w)))
            i += 2
            continue
        if w & 0x2000 or not w & 0x0200:
            raise ParseError(f"word {w:04X} at byte {i} is not a lambda word", "channel")
        if i + 4 > len(packet):
            raise ParseError("lambda word without its value word", "truncated")
        w1 = _word(packet, i + 2)
        if w1 & 0xC080:
            raise ParseError(f"lambda value word {w1:04X} at byte {i + 2} is malformed", "channel")
        out.append(check_lambda(LambdaWord((w >> 10) & 7, ((w >> 1) & 0x80) | (w & 0x7F), _value13(w1))))
        i += 4
    for ch in out:
        if isinstance(ch, AuxWord) and ch.value > 1023:  # bits 12-10 unused: "all devices use 10 bits"
            raise ParseError(f"aux value {ch.value} above 1023", "channel")
    return out


def lambda_channels(name: str, word: LambdaWord) -> list[Channel]:
    """Channels for one lambda word under base name ``name`` (see the module docstring)."""
    f, v = word.function, float(word.value)
    status = Channel(f"{name}_status", FUNCTIONS[f], "", Quality.ERROR if f == 6 else Quality.GOOD)
    if f == 0:
        if word.stoich_x10 == 0:
            raise ParseError("lambda channel with a stoichiometric ratio of 0", "value")
        lam = 0.5 + v * 0.001
        return [
            status,
            Channel(name, round(lam * word.stoich_x10 / 10, 4), "afr"),
            Channel(f"{name}_lambda", round(lam, 4), "lambda"),
        ]
    if f == 6:
        return [
            status,
            Channel(name, None, "afr", Quality.ERROR),
            Channel(f"{name}_error", v, "", Quality.ERROR),
        ]
    extra = {1: (f"{name}_o2", v / 10, "%"), 4: (f"{name}_warmup", v / 10, "%"), 5: (f"{name}_heater", v, "")}
    out = [status, Channel(name, None, "afr", Quality.NO_DATA)]
    if f in extra:
        cname, value, unit = extra[f]
        out.append(Channel(cname, value, unit))
    if f == 7:
        out[0] = Channel(f"{name}_status", FUNCTIONS[7], "", Quality.WARN)
    return out


def aux_channel(name: str, raw: int, scale: MtsAuxSettings | None) -> Channel:
    """An aux value scaled onto the configured range (0-5 V by default)."""
    if raw > 1023:
        raise ParseError(f"aux value {raw} above 1023", "value")
    lo, hi, unit = (scale.min, scale.max, scale.unit) if scale else (0.0, 5.0, "V")
    return Channel(name, round(lo + (hi - lo) * raw / 1023, 6), unit)


def to_frame(
    channels: Sequence[LambdaWord | AuxWord],
    settings: AfrSerialSettings,
    device: str,
    received_at: datetime,
    monotonic_ns: int,
) -> Frame:
    """Name and scale decoded channels into one frame. Raises ParseError(kind=value)."""
    out: list[Channel] = []
    n_lambda = n_aux = 0
    for ch in channels:
        if isinstance(ch, LambdaWord):
            n_lambda += 1
            names = settings.lambda_names
            name = names[n_lambda - 1] if n_lambda <= len(names) else f"afr_{n_lambda}"
            out.extend(lambda_channels(name, ch))
        else:
            n_aux += 1
            scale = settings.aux[n_aux - 1] if n_aux <= len(settings.aux) else None
            name = scale.name if scale and scale.name else f"aux_{n_aux}"
            out.append(aux_channel(name, ch.value, scale))
    if not out:
        raise ParseError("data packet without channels", "empty")
    return Frame("afr_serial", device, received_at, received_at, monotonic_ns, tuple(out))


def decode(
    item: bytes, settings: AfrSerialSettings, device: str, received_at: datetime, monotonic_ns: int
) -> Frame | ParseError | None:
    """One packet from the splitter -> a Frame, a ParseError, or None (response packet)."""
    try:
        channels = parse_packet(item)
        if channels is None:
            return None
        return to_frame(channels, settings, device, received_at, monotonic_ns)
    except ParseError as exc:
        return exc
    except Exception as exc:  # one packet must never end the producer (issue 12)
        return unexpected(exc, f"packet {item[:16].hex()}")


Stamp = tuple[datetime, int]
"""When a packet arrived: (received_at, host monotonic ns); it travels with the held packet."""


class AfrSerialSource:
    """Reads an MTS chain from a pyserial URL (19200 8N1); one frame per data packet.

    Each packet waits for the next (MtsSplitter: its header; MtsConsistency: its values), so a frame
    is published one packet late, stamped with its own receive time; when the line goes quiet (a
    read returns nothing) the held packet is judged by its predecessor alone.
    """

    source = "afr_serial"

    def __init__(self, settings: AfrSerialSettings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.device = settings.device or device_from_url(settings.url, "0", prefix="mts-")
        self.clock = clock or SystemClock()
        self._port: serial.SerialBase | None = None
        self._splitter = MtsSplitter()
        self._consistency: MtsConsistency[Stamp] = MtsConsistency()

    def open(self) -> None:
        try:
            self._port = serial.serial_for_url(self.settings.url, baudrate=self.settings.baudrate, timeout=0)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise SourceUnavailableError(f"cannot open {self.settings.url!r}: {exc}") from None
        self._splitter = MtsSplitter()  # a new connection starts mid-packet
        self._consistency.reset()

    def close(self) -> None:
        if self._port is not None:
            self._port.close()
        self._port = None

    @property
    def exhausted(self) -> bool:
        return False

    @property
    def connected(self) -> bool:
        """True while the port is open (pyserial discards input that arrived before that)."""
        return self._port is not None

    def read(self, timeout: float) -> Sequence[Frame | ParseError]:
        if self._port is None:
            self.open()
        assert self._port is not None
        try:
            if self._port.timeout != timeout:  # setting it reconfigures the port (tcsetattr)
                self._port.timeout = timeout
            data = self._port.read(max(1, self._port.in_waiting))
            if data:
                data += self._port.read(self._port.in_waiting)
        except (serial.SerialException, OSError) as exc:
            raise SourceUnavailableError(f"{self.settings.url}: {exc}") from None
        # A read with no bytes: the line went quiet, so no next packet will verify the held one.
        items: Sequence[bytes | ParseError] = self._splitter.feed(data) if data else self._splitter.flush()
        now, mono = self.clock.now(), self.clock.monotonic_ns()
        out: list[Frame | ParseError] = []
        for item in items:
            if isinstance(item, ParseError):
                out.append(item)
                continue
            try:
                channels = parse_packet(item)
            except ParseError as exc:
                out.append(exc)
                continue
            if channels is not None:  # None: a response packet, not decoded
                out.extend(self._frames(self._consistency.push(channels, (now, mono))))
        if not data:
            out.extend(self._frames(self._consistency.flush()))
        return out

    def _frames(
        self, verdicts: Sequence[tuple[Sequence[LambdaWord | AuxWord], Stamp] | ParseError]
    ) -> list[Frame | ParseError]:
        out: list[Frame | ParseError] = []
        for verdict in verdicts:
            if isinstance(verdict, ParseError):
                out.append(verdict)
                continue
            channels, (received_at, mono) = verdict
            try:
                out.append(to_frame(channels, self.settings, self.device, received_at, mono))
            except ParseError as exc:
                out.append(exc)
        return out


def from_settings(s: Settings) -> AfrSerialSource:
    return AfrSerialSource(s.afr_serial)


SPEC = SourceSpec("afr_serial", "afr_serial", from_settings, "Innovate MTS wideband AFR (LC-1, LC-2, DLG-1, LM-2)")
