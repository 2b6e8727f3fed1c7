"""The frame schema: round trip, readability, and rejection of hostile entries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from common.errors import DecodeError
from common.schema import SCHEMA_VERSION, Channel, Frame, Priority, Quality, decode, encode
from producers import registry

T = datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=UTC)


def make(**kw: object) -> Frame:
    base: dict[str, object] = dict(
        source="obd", device="elm-0", observed_at=T, received_at=T + timedelta(milliseconds=2),
        monotonic_ns=123, channels=(Channel("rpm", 1303.75, "rpm"), Channel("vin", "WP0ZZZ", "", Quality.GOOD),
                                    Channel("speed", None, "km/h", Quality.NO_DATA)),
        producer="obd@box/1", seq=7,
    )  # fmt: skip
    base.update(kw)
    return Frame(**base)  # type: ignore[arg-type]


def as_redis(fields: dict[str, str | bytes]) -> dict[bytes, bytes]:
    """What redis-py returns for an entry written with these fields."""
    return {k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in fields.items()}


def test_round_trip_preserves_every_field() -> None:
    f = make(session="run-7")
    assert decode(as_redis(encode(f))) == f


def test_a_source_the_writer_was_not_built_with_is_accepted() -> None:
    """Issue 16.1: a new producer deployed before the writer is upgraded must not be dead-lettered:
    the writer checks a source name's form, not membership of the list it was built with."""
    f = make(source="can_bus")
    assert f.source not in registry.by_name()
    assert decode(as_redis(encode(f))) == f


def test_entry_is_plain_text_readable_in_redis_cli() -> None:
    fields = encode(make())
    assert fields["v"] == SCHEMA_VERSION
    assert fields["obs"] == "2026-11-23T10:00:00.123456+00:00"
    assert orjson.loads(fields["ch"])[0] == ["rpm", 1303.75, "rpm", "good"]
    for value in fields.values():
        (value if isinstance(value, bytes) else value.encode()).decode("ascii")


def test_priority_travels_with_the_stream_not_the_entry() -> None:
    f = decode(as_redis(encode(make(priority=Priority.CRITICAL))), Priority.CRITICAL)
    assert f.priority is Priority.CRITICAL
    assert "priority" not in encode(make())


def test_encode_refuses_non_utc_and_nan() -> None:
    with pytest.raises(ValueError, match="not UTC"):
        encode(make(observed_at=T.astimezone(timezone(timedelta(hours=2)))))
    with pytest.raises(ValueError, match="non-finite"):
        encode(make(channels=(Channel("x", float("nan")),)))


@pytest.mark.parametrize(
    ("patch", "reason"),
    [
        ({b"v": b"2"}, "unsupported schema version"),
        ({b"seq": b"-1"}, "not a non-negative integer"),
        ({b"seq": b"0"}, "seq must be >= 1"),
        ({b"obs": b"yesterday"}, "not an ISO 8601 time"),
        ({b"obs": b"2026-11-23T10:00:00"}, "not UTC"),
        ({b"obs": b"0000-01-01T00:00:00+00:00"}, "not an ISO 8601 time"),
        ({b"obs": b"10000-01-01T00:00:00+00:00"}, "not an ISO 8601 time"),
        ({b"src": b"Toaster!"}, "invalid source name"),
        ({b"src": b"x" * 33}, "invalid source name"),
        ({b"dev": b"a\x00b"}, "NUL byte"),
        ({b"dev": b"\xff\xfe"}, "not UTF-8"),
        ({b"dev": b"x" * 201}, "1-200 characters"),
        ({b"ch": b'[["x", NaN, "", "good"]]'}, "not valid JSON"),
        ({b"ch": b'[["x", 1e400, "", "good"]]'}, "not valid JSON"),
        ({b"ch": b'[["x\\u0000", 1, "", "good"]]'}, "NUL"),
        ({b"ch": b'[["\\ud800", 1, "", "good"]]'}, "not valid JSON"),
        ({b"ch": b'[["x", true, "", "good"]]'}, "value must be"),
        ({b"ch": b'[["x", 1, "", "great"]]'}, "unknown quality"),
        ({b"ch": b'[["x", 1, "", "good"], ["x", 2, "", "good"]]'}, "duplicate channel"),
        ({b"ch": b"[]"}, "non-empty"),
        ({b"ch": b'{"x": 1}'}, "non-empty JSON array"),
        ({b"extra": b"1"}, "unexpected fields"),
    ],
)
def test_decode_rejects_with_a_reason(patch: dict[bytes, bytes], reason: str) -> None:
    fields = as_redis(encode(make()))
    fields.update(patch)
    with pytest.raises(DecodeError, match=reason):
        decode(fields)


def test_decode_rejects_missing_fields() -> None:
    fields = as_redis(encode(make()))
    del fields[b"prod"]
    with pytest.raises(DecodeError, match="missing field 'prod'"):
        decode(fields)
    with pytest.raises(DecodeError, match="not a frame entry"):
        decode({b"hello": b"world"})


def test_many_channels_and_hostile_names_survive_a_round_trip() -> None:
    names = ["x'); DROP TABLE readings;--", "tab\there", "nl\nhere", "\\.", "\\N", "emoji 🚗", "rtl עברית", "e\u0301"]
    chans = tuple(Channel(n, float(i), "") for i, n in enumerate(names)) + tuple(
        Channel(f"c{i}", float(i)) for i in range(10_000)
    )
    f = make(channels=chans)
    assert decode(as_redis(encode(f)), max_channels=len(chans)).channels == chans
