"""Create the test/benchmark database if it is missing (no pytest here: the benchmark imports it)."""

from __future__ import annotations

import contextlib

import psycopg
from psycopg import sql


def ensure_database(dsn: str) -> None:
    """Create the database named in ``dsn`` (connecting to ``postgres`` on the same server) if absent."""
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    dbname = str(info.get("dbname", ""))
    admin = psycopg.conninfo.make_conninfo(dsn, dbname="postgres")
    with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone()
        if not exists:
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):  # created meanwhile by a concurrent run
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
