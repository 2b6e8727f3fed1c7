"""Apply the SQL migrations in writer/migrations/ to one schema, once each, in order.

Idempotent: applied versions are recorded in ``schema_migrations``; an advisory lock makes
concurrent runs (several replicas starting together) safe. Creates no partitions
(writer/partitions.py does).

The rights of the optional roles (``writer/migrations/roles/<role>.sql``: the Grafana reader, the
run commands, the run detector) are not numbered migrations: every run grants them again, to each
role that exists. A role that does not exist is created NOLOGIN when the migrating role may create
roles; otherwise its grants are skipped with a warning and the migration goes on, so a box
upgraded before its new roles were made keeps writing, and the next ``migrate`` after
``deploy/postgres/10-roles.sh`` (or a manual CREATE ROLE) grants them.
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
ROLE_GRANTS = MIGRATIONS / "roles"
"""writer/migrations/roles/<role>.sql: the rights of one optional role, granted on every migrate."""
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
        if upto is None:
            grant_roles(conn)
    return applied_now


def grant_roles(conn: psycopg.Connection[tuple[object, ...]]) -> dict[str, bool]:
    """Grant each optional role its rights on the current schema; role -> granted (False: missing)."""
    out: dict[str, bool] = {}
    for path in sorted(ROLE_GRANTS.glob("*.sql")):
        role = path.stem
        out[role] = _role_exists(conn, role)
        if not out[role]:
            logger.warning(
                "role %s does not exist and %s cannot create it: its rights are not granted (%s); create it"
                " as deploy/postgres/10-roles.sh does, then run telemetry-admin migrate again",
                role,
                conn.info.user,
                path.name,
            )
            continue
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(_schema(conn), sql.Identifier(role)))
        conn.execute(path.read_text())
    return out


def _schema(conn: psycopg.Connection[tuple[object, ...]]) -> sql.Identifier:
    row = conn.execute("SELECT current_schema()").fetchone()
    assert row is not None and row[0] is not None, "search_path is set by migrate()"
    return sql.Identifier(str(row[0]))


def _role_exists(conn: psycopg.Connection[tuple[object, ...]], role: str) -> bool:
    """True when ``role`` exists, creating it NOLOGIN when the migrating role may."""
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
        return True
    try:
        with conn.transaction():  # a savepoint: a refusal leaves the migration's transaction usable
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
    except psycopg.errors.DuplicateObject:
        return True  # created meanwhile by a concurrent migrate of another schema
    except psycopg.errors.UniqueViolation:
        return True
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True
