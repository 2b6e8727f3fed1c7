"""PostgreSQL checks of ``telemetry-admin validate``: reachable, schema migrated, the writer's rights.

The writer's rights are read with ``has_table_privilege`` / ``has_function_privilege`` /
``has_database_privilege`` for each table, function and right the writer uses (the grants of
writer/migrations/002-011), and proved with a zero-row COPY into ``readings_packed`` inside a
transaction that is rolled back: nothing is written. Identifiers go through ``psycopg.sql``.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from admin.checks import Check, fail, ok, skip
from common.settings import Settings

WRITER_TABLES: dict[str, tuple[str, ...]] = {
    "readings_packed": ("INSERT",),  # the COPY target (writer/pg_copy.py)
    "frames": ("INSERT",),
    "frame_keys": ("SELECT", "INSERT"),
    "current_state": ("SELECT", "INSERT", "UPDATE"),
    "producer_progress": ("SELECT",),
    "retention_state": ("SELECT", "UPDATE"),
}
WRITER_FUNCTIONS = (
    "record_progress(text[], bigint[], text[])",
    "series_ids(text[], text[], text[], text[])",
    "name_ids(text, text[])",
    "device_layouts(integer[], integer[])",
    "ensure_partitions(date, date)",
    "drop_expired_partitions(date, integer)",
    "prune_frame_keys(date, integer)",
)
COPY_PROBE = "COPY readings_packed (observed_at, seq) FROM STDIN"


def _connect(s: Settings) -> psycopg.Connection[Any]:
    from writer.pg import connect_pg

    return connect_pg(s.postgres)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def reachable(s: Settings) -> Check:
    try:
        with _connect(s) as conn:
            row = conn.execute("SELECT current_user, current_database(), current_setting('server_version')").fetchone()
    except psycopg.Error as exc:
        return fail("postgres", f"cannot connect (TELEMETRY_POSTGRES__DSN): {_first_line(exc)}")
    assert row is not None
    user, db, version = row
    return ok("postgres", f"connected to {db} as {user} (PostgreSQL {version})")


def migrated(s: Settings) -> Check:
    from admin.migrate import migration_files

    want = [v for v, _ in migration_files()]
    schema = s.postgres.schema_name
    with _connect(s) as conn:
        if conn.execute("SELECT to_regclass(%s)", [f"{schema}.schema_migrations"]).fetchone() == (None,):
            return fail("schema", f"schema {schema} has no schema_migrations: run telemetry-admin migrate")
        query = sql.SQL("SELECT version FROM {}.schema_migrations").format(sql.Identifier(schema))
        try:
            done = {row[0] for row in conn.execute(query)}
        except psycopg.errors.InsufficientPrivilege:
            return skip("schema", f"{schema}.schema_migrations: owner only; the rights checks find missing objects")
    missing = [v for v in want if v not in done]
    if missing:
        return fail("schema", f"schema {schema}: migrations {missing} not applied: run telemetry-admin migrate")
    return ok("schema", f"schema {schema}: all {len(want)} migrations applied (latest {max(want):03d})")


def writer_rights(s: Settings) -> list[Check]:
    schema = s.postgres.schema_name
    missing: list[str] = []
    with _connect(s) as conn:
        for table, rights in WRITER_TABLES.items():
            qualified = f"{schema}.{table}"
            if conn.execute("SELECT to_regclass(%s)", [qualified]).fetchone() == (None,):
                missing.append(f"{table} (no such table)")
                continue
            for right in rights:
                if not conn.execute("SELECT has_table_privilege(%s, %s)", [qualified, right]).fetchone()[0]:  # type: ignore[index]
                    missing.append(f"{right} on {table}")
        for fn in WRITER_FUNCTIONS:
            qualified = f"{schema}.{fn}"
            if conn.execute("SELECT to_regprocedure(%s)", [qualified]).fetchone() == (None,):
                missing.append(f"{fn} (no such function)")
            elif not conn.execute("SELECT has_function_privilege(%s, 'EXECUTE')", [qualified]).fetchone()[0]:  # type: ignore[index]
                missing.append(f"EXECUTE on {fn}")
        if not conn.execute("SELECT has_database_privilege(current_database(), 'TEMPORARY')").fetchone()[0]:  # type: ignore[index]
            missing.append("TEMPORARY on the database (batch keys are staged in a temp table)")
        copy = _copy_probe(conn)
    if missing:
        return [fail("postgres writer", "missing: " + "; ".join(missing)), copy]
    counts = f"{len(WRITER_TABLES)} tables, {len(WRITER_FUNCTIONS)} functions, TEMPORARY"
    return [ok("postgres writer", f"every right the writer uses ({counts})"), copy]


def _copy_probe(conn: psycopg.Connection[Any]) -> Check:
    """A COPY of zero rows into readings_packed, rolled back: proves the COPY the writer runs is allowed."""
    conn.autocommit = False
    try:
        with conn.cursor() as cur, cur.copy(COPY_PROBE):
            pass
    except psycopg.Error as exc:
        return fail("postgres copy", f"COPY into readings_packed refused: {_first_line(exc)}")
    finally:
        conn.rollback()
        conn.autocommit = True
    return ok("postgres copy", "COPY into readings_packed allowed (zero rows, rolled back)")
