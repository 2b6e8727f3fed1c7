"""writer/pg_arrays.py decoded by psycopg's own binary array loaders (what PostgreSQL receives)."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.adapt import Transformer

from writer.pg_arrays import (
    FLOAT8_OID,
    INT2_OID,
    INT4_OID,
    INT8_OID,
    Int8Array,
    TextArray,
    fixed_array,
    register_array_dumpers,
    text_array,
)


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
        (INT8_OID, "int8[]", [1, 2**62, -(2**63)]),
    ],
)
def test_fixed_array_matches_psycopg(oid: int, type_name: str, values: list[float | int | None]) -> None:
    assert _load(type_name, fixed_array(oid, values)) == values


@pytest.mark.parametrize(
    "values", [["a", None, "héllo"], ["only"], [None, None], ["p/1", "p/2", "p/1", "p/1", "", "p/2"], ["x", "x"]]
)
def test_text_array_matches_psycopg(values: list[str | None]) -> None:
    assert _load("text[]", text_array(values)) == values


def test_empty_arrays_decode_as_empty() -> None:
    assert _load("float8[]", fixed_array(FLOAT8_OID, [])) == []
    assert _load("text[]", text_array([])) == []


@pytest.mark.integration
def test_binary_array_parameters_reach_postgresql_as_arrays(pg_dsn: str) -> None:
    """TextArray/Int8Array parameters (record_progress's) arrive as text[] and int8[], the same
    values as psycopg's own list dumping sends."""
    producers, seqs = ["obd@edge/1", "gps/2", "obd@edge/1", "héllo"], [1, 2**40, 3, 9]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        register_array_dumpers(conn.adapters)
        row = conn.execute(
            "SELECT %s, %s, pg_typeof(%s)::text, pg_typeof(%s)::text",
            [
                TextArray(text_array(producers)),
                Int8Array(fixed_array(INT8_OID, seqs)),
                TextArray(text_array(producers)),
                Int8Array(fixed_array(INT8_OID, seqs)),
            ],
        ).fetchone()
        assert row == (producers, seqs, "text[]", "bigint[]")
        assert conn.execute("SELECT %s::text[], %s::int8[]", [producers, seqs]).fetchone() == (producers, seqs)
