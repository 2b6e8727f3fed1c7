"""Innovate MTS framing and decoding: the real DLG-1 packet, synthetic vectors, bad input, a pty.

Every vector except the DLG-1 capture is SYNTHETIC: hand-assembled from the bit layout in
shared/protocols.md §3 (the derivation is in the comment next to each one).
"""

from __future__ import annotations

import os
import pty
import time
import tty
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from common.errors import ParseError
from common.schema import Channel, Frame, Quality
from common.settings import AfrSerialSettings, MtsAuxSettings
from producers.afr_serial import (
    AfrSerialSource,
    AuxWord,
    LambdaWord,
    MtsSplitter,
    decode,
    is_header,
    packet_words,
    parse_packet,
)
from producers.mts_consistency import MtsConsistency
from tests.producers.corruption import flip

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)

# SYNTHETIC. Header B2 82: 1011 0010 | 1000 0010 = sync bits, D=1 (data), length 2 words.
# Lambda word0 43 13: 0 1 0 F=000 1 AF7=1 | 0 AF6..0=0010011 -> F=0, AF=0x80|0x13=147.
# Value word 03 74: L = 3<<7 | 0x74 = 500 -> lambda 1.000, AFR 14.7.
LAMBDA_VALID = bytes.fromhex("B282 4313 0374")
# SYNTHETIC. 53 13: F=(0x53>>2)&7=4 (warm-up), AF=147; 03 42: L = 3<<7 | 0x42 = 450 -> 45.0 %.
WARMUP = bytes.fromhex("B282 5313 0342")
# The held-out error example of protocols.md §3 (SYNTHETIC here: we have no capture of it).
# 5B 13: F=(0x5B>>2)&7=6 (error); 00 02: code 2 = heater open. Two sensors.
ERROR_2 = bytes.fromhex("B284 5B13 0002 5B13 0002")
# SYNTHETIC. Length 4: lambda valid (as above) + aux 04 00 (4<<7 = 512) + aux 07 7F (1023).
LAMBDA_AUX = bytes.fromhex("B284 4313 0374 0400 077F")


def frames(data: bytes, settings: AfrSerialSettings | None = None) -> list[Frame | ParseError | None]:
    out: list[Frame | ParseError | None] = []
    splitter = MtsSplitter()
    for item in [*splitter.feed(data), *splitter.flush()]:  # flush: the end of the input
        out.append(decode(item, settings or AfrSerialSettings(), "mts-0", NOW, 1) if isinstance(item, bytes) else item)
    return out


def chans(frame: Frame | ParseError | None) -> dict[str, Channel]:
    assert isinstance(frame, Frame), frame
    return {c.name: c for c in frame.channels}


def kinds(items: list[Frame | ParseError | None]) -> list[str]:
    return [i.kind for i in items if isinstance(i, ParseError)]


def test_real_dlg1_packet_is_o2_20_9_percent_on_both_sensors(shared_data: Path) -> None:
    data = (shared_data / "mts" / "dlg1_two_sensors_free_air.bin").read_bytes()
    assert data == bytes.fromhex("B284 4713 0151 4713 0151")
    assert is_header(data[0], data[1]) and packet_words(data[0], data[1]) == 4
    assert parse_packet(data) == [LambdaWord(1, 147, 209), LambdaWord(1, 147, 209)]
    (frame,) = frames(data)
    c = chans(frame)
    for name in ("afr_1", "afr_2"):
        assert c[f"{name}_o2"] == Channel(f"{name}_o2", 20.9, "%")
        assert c[f"{name}_status"].value == "o2"
        assert c[name] == Channel(name, None, "afr", Quality.NO_DATA)
    assert len(c) == 6


def test_real_dlg1_stream_repeated_gives_one_frame_per_packet(shared_data: Path) -> None:
    data = (shared_data / "mts" / "dlg1_two_sensors_free_air.bin").read_bytes()
    splitter = MtsSplitter()
    stream = data * 50
    got = []
    for i in range(0, len(stream), 7):  # chunks cut across packets
        got.extend(splitter.feed(stream[i : i + 7]))
    assert got == [data] * 49  # the last one waits for the next header ...
    assert splitter.flush() == [data]  # ... or for the line to go quiet


def test_lambda_valid_gives_lambda_and_afr_from_the_packet_stoich() -> None:
    c = chans(frames(LAMBDA_VALID)[0])
    assert c["afr_1"] == Channel("afr_1", 14.7, "afr")
    assert c["afr_1_lambda"] == Channel("afr_1_lambda", 1.0, "lambda")
    assert c["afr_1_status"].value == "lambda"
    # SYNTHETIC: same word with AF=0x80|0x1B=155 (LPG 15.5): 0x43->0x43, low byte 0x1B.
    assert chans(frames(bytes.fromhex("B282 431B 0374"))[0])["afr_1"].value == 15.5


def test_warmup_reports_progress() -> None:
    c = chans(frames(WARMUP)[0])
    assert c["afr_1_warmup"] == Channel("afr_1_warmup", 45.0, "%")
    assert c["afr_1_status"].value == "warmup"
    assert c["afr_1"].quality is Quality.NO_DATA


def test_error_code_2_gives_quality_error_with_the_code() -> None:
    c = chans(frames(ERROR_2)[0])
    for name in ("afr_1", "afr_2"):
        assert c[f"{name}_error"] == Channel(f"{name}_error", 2.0, "", Quality.ERROR)
        assert c[name] == Channel(name, None, "afr", Quality.ERROR)
        assert c[f"{name}_status"] == Channel(f"{name}_status", "error", "", Quality.ERROR)


@pytest.mark.parametrize(
    ("word0", "status", "extra"),
    [
        # SYNTHETIC: F in bits 12..10 of word0 (0x43 | F<<2), AF=147, L=0x0151=209.
        ("4713", "o2", ("afr_1_o2", 20.9)),
        ("4B13", "free_air_cal", None),
        ("4F13", "cal_needed", None),
        ("5713", "heater_cal", ("afr_1_heater", 209.0)),
    ],
)
def test_every_function_code_has_a_status(word0: str, status: str, extra: tuple[str, float] | None) -> None:
    c = chans(frames(bytes.fromhex(f"B282 {word0} 0151"))[0])
    assert c["afr_1_status"].value == status
    assert c["afr_1"].value is None
    if extra:
        assert c[extra[0]].value == extra[1]
    else:
        assert len(c) == 2


def test_aux_channels_scale_per_configuration_and_default_to_volts() -> None:
    assert parse_packet(LAMBDA_AUX) == [LambdaWord(0, 147, 500), AuxWord(512), AuxWord(1023)]
    c = chans(frames(LAMBDA_AUX)[0])
    assert c["aux_1"] == Channel("aux_1", round(5 * 512 / 1023, 6), "V")
    assert c["aux_2"] == Channel("aux_2", 5.0, "V")
    settings = AfrSerialSettings(lambda_names=["front"], aux=[MtsAuxSettings(name="egt", min=0, max=1000, unit="degC")])
    c = chans(frames(LAMBDA_AUX, settings)[0])
    assert c["front"].value == 14.7 and "front_lambda" in c
    assert c["egt"] == Channel("egt", round(1000 * 512 / 1023, 6), "degC")
    assert c["aux_2"].value == 5.0  # beyond the configured list: default name and scale


def test_recording_bit_and_response_packets() -> None:
    # SYNTHETIC: header F2 82 = B2 82 with R (bit 14) set: still a data packet.
    assert chans(frames(bytes.fromhex("F282 4313 0374"))[0])["afr_1"].value == 14.7
    # SYNTHETIC response packet: header A2 84 (D=0, 4 words), type word 01 4E (0xCE), 3 words.
    assert frames(bytes.fromhex("A284 014E 4C43 2D31 0000")) == [None]


def test_line_noise_before_and_between_packets_resyncs() -> None:
    noise = bytes.fromhex("00 13 7F 55")  # SYNTHETIC noise: no byte pair with both high bits
    out = frames(noise + LAMBDA_VALID + noise + WARMUP + LAMBDA_VALID)
    # The 1st packet is followed by noise, not by a header, so it fails the length validation
    # (protocols.md §3): 7-bit noise inside a payload cannot be told apart from data.
    assert kinds(out) == ["garbage", "length"]  # one error per resynchronisation
    good = [chans(f)["afr_1_status"].value for f in out if isinstance(f, Frame)]
    assert good == ["warmup", "lambda"]
    # A packet that ends the buffer has nothing after it to validate against yet: it waits, and
    # flush() (the line went quiet) releases it.
    out = frames(noise + LAMBDA_VALID)
    assert kinds(out) == ["garbage"] and chans(out[1])["afr_1"].value == 14.7


def test_high_bit_noise_inside_a_packet_is_truncation_then_resync() -> None:
    broken = LAMBDA_VALID[:4] + b"\xff" + LAMBDA_VALID[4:]
    out = frames(broken + WARMUP)
    assert kinds(out) == ["truncated"]  # the bytes skipped after it are the same resynchronisation
    assert [chans(f)["afr_1_status"].value for f in out if isinstance(f, Frame)] == ["warmup"]


def test_truncated_packets_are_counted_and_the_next_one_decodes() -> None:
    out = frames(ERROR_2[:5] + LAMBDA_VALID + ERROR_2[:9] + WARMUP)
    assert kinds(out) == ["truncated", "truncated"]
    assert len([f for f in out if isinstance(f, Frame)]) == 2


def test_a_packet_at_the_end_of_the_buffer_waits_for_its_bytes() -> None:
    splitter = MtsSplitter()
    assert splitter.feed(LAMBDA_VALID[:3]) == []
    assert splitter.feed(LAMBDA_VALID[3:]) == []  # whole, but no checksum: wait for the next header
    assert splitter.feed(WARMUP[:1]) == []
    assert splitter.feed(WARMUP[1:]) == [LAMBDA_VALID]


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (bytes.fromhex("B282 4313 0374 0000"), "length"),  # SYNTHETIC: 1 word too many, no header after
        (bytes.fromhex("B3FF") + bytes(10), "length"),  # SYNTHETIC: 255 words announced > 64
        (bytes.fromhex("B282 6313 0374"), "channel"),  # SYNTHETIC: bit 13 set in word0 (LM-1 style)
        (bytes.fromhex("B282 4113 0374"), "channel"),  # SYNTHETIC: bit 9 clear: not a lambda word
        (bytes.fromhex("B281 4313"), "truncated"),  # SYNTHETIC: lambda word0 with no value word
        (bytes.fromhex("B281 3F7F"), "channel"),  # SYNTHETIC: aux value 8191 > 1023 (impossible)
        (bytes.fromhex("B282 5F13 0151"), "value"),  # SYNTHETIC: F=7 is reserved: no device sends it
        (bytes.fromhex("B282 4340 0374"), "value"),  # SYNTHETIC: AF 19.2 is no fuel's ratio
        (bytes.fromhex("B282 4713 0300"), "value"),  # SYNTHETIC: O2 38.4 %: more than air has
        (bytes.fromhex("B282 5B13 2E02"), "value"),  # SYNTHETIC: error code 5890 (line noise on 2)
        (bytes.fromhex("B282 4313 0F00"), "value"),  # SYNTHETIC: lambda 2.42: beyond lean max 1.523
        (bytes.fromhex("B282 4200 0374"), "value"),  # SYNTHETIC: lambda valid with stoich 0
        (bytes.fromhex("B280"), "empty"),  # SYNTHETIC: data packet of 0 words
    ],
)
def test_bad_packets_are_counted_rejections(data: bytes, kind: str) -> None:
    out = frames(data + LAMBDA_VALID)
    assert kind in kinds(out)
    assert chans(out[-1])["afr_1"].value == 14.7  # and the stream goes on


def test_random_garbage_never_crashes_and_always_resyncs() -> None:
    import random

    rng = random.Random(4)
    splitter = MtsSplitter()
    settings = AfrSerialSettings()
    for _ in range(300):
        for item in splitter.feed(rng.randbytes(rng.randint(0, 40))):
            if isinstance(item, bytes):
                decode(item, settings, "d", NOW, 1)
    out = splitter.feed(bytes(1) + LAMBDA_VALID + LAMBDA_VALID)
    decoded = [decode(i, settings, "d", NOW, 1) if isinstance(i, bytes) else i for i in out]
    assert isinstance(decoded[-1], Frame)
    assert chans(decoded[-1])["afr_1"].value == 14.7


@pytest.fixture
def pty_pair() -> Iterator[tuple[int, str]]:
    master, slave = pty.openpty()
    tty.setraw(slave)
    yield master, os.ttyname(slave)
    os.close(master)
    os.close(slave)


def test_source_reads_a_pty(pty_pair: tuple[int, str]) -> None:
    master, path = pty_pair
    source = AfrSerialSource(AfrSerialSettings(url=path, device="bench-afr"))
    source.open()
    try:
        # starts mid-packet, as a real port does; a device repeats its packets
        os.write(master, ERROR_2[3:] + LAMBDA_VALID * 2 + WARMUP * 2)
        got: list[Frame | ParseError] = []
        deadline = time.monotonic() + 5
        while len(got) < 5 and time.monotonic() < deadline:
            got.extend(source.read(0.2))
    finally:
        source.close()
    assert [type(g) for g in got] == [ParseError, Frame, Frame, Frame, Frame]
    assert isinstance(got[1], Frame) and got[1].device == "bench-afr" and got[1].source == "afr_serial"


# --- issue 14, finding 8 --------------------------------------------------------------------


def test_a_packet_is_not_accepted_before_the_next_header() -> None:
    """The old splitter released a packet as soon as the buffer ended at its announced length."""
    splitter = MtsSplitter()
    noisy = LAMBDA_VALID[:5] + b"\x13"  # SYNTHETIC: line noise in the last byte of the packet
    assert splitter.feed(noisy) == []  # whole by its announced length, but unverified
    out = splitter.feed(b"\x55\x13" + LAMBDA_VALID + WARMUP)
    assert [x.kind for x in out if isinstance(x, ParseError)] == ["length"]
    assert [x for x in out if isinstance(x, bytes)] == [LAMBDA_VALID]


def test_isolated_packets_are_rejected_by_their_neighbours() -> None:
    """SYNTHETIC stream: O2 20.9 %, one packet with line noise making it 16.7 %, then 20.9 % again."""
    good, noisy = parse_packet(bytes.fromhex("B282 4713 0151")), parse_packet(bytes.fromhex("B282 4713 0127"))
    assert good is not None and noisy is not None and noisy[0].value == 167
    guard: MtsConsistency[int] = MtsConsistency()
    verdicts = [v for i, p in enumerate([good, good, noisy, good, good]) for v in guard.push(p, i)] + guard.flush()
    assert [v.kind if isinstance(v, ParseError) else v[1] for v in verdicts] == [0, 1, "isolated", 3, 4]
    # a real step (lambda 1.00 -> 1.10, held) and a ramp pass: the next packet confirms them
    ramp = [LambdaWord(0, 147, v) for v in (500, 500, 600, 600, 620, 640, 660, 660)]
    guard = MtsConsistency()
    verdicts = [v for i, w in enumerate(ramp) for v in guard.push([w], i)] + guard.flush()
    assert not [v for v in verdicts if isinstance(v, ParseError)]
    # a changed multiplier or function code must persist to be believed
    guard = MtsConsistency()
    o2, noisy_af, warm = LambdaWord(1, 147, 209), LambdaWord(1, 146, 209), LambdaWord(4, 147, 500)
    words = [o2, o2, noisy_af, o2, warm, warm, LambdaWord(1, 147, 209), warm]
    verdicts = [v for i, w in enumerate(words) for v in guard.push([w], i)] + guard.flush()
    assert [isinstance(v, ParseError) for v in verdicts] == [False, False, True, False, False, False, True, False]


def test_splitter_error_counts_do_not_depend_on_read_sizes(shared_data: Path) -> None:
    """The real DLG-1 packet repeated, 1 % of bytes flipped (seeded), read in 1, 7 and all bytes."""
    data, _ = flip((shared_data / "mts" / "dlg1_two_sensors_free_air.bin").read_bytes() * 500)
    results = []
    for chunk in (1, 7, len(data)):
        splitter = MtsSplitter()
        items = [x for i in range(0, len(data), chunk) for x in splitter.feed(data[i : i + chunk])]
        results.append(
            ([x.kind for x in items if isinstance(x, ParseError)], [x for x in items if isinstance(x, bytes)])
        )
    assert results[0] == results[1] == results[2]
