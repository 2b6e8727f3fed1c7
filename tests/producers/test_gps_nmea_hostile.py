"""gps_nmea: a sentence can be rejected but never end the producer (issue 12, finding 3)."""

from __future__ import annotations

import datetime as dt

import pytest

from common.errors import ParseError
from common.schema import Frame
from producers.gps_nmea.source import NmeaDecoder

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def gga(hhmmss: str) -> bytes:
    return f"$GPGGA,{hhmmss}.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,\r\n".encode()


def test_zda_year_9999_then_the_next_second_is_a_rejection_not_an_exception() -> None:
    decoder = NmeaDecoder("gps0")
    out = decoder.feed(b"$GPZDA,235959.00,31,12,9999,00,00\r\n" + gga("235959") + gga("000000") + gga("000001"), NOW, 0)
    out += decoder.flush()
    errors = [i for i in out if isinstance(i, ParseError)]
    assert [e.kind for e in errors] == ["field"] and "9999" in str(errors[0])
    assert len([i for i in out if isinstance(i, Frame)]) == 3  # the fixes themselves are kept


def test_a_date_at_the_end_of_the_calendar_is_a_rejection() -> None:
    decoder = NmeaDecoder("gps0")
    rmc = b"$GPRMC,235959.00,A,4807.038,N,01131.000,E,0.0,0.0,311299,,,A\r\n"
    decoder.epochs.min_date = dt.date.max - dt.timedelta(days=1)  # rolls 1999-12-31 to the last day
    out = decoder.feed(rmc + gga("000000") + gga("000001"), NOW, 0) + decoder.flush()
    assert all(isinstance(i, Frame | ParseError) for i in out)


@pytest.mark.parametrize("boom", [OverflowError("date value out of range"), KeyError("x"), ZeroDivisionError()])
def test_an_unexpected_decoder_exception_is_an_internal_rejection(boom: Exception) -> None:
    decoder = NmeaDecoder("gps0")

    def explode(*_: object) -> list[Frame]:
        raise boom

    decoder.epochs.add = explode  # type: ignore[method-assign]
    out = decoder.feed(gga("120000"), NOW, 0)
    assert [(type(i), getattr(i, "kind", "")) for i in out] == [(ParseError, "internal")]
