"""Daily partitions of ``readings_packed`` (named readings_pYYYYMMDD): create them ahead and
back to the retention horizon, in bounded chunks; drop expired ones and prune the ledger (used by writer/retention.py).

A frame whose day has no partition is rejected by PostgreSQL (SQLSTATE 23514) and
dead-lettered with that reason; an operator can create the partition
(``telemetry-admin partitions create``) and replay it. Every call here is a short
transaction of its own with a short ``lock_timeout``: a partition is attached (SHARE UPDATE
EXCLUSIVE, which never blocks inserts), and a DROP that would queue behind a long query gives
up within UPKEEP_LOCK_TIMEOUT_MS and is retried on the next pass. Deciding *what* may be
dropped is writer/retention.py's job.
"""

from __future__ import annotations

import logging
import re
from datetime import date, datetime, timedelta

import psycopg

logger = logging.getLogger(__name__)

PARTITIONED = ("readings_packed",)
"""Partitioned tables (their daily partitions keep the names readings_pYYYYMMDD, migration 004)."""
_SUFFIX = re.compile(r"_p(\d{8})$")


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


UPKEEP_LOCK_TIMEOUT_MS = 500
"""Longest an upkeep statement waits for a lock; inserts queued behind it wait no longer."""
CHUNK_DAYS = 10
"""Partitions created per transaction: ~1,100 days at once ran out of lock table memory."""


def ensure_partitions(
    conn: psycopg.Connection[tuple[object, ...]], first: date, last: date, short_lock_timeout: bool = True
) -> int:
    """Create the daily partitions for every day in [first, last]; return how many were new.

    Runs the SECURITY DEFINER function ``ensure_partitions`` (writer/migrations/003): only the
    table owner may attach partitions, and the writer role owns nothing. One transaction per
    CHUNK_DAYS days, each with a short lock_timeout unless ``short_lock_timeout`` is False (a
    lane that cannot commit without today's partition waits its session's lock_timeout).
    """
    created = 0
    day = first
    while day <= last:
        end = min(last, day + timedelta(days=CHUNK_DAYS - 1))
        with conn.transaction():
            if short_lock_timeout:
                _short_lock_timeout(conn)
            row = conn.execute("SELECT ensure_partitions(%s, %s)", [day, end]).fetchone()
        created += int(row[0]) if row else 0  # type: ignore[call-overload]
        day = end + timedelta(days=1)
    if created:
        logger.info("created %d partitions for %s..%s", created, first, last)
    return created


def has_partition(conn: psycopg.Connection[tuple[object, ...]], day: date) -> bool:
    """True if readings has the partition of ``day`` (a catalog lookup, no lock)."""
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [partition_name("readings", day)]).fetchone()
    return bool(row and row[0])


def list_partitions(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    """Names of the existing daily partitions of the partitioned tables, in this schema."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " JOIN pg_class p ON p.oid = i.inhparent"
        " WHERE p.relname = ANY(%s) AND p.relnamespace = current_schema()::regnamespace",
        [list(PARTITIONED)],
    ).fetchall()
    return [str(r[0]) for r in rows]


def partition_days(conn: psycopg.Connection[tuple[object, ...]]) -> list[date]:
    """The days of readings' daily partitions, oldest first."""
    days = []
    for name in list_partitions(conn):
        m = _SUFFIX.search(name)
        if m and name.startswith("readings_"):
            days.append(datetime.strptime(m.group(1), "%Y%m%d").date())
    return sorted(days)


def drop_expired_partitions(conn: psycopg.Connection[tuple[object, ...]], cutoff: date, max_days: int) -> list[str]:
    """Drop at most ``max_days`` of the oldest readings partitions before ``cutoff``, one a
    transaction; return the names dropped.

    The SECURITY DEFINER function clamps ``cutoff`` to ``retention_policy.min_retention_days``
    (a warning, never an error). A partition whose lock is not granted within
    UPKEEP_LOCK_TIMEOUT_MS (a long query reads it) stops this call: 55P03 is raised and the
    next pass tries again.
    """
    dropped: list[str] = []
    for _ in range(max_days):
        with conn.transaction():
            _short_lock_timeout(conn)
            row = conn.execute("SELECT drop_expired_partitions(%s, 1)", [cutoff]).fetchone()
        names = [str(n) for n in row[0]] if row else []  # type: ignore[attr-defined]
        if not names:
            break
        dropped.extend(names)
    if dropped:
        logger.info("retention: dropped %d partitions older than %s: %s", len(dropped), cutoff, ", ".join(dropped))
    return dropped


PRUNE_CHUNK_ROWS = 10_000
"""Ledger rows deleted per transaction."""


def prune_ledger(conn: psycopg.Connection[tuple[object, ...]], cutoff: date, max_rows: int) -> int:
    """Delete ledger rows of days before ``cutoff`` (clamped like the drops), at most
    ``max_rows``, PRUNE_CHUNK_ROWS a transaction; return how many."""
    total = 0
    while total < max_rows:
        with conn.transaction():
            _short_lock_timeout(conn)
            row = conn.execute(
                "SELECT prune_frame_keys(%s, %s)", [cutoff, min(PRUNE_CHUNK_ROWS, max_rows - total)]
            ).fetchone()
        n = int(row[0]) if row else 0  # type: ignore[call-overload]
        total += n
        if n < PRUNE_CHUNK_ROWS:
            break
    if total:
        logger.info("retention: pruned %d ledger keys older than %s", total, cutoff)
    return total


def maintain(conn: psycopg.Connection[tuple[object, ...]], today: date, retention_days: int, ahead_days: int) -> int:
    """Create the partitions from the retention horizon to ``ahead_days`` ahead of ``today``
    (nearest first, so today's exists as soon as possible); return how many were new.

    Only the missing days are asked for; drops are writer/retention.py's job.
    """
    have = set(partition_days(conn))
    ahead = [today + timedelta(days=d) for d in range(ahead_days + 1)]
    back = [today - timedelta(days=d) for d in range(1, retention_days + 1)]
    made = 0
    for lo, hi in _runs([d for d in ahead if d not in have]):
        made += ensure_partitions(conn, lo, hi)
    for lo, hi in reversed(_runs([d for d in back if d not in have])):
        made += ensure_partitions(conn, lo, hi)
    return made


def _runs(days: list[date]) -> list[tuple[date, date]]:
    """Consecutive days grouped into (first, last) ranges."""
    out: list[tuple[date, date]] = []
    for d in sorted(days):
        if out and d == out[-1][1] + timedelta(days=1):
            out[-1] = (out[-1][0], d)
        else:
            out.append((d, d))
    return out


def _short_lock_timeout(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    conn.execute(f"SET LOCAL lock_timeout = {UPKEEP_LOCK_TIMEOUT_MS}")
