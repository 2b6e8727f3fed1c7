"""Producer progress as plain data: sequence gaps and activity, from ``producer_progress``.

``max_seq - frames`` is the number of a producer's frames not committed: lost on the way
(Redis lost data, a spool dropped them), dead-lettered, or still in flight in another
writer's batch. Read-only queries; used by the writer's metrics collector and
``telemetry-admin status``. Per-producer detail is only ever a top-N list, never a label.
"""

from __future__ import annotations

from typing import Any

import psycopg

ACTIVE_S = 60
"""A producer whose frames were committed within this many seconds counts as active."""

_BY_SOURCE = (
    "SELECT source, count(*), coalesce(sum(max_seq - frames), 0),"
    " count(*) FILTER (WHERE max_seq > frames),"
    " count(*) FILTER (WHERE last_seen > now() - make_interval(secs => %s)),"
    " coalesce(sum(frames), 0)"
    " FROM producer_progress GROUP BY source ORDER BY source"
)
_COLUMNS = (
    "producer, source, frames, max_seq, max_seq - frames AS missing, last_seen,"
    " extract(epoch FROM now() - last_seen)::float8 AS age_s"
)
_RECENT = f"SELECT {_COLUMNS} FROM producer_progress ORDER BY last_seen DESC LIMIT %s"
_GAPS = f"SELECT {_COLUMNS} FROM producer_progress WHERE max_seq > frames ORDER BY missing DESC, producer LIMIT %s"


def progress_by_source(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Per source: producers, missing frames, producers with gaps, active producers, frames committed."""
    rows = conn.execute(_BY_SOURCE, [ACTIVE_S]).fetchall()
    return [
        {
            "source": r[0],
            "producers": int(r[1]),
            "missing": int(r[2]),
            "with_gaps": int(r[3]),
            "active": int(r[4]),
            "frames": int(r[5]),
        }
        for r in rows
    ]


def _producer_rows(conn: psycopg.Connection[Any], query: str, top: int) -> list[dict[str, Any]]:
    rows = conn.execute(query, [top]).fetchall()
    return [
        {
            "producer": r[0],
            "source": r[1],
            "frames": int(r[2]),
            "max_seq": int(r[3]),
            "missing": int(r[4]),
            "last_seen": r[5].isoformat(),
            "age_s": round(float(r[6]), 3),
        }
        for r in rows
    ]


def recent_producers(conn: psycopg.Connection[Any], top: int = 10) -> list[dict[str, Any]]:
    """The ``top`` producers most recently committed."""
    return _producer_rows(conn, _RECENT, top)


def top_gaps(conn: psycopg.Connection[Any], top: int = 10) -> list[dict[str, Any]]:
    """The ``top`` producers with the most missing frames."""
    return _producer_rows(conn, _GAPS, top)
