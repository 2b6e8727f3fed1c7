"""Storage figures of issue 15: bytes, WAL and query p50s, long layout (migration 003) vs packed (004).

The same frames (spread over the last 12 hours, one session per device and hour) go into a
schema at migration 003 by the yardstick's raw binary COPY of long rows (plus their ledger
keys and current state, as the old writer left them), and into a schema at the newest
migration through the writer's own ``write_frames``. Then VACUUM ANALYZE, sizes of every
table and index (partitions summed into their parent), WAL bytes of the load, and the p50 of
the typical queries on both. Used by bench/pipeline_bench.py; a benchmark, not a test.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from bench.procstat import cpu_seconds
from common.schema import Frame
from writer.pg_copy import write_frames

QUERIES = {
    "one channel of one device, last hour": (
        "SELECT observed_at, value FROM readings WHERE device = %(device)s AND channel = %(channel)s"
        " AND observed_at > %(since)s ORDER BY observed_at"
    ),
    "all readings of one session": "SELECT * FROM readings WHERE session = %(session)s",
    "current state of one device (current_state)": "SELECT * FROM current_state WHERE device = %(device)s",
    "current state of one device (latest in readings)": (
        "SELECT DISTINCT ON (channel) channel, observed_at, value, text_value, quality FROM readings"
        " WHERE device = %(device)s AND observed_at > %(since)s ORDER BY channel, observed_at DESC"
    ),
}
"""The typical queries, the same SQL on both layouts (readings is a view over the packed table)."""

_SIZES = (
    "SELECT coalesce(p.relname, c.relname), c.relkind = 'i', sum(pg_table_size(c.oid))::bigint"
    " FROM pg_class c LEFT JOIN pg_inherits i ON i.inhrelid = c.oid LEFT JOIN pg_class p ON p.oid = i.inhparent"
    " WHERE c.relnamespace = %s::regnamespace AND c.relkind IN ('r', 'i') GROUP BY 1, 2 ORDER BY 3 DESC"
)


@dataclass
class Layout:
    name: str
    readings: int = 0
    sizes: list[tuple[str, bool, int]] = field(default_factory=list)
    """(table or index, is_index, bytes), partitions summed into their parent."""
    wal_bytes: int = 0
    load_s: float = 0.0
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    p50_ms: dict[str, float] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(s for _, _, s in self.sizes)

    def per_reading(self, nbytes: float) -> float:
        return nbytes / max(1, self.readings)


def spread(frames: Sequence[Frame], hours: float = 12.0, end: datetime | None = None) -> list[Frame]:
    """The frames observed over the ``hours`` before ``end`` (default: now), in order, per
    device, with a session per device and hour. Where ``end`` falls in its UTC day decides how
    the data split between daily partitions, and so the plans of the long layout's queries."""
    end = end or datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    step = timedelta(seconds=hours * 3600 / max(1, len(frames)))
    out = []
    for i, f in enumerate(frames):
        at = end - step * (len(frames) - 1 - i)
        out.append(replace(f, observed_at=at, received_at=at, session=f"run-{f.device}-{at:%H}"))
    return out


def _connect(dsn: str, schema: str) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, autocommit=True, options=f"-c search_path={schema}")


def _wal(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint").fetchone()
    return int(row[0]) if row else 0


def _measure(
    conn: psycopg.Connection[Any], layout: Layout, load: Callable[[], None], backend: int, client_pid: int
) -> None:
    wal0, c0, s0, t0 = _wal(conn), cpu_seconds(client_pid), cpu_seconds(backend), time.perf_counter()
    load()
    layout.load_s = time.perf_counter() - t0
    layout.client_cpu_s = cpu_seconds(client_pid) - c0
    layout.server_cpu_s = cpu_seconds(backend) - s0
    layout.wal_bytes = _wal(conn) - wal0


def vacuum(conn: psycopg.Connection[Any], schema: str) -> None:
    """VACUUM ANALYZE this schema's tables only (a bare VACUUM would do the whole shared database)."""
    tables = conn.execute(
        "SELECT c.relname FROM pg_class c WHERE c.relnamespace = %s::regnamespace AND c.relkind IN ('r', 'p')"
        " AND NOT c.relispartition",
        [schema],
    ).fetchall()
    for (name,) in tables:
        conn.execute(sql.SQL("VACUUM ANALYZE {}.{}").format(sql.Identifier(schema), sql.Identifier(name)))


def settle(conn: psycopg.Connection[Any], layout: Layout, schema: str) -> None:
    """VACUUM ANALYZE, then sizes and the readings count."""
    vacuum(conn, schema)
    layout.sizes = [(str(n), bool(i), int(s)) for n, i, s in conn.execute(_SIZES, [schema]).fetchall()]
    layout.readings = int(conn.execute("SELECT count(*) FROM readings").fetchone()[0])  # type: ignore[index]


def time_queries(layouts: Sequence[tuple[psycopg.Connection[Any], Layout]], params: dict[str, Any], runs: int) -> None:
    """p50 of every query on every layout, the layouts taking turns (a shared machine's load
    then weighs on both alike); three warm-up runs each."""
    for name, query in QUERIES.items():
        times: dict[str, list[float]] = {lay.name: [] for _, lay in layouts}
        for k in range(runs + 3):
            for conn, lay in layouts:
                t = time.perf_counter()
                lay.rows[name] = len(conn.execute(query, params).fetchall())
                if k >= 3:
                    times[lay.name].append(time.perf_counter() - t)
        for _, lay in layouts:
            lay.p50_ms[name] = 1000 * statistics.median(times[lay.name])


def load_long(
    conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]], copy_sql: str, types: list[str], client_pid: int
) -> Layout:
    """The yardstick's raw COPY of long rows, then the ledger keys the old writer added."""
    layout = Layout("long (migration 003)")
    backend = int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]

    def load() -> None:
        for i in range(0, len(rows), 20_000):
            with conn.transaction(), conn.cursor() as cur, cur.copy(copy_sql) as cp:
                cp.set_types(types)
                for r in rows[i : i + 20_000]:
                    cp.write_row(r)
        conn.execute(
            "INSERT INTO frame_keys (producer, seq, day, digest) SELECT DISTINCT producer, seq,"
            " (observed_at AT TIME ZONE 'UTC')::date, hashtextextended(producer || seq, 0) FROM readings"
        )

    _measure(conn, layout, load, backend, client_pid)
    conn.execute(
        "INSERT INTO current_state (source, device, channel, observed_at, value, text_value, unit, quality, session)"
        " SELECT DISTINCT ON (source, device, channel) source, device, channel, observed_at, value, text_value,"
        " unit, quality, session FROM readings ORDER BY source, device, channel, observed_at DESC"
    )
    return layout


def load_packed(conn: psycopg.Connection[Any], frames: Sequence[Frame], client_pid: int, batch: int = 2000) -> Layout:
    """The writer's own write path (ledger, packed COPY, current_state, progress) in batches."""
    layout = Layout("packed (migration 004)")
    backend = int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]

    def load() -> None:
        for i in range(0, len(frames), batch):
            write_frames(conn, frames[i : i + batch])

    _measure(conn, layout, load, backend, client_pid)
    return layout


def narrow_alternative(conn: psycopg.Connection[Any], schema: str) -> int:
    """Bytes of the alternative measured against the packed rows, built from them: one narrow
    row per reading (series int4, quality int2, observed_at, frame int8, value) with a btree on
    (series, observed_at), plus a per-frame table (frame id, received_at, seq, device, producer,
    session) with its primary key. The ledger, the same in both, is not included."""
    conn.execute(
        "CREATE TABLE alt_frames AS SELECT row_number() OVER ()::int8 AS id, observed_at, received_at, seq,"
        " device_id, producer_id, session_id, series, num_values, qualities FROM readings_packed"
    )
    conn.execute(
        "CREATE TABLE alt_narrow AS SELECT r.series_id AS series, coalesce(r.q, 0)::int2 AS quality,"
        " f.observed_at, f.id AS frame, r.value FROM alt_frames f"
        " CROSS JOIN LATERAL unnest(f.series, f.num_values, f.qualities) AS r (series_id, value, q)"
    )
    conn.execute("ALTER TABLE alt_frames DROP COLUMN series, DROP COLUMN num_values, DROP COLUMN qualities")
    conn.execute("VACUUM FULL alt_frames")  # the dropped columns' space
    conn.execute("ALTER TABLE alt_frames ADD PRIMARY KEY (id)")
    conn.execute("CREATE INDEX ON alt_narrow (series, observed_at)")
    for t in ("alt_narrow", "alt_frames"):
        conn.execute(sql.SQL("VACUUM ANALYZE {}.{}").format(sql.Identifier(schema), sql.Identifier(t)))
    row = conn.execute(
        "SELECT sum(pg_total_relation_size(c.oid))::bigint FROM pg_class c"
        " WHERE c.relname IN ('alt_narrow', 'alt_frames') AND c.relnamespace = %s::regnamespace",
        [schema],
    ).fetchone()
    for t in ("alt_narrow", "alt_frames"):
        conn.execute(sql.SQL("DROP TABLE {}.{}").format(sql.Identifier(schema), sql.Identifier(t)))
    return int(row[0]) if row and row[0] is not None else 0
