"""Apply the SQL migrations in writer/migrations/ to one schema, once each, in order.

Idempotent: applied versions are recorded in ``schema_migrations``; an advisory lock makes
concurrent runs (several replicas starting together) safe. Creates no partitions
(writer/partitions.py does).
"""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg
from psycopg import sql

import writer

logger = logging.getLogger(__name__)

MIGRATIONS = Path(writer.__file__).with_name("migrations")
"""writer/migrations/: the SQL files ship inside the writer package (the wheel and the image)."""
_LOCK_KEY = 0x7E1E_0001


def migration_files() -> list[tuple[int, Path]]:
    """(version, path) for every ``NNN_name.sql``, in order."""
    out = []
    for path in sorted(MIGRATIONS.glob("*.sql")):
        out.append((int(path.name.split("_", 1)[0]), path))
    return out


def migrate(conn: psycopg.Connection[tuple[object, ...]], schema: str, upto: int | None = None) -> list[int]:
    """Create ``schema`` if needed and apply pending migrations (up to version ``upto``, for
    upgrade tests); return the versions applied."""
    applied_now: list[int] = []
    ident = sql.Identifier(schema)
    with conn.transaction():
        # Replicas starting together wait for each other's migration, however long it takes.
        conn.execute("SET LOCAL lock_timeout = 0")
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(ident))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for version, path in migration_files():
            if version in done or (upto is not None and version > upto):
                continue
            conn.execute(path.read_text())
            conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", [version, path.name])
            applied_now.append(version)
            logger.info("applied migration %s to schema %s", path.name, schema)
    return applied_now
