"""Every source turns an unforeseen exception in one input into a rejection (issue 12, finding 1).

The exception is provoked by replacing one pure decoding step; the source must return a
ParseError of kind ``internal`` for that input and go on, never raise.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from common.errors import ParseError
from common.settings import AfrSerialSettings
from producers import afr_serial
from producers.dyno_udp import decoder as jetdrive
from producers.dyno_udp import wire

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
LAMBDA_VALID = bytes.fromhex("B282 4313 0374")


def boom(*_: object, **__: object) -> object:
    raise OverflowError("an odd value nobody foresaw")


def test_afr_serial_packet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(afr_serial, "to_frame", boom)
    # The splitter releases a packet when the next header arrives (finding 14.8): feed two.
    item, *_ = afr_serial.MtsSplitter().feed(LAMBDA_VALID + LAMBDA_VALID)
    assert isinstance(item, bytes)
    got = afr_serial.decode(item, AfrSerialSettings(), "mts-0", NOW, 1)
    assert isinstance(got, ParseError) and got.kind == "internal" and "OverflowError" in str(got)


def test_dyno_udp_datagram(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire, "split_datagram", boom)
    [error] = jetdrive.JetDriveDecoder(7).feed(b"\x00" * 12, ("127.0.0.1", 22344), NOW, 0)
    assert error.kind == "internal"


def test_dyno_udp_message(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.producers.test_dyno_udp import info

    monkeypatch.setattr(jetdrive.JetDriveDecoder, "_message", boom)
    errors = jetdrive.JetDriveDecoder(7).feed(info(), ("127.0.0.1", 22344), NOW, 0)
    assert [e.kind for e in errors] == ["internal"]


def test_obd_response(monkeypatch: pytest.MonkeyPatch) -> None:
    import obd as python_obd

    from producers import obd
    from tests.producers.test_obd import FakeConnection, _source

    monkeypatch.setattr(obd, "decode_value", boom)
    q = python_obd.Unit
    src = _source(FakeConnection({"VIN": [None], "RPM": [1000 * q.rpm], "GET_DTC": [[]]}))
    src.open()
    items = src.read(0.0)
    # RPM goes through decode_value; the VIN and trouble codes are decoded from the raw answers
    # by producers/obd_decoders.py (finding 14.6), which this patch does not reach.
    assert [i.kind for i in items if isinstance(i, ParseError)] == ["internal"]
