"""writer/pg_arrays.py decoded by psycopg's own binary array loaders (what PostgreSQL receives)."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.adapt import Transformer

from writer.pg_arrays import FLOAT8_OID, INT2_OID, INT4_OID, fixed_array, text_array


def _load(type_name: str, data: bytes) -> object:
    info = psycopg.postgres.types[type_name.removesuffix("[]")]
    return Transformer().get_loader(info.array_oid, psycopg.pq.Format.BINARY).load(data)


@pytest.mark.parametrize(
    ("oid", "type_name", "values"),
    [
        (FLOAT8_OID, "float8[]", [1.5, -2.0, 1e300, 0.0]),
        (FLOAT8_OID, "float8[]", [1.5, None, 3.25]),
        (FLOAT8_OID, "float8[]", [None]),
        (INT4_OID, "int4[]", [1, 2, 2_000_000_000]),
        (INT2_OID, "int2[]", [0, 3, 1]),
        (INT2_OID, "int2[]", [0, None]),
    ],
)
def test_fixed_array_matches_psycopg(oid: int, type_name: str, values: list[float | int | None]) -> None:
    assert _load(type_name, fixed_array(oid, values)) == values


@pytest.mark.parametrize("values", [["a", None, "héllo"], ["only"], [None, None]])
def test_text_array_matches_psycopg(values: list[str | None]) -> None:
    assert _load("text[]", text_array(values)) == values


def test_empty_arrays_decode_as_empty() -> None:
    assert _load("float8[]", fixed_array(FLOAT8_OID, [])) == []
    assert _load("text[]", text_array([])) == []
