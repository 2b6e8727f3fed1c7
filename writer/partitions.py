"""Daily partitions of ``readings`` and ``frame_keys``: create ahead, drop past retention.

A frame whose day has no partition is rejected by PostgreSQL (SQLSTATE 23514) and
dead-lettered with that reason; an operator can create the partition
(``telemetry-admin partitions create``) and replay it. Dropping is a metadata operation
(DROP TABLE of a whole day) and never blocks ingest for long.
"""

from __future__ import annotations

import logging
import re
from datetime import date, timedelta

import psycopg

logger = logging.getLogger(__name__)

PARTITIONED = ("readings", "frame_keys")
_SUFFIX = re.compile(r"_p(\d{8})$")


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def ensure_partitions(conn: psycopg.Connection[tuple[object, ...]], first: date, last: date) -> int:
    """Create the daily partitions for every day in [first, last]; return how many were new.

    Runs the SECURITY DEFINER function ``ensure_partitions`` (writer/migrations/002_roles.sql):
    only the table owner may attach partitions, and the writer role owns nothing.
    """
    row = conn.execute("SELECT ensure_partitions(%s, %s)", [first, last]).fetchone()
    created = int(row[0]) if row else 0  # type: ignore[call-overload]
    if created:
        logger.info("created %d partitions for %s..%s", created, first, last)
    return created


def list_partitions(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    """Names of the existing daily partitions of the partitioned tables, in this schema."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " JOIN pg_class p ON p.oid = i.inhparent"
        " WHERE p.relname = ANY(%s) AND p.relnamespace = current_schema()::regnamespace",
        [list(PARTITIONED)],
    ).fetchall()
    return [str(r[0]) for r in rows]


def drop_partitions_before(conn: psycopg.Connection[tuple[object, ...]], cutoff: date) -> list[str]:
    """Drop every daily partition whose day is before ``cutoff``; return the names dropped.

    Runs the SECURITY DEFINER function ``drop_partitions_before``, which refuses a cutoff newer
    than ``retention_policy.min_retention_days`` (SQLSTATE 42501).
    """
    row = conn.execute("SELECT drop_partitions_before(%s)", [cutoff]).fetchone()
    dropped = [str(n) for n in row[0]] if row else []  # type: ignore[attr-defined]
    if dropped:
        logger.info("retention: dropped %d partitions older than %s", len(dropped), cutoff)
    return dropped


_LOCK_KEY = 0x7E1E_0002


def maintain(
    conn: psycopg.Connection[tuple[object, ...]],
    today: date,
    retention_days: int,
    ahead_days: int,
    drop: bool = False,
) -> int:
    """Create partitions from the retention horizon to ``ahead_days`` ahead; with ``drop``,
    also drop those past retention.

    One transaction under an advisory lock, so replicas starting together do not race to
    create the same partition ("relation already exists").
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
        made = ensure_partitions(conn, today - timedelta(days=retention_days), today + timedelta(days=ahead_days))
        if drop:
            drop_partitions_before(conn, today - timedelta(days=retention_days))
    return made
