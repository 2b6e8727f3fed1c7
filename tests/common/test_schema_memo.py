"""decode remembers what it accepted (issue 15: the writer's CPU per reading): channel shapes
(names, units, qualities) and the src/dev/prod/sess fields. A remembered shape or name must
never let through what a first sight refuses, nor change what a frame says. Each case below is
decoded once with nothing remembered and once after its base frame (and the case itself) were
seen; both must give the same frame or the same DecodeError.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

import common.schema as schema
from common.errors import DecodeError
from common.schema import MAX_NAME_LEN, MAX_TEXT_LEN, MAX_UNIT_LEN, Shape, decode, decode_shaped

BASE: list[list[Any]] = [["rpm", 1303.5, "rpm", "good"], ["afr", 14.7, "", "good"], ["gear", None, "", "no_data"]]
HEADER = {
    b"v": b"1", b"src": b"obd", b"dev": b"elm-0", b"prod": b"obd@box/1", b"seq": b"7",
    b"obs": b"2026-11-23T10:00:00.123456+00:00", b"rcv": b"2026-11-23T10:00:00.125000+00:00", b"mono": b"123",
}  # fmt: skip


def _forget() -> None:
    schema._SHAPES.clear()
    schema._NAMES.clear()
    schema._SOURCES.clear()


def _entry(channels: Any, **header: bytes) -> dict[bytes, bytes]:
    raw = channels if isinstance(channels, bytes) else orjson.dumps(channels)
    return {**HEADER, **{k.encode(): v for k, v in header.items()}, b"ch": raw}


def _outcome(fields: dict[bytes, bytes]) -> object:
    try:
        return decode_shaped(fields)
    except DecodeError as exc:
        return f"DecodeError: {exc}"


def _with(i: int, item: Any) -> list[Any]:
    out: list[Any] = [list(c) for c in BASE]
    out[i] = item
    return out


def _cases() -> Iterator[tuple[str, dict[bytes, bytes]]]:
    """Hostile or unusual entries next to the remembered base shape."""
    same_columns_as_a_dict = {"rpm": 1, "x": 2, "rpm_u": 3, "good": 4}  # zip(*) would read rpm/x/rpm_u/good
    mutations: dict[str, Callable[[], Any]] = {
        "a dict whose keys spell a remembered shape": lambda: [same_columns_as_a_dict],
        "a string of four characters": lambda: _with(0, "abcd"),
        "three fields": lambda: _with(0, ["rpm", 1.0, "rpm"]),
        "five fields": lambda: _with(0, ["rpm", 1.0, "rpm", "good", "x"]),
        "all five fields": lambda: [[*c, "x"] for c in BASE],
        "all three fields": lambda: [c[:3] for c in BASE],
        "a boolean value": lambda: _with(0, ["rpm", True, "rpm", "good"]),
        "an integer value": lambda: _with(0, ["rpm", 1303, "rpm", "good"]),
        "a list value": lambda: _with(0, ["rpm", [1.0], "rpm", "good"]),
        "a dict value": lambda: _with(0, ["rpm", {"a": 1}, "rpm", "good"]),
        "a text value": lambda: _with(0, ["rpm", "fast", "rpm", "good"]),
        "a text value too long": lambda: _with(0, ["rpm", "x" * (MAX_TEXT_LEN + 1), "rpm", "good"]),
        "a text value just short enough": lambda: _with(0, ["rpm", "x" * MAX_TEXT_LEN, "rpm", "good"]),
        "an unknown quality": lambda: _with(0, ["rpm", 1.0, "rpm", "fine"]),
        "a quality of another case": lambda: _with(0, ["rpm", 1.0, "rpm", "GOOD"]),
        "a unit too long": lambda: _with(0, ["rpm", 1.0, "u" * (MAX_UNIT_LEN + 1), "good"]),
        "a name too long": lambda: _with(0, ["r" * (MAX_NAME_LEN + 1), 1.0, "rpm", "good"]),
        "an empty name": lambda: _with(0, ["", 1.0, "rpm", "good"]),
        "a number as name": lambda: _with(0, [5, 1.0, "rpm", "good"]),
        "a duplicate name": lambda: _with(1, ["rpm", 1.0, "rpm", "good"]),
        "another unit": lambda: _with(0, ["rpm", 1.0, "1/min", "good"]),
        "another quality": lambda: _with(0, ["rpm", 1.0, "rpm", "warn"]),
        "channels reordered": lambda: BASE[::-1],
        "one channel fewer": lambda: BASE[:2],
    }
    yield "the base", _entry(BASE)
    for name, make in mutations.items():
        yield name, _entry(make())
    yield "NaN", _entry(orjson.dumps(BASE).replace(b"1303.5", b"NaN"))
    yield "a NUL in a name", _entry(orjson.dumps(BASE).replace(b'"afr"', b'"a\\u0000fr"'))
    for field, bad in ((b"dev", b"elm\x00-0"), (b"dev", b"\xff\xfe"), (b"dev", b""), (b"dev", b"d" * 201),
                       (b"prod", b"\x00"), (b"sess", b"s" * 201), (b"src", b"OBD"), (b"src", b"o\x00bd")):  # fmt: skip
        yield f"{field.decode()} = {bad[:12]!r}", {**_entry(BASE), field: bad}


@pytest.mark.parametrize(("name", "fields"), list(_cases()), ids=[n for n, _ in _cases()])
def test_what_decode_remembers_changes_no_outcome(name: str, fields: dict[bytes, bytes]) -> None:
    _forget()
    first_sight = _outcome(fields)
    _forget()
    _outcome(_entry(BASE))  # the base shape and names remembered
    _outcome(_entry([["rpm", 1.0, "rpm_u", "good"]]))  # the shape the hostile dict spells
    _outcome(fields)  # and whatever the case itself left behind
    assert _outcome(fields) == first_sight


def test_a_dict_spelling_a_remembered_shape_is_refused_not_read_as_a_text_value() -> None:
    """The case the whole-list type check is there for: without it the remembered shape
    (rpm, rpm_u, good) would accept the dict's second key "x" as rpm's value."""
    _forget()
    decode(_entry([["rpm", 1.0, "rpm_u", "good"]]))
    with pytest.raises(DecodeError, match="each channel must be"):
        decode(_entry([{"rpm": 1, "x": 2, "rpm_u": 3, "good": 4}]))


def test_frames_of_one_shape_share_one_shape_object_and_give_their_own_values() -> None:
    _forget()
    a, shape_a, values_a = decode_shaped(_entry(BASE))
    b, shape_b, values_b = decode_shaped(_entry(_with(0, ["rpm", 900, "rpm", "good"])))
    assert shape_a is shape_b == Shape(("rpm", "afr", "gear"), ("rpm", "", ""), tuple(c.quality for c in a.channels))
    assert values_a == (1303.5, 14.7, None) and values_b == (900.0, 14.7, None)
    assert type(values_b[0]) is float and b.channels[0].value == 900.0


def test_the_memory_is_bounded() -> None:
    _forget()
    for i in range(schema.MAX_REMEMBERED + 10):
        decode(_entry([[f"c{i}", 1.0, "", "good"]], dev=f"d{i}".encode()))
    assert len(schema._SHAPES) <= schema.MAX_REMEMBERED and len(schema._NAMES) <= schema.MAX_REMEMBERED
