"""Daily partitions of ``readings`` and ``frame_keys``: create ahead, drop past retention.

A frame whose day has no partition is rejected by PostgreSQL (SQLSTATE 23514) and
dead-lettered with that reason; an operator can create the partition
(``telemetry-admin partitions create``) and replay it. Dropping is a metadata operation
(DROP TABLE of a whole day) and never blocks ingest for long.
"""

from __future__ import annotations

import logging
import re
from datetime import date, datetime, timedelta

import psycopg
from psycopg import sql

logger = logging.getLogger(__name__)

PARTITIONED = ("readings", "frame_keys")
_SUFFIX = re.compile(r"_p(\d{8})$")


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def ensure_partitions(conn: psycopg.Connection[tuple[object, ...]], first: date, last: date) -> int:
    """Create the daily partitions for every day in [first, last]; return how many were new."""
    existing = set(list_partitions(conn))
    created = 0
    day = first
    while day <= last:
        for table in PARTITIONED:
            name = partition_name(table, day)
            if name in existing:
                continue
            lo = datetime(day.year, day.month, day.day).isoformat() + "+00"
            hi_day = day + timedelta(days=1)
            hi = datetime(hi_day.year, hi_day.month, hi_day.day).isoformat() + "+00"
            conn.execute(
                sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
                    sql.Identifier(name), sql.Identifier(table), sql.Literal(lo), sql.Literal(hi)
                )
            )
            created += 1
        day += timedelta(days=1)
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
    """Drop every daily partition whose day is before ``cutoff``; return the names dropped."""
    dropped = []
    for name in sorted(list_partitions(conn)):
        match = _SUFFIX.search(name)
        if not match:
            continue
        day = datetime.strptime(match.group(1), "%Y%m%d").date()
        if day < cutoff:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
            dropped.append(name)
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
