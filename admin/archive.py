"""The cold tier (issue 15): a day of readings to one Parquet file (zstd), and back.

``export_day`` writes the day's readings (the ``readings`` view's columns, sorted by source,
device, channel and time) to ``readings_YYYYMMDD.parquet`` in the archive directory: a
temporary file, fsynced, renamed, the directory fsynced, then read back in full; the day's
partition is dropped only if the file holds exactly the rows PostgreSQL has for that day,
counted again under a lock that stops new rows for the day meanwhile. A day whose file already
exists (archived, then restored, or late data since) is merged with it, without duplicates.
``restore_day`` puts a day back into ``readings_packed``. Readable as they are by DuckDB,
pandas and polars (plain Parquet types; timestamps in UTC microseconds). Runs as the tables'
owner (``telemetry-admin archive``); pyarrow is the optional extra ``archive``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
from psycopg import sql

from common.durable import fsync_path
from writer.partitions import ensure_partitions, partition_name

logger = logging.getLogger(__name__)

COLUMNS = (
    "observed_at", "received_at", "source", "device", "channel", "value", "text_value", "unit", "quality",
    "session", "producer", "seq",
)  # fmt: skip
_TS = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema(
    [
        ("observed_at", _TS), ("received_at", _TS), ("source", pa.string()), ("device", pa.string()),
        ("channel", pa.string()), ("value", pa.float64()), ("text_value", pa.string()), ("unit", pa.string()),
        ("quality", pa.string()), ("session", pa.string()), ("producer", pa.string()), ("seq", pa.int64()),
    ]
)  # fmt: skip
_DICTIONARY = ["source", "device", "channel", "unit", "quality", "session", "producer", "text_value"]
_ENCODING = {
    "observed_at": "DELTA_BINARY_PACKED",  # sorted per series: deltas of a few bits
    "received_at": "DELTA_BINARY_PACKED",
    "seq": "DELTA_BINARY_PACKED",
    "value": "BYTE_STREAM_SPLIT",  # exponent bytes together: zstd finds them
}
CHUNK_ROWS = 500_000
"""Rows fetched from PostgreSQL and written as one row group at a time."""

_SELECT = sql.SQL(
    "SELECT {} FROM readings WHERE observed_at >= %s AND observed_at < %s ORDER BY source, device, channel, observed_at"
).format(sql.SQL(", ").join(map(sql.Identifier, COLUMNS)))


class ArchiveError(Exception):
    """A day could not be archived or restored safely; nothing was dropped or written."""


def archive_path(directory: Path, day: date) -> Path:
    return directory / f"readings_{day:%Y%m%d}.parquet"


def _bounds(day: date) -> tuple[datetime, datetime]:
    lo = datetime.combine(day, time.min, UTC)
    return lo, lo + timedelta(days=1)


def hot_rows(conn: psycopg.Connection[Any], day: date) -> int:
    row = conn.execute("SELECT count(*) FROM readings WHERE observed_at >= %s AND observed_at < %s", _bounds(day))
    return int(row.fetchone()[0])  # type: ignore[index]


def file_rows(path: Path) -> int:
    """Rows in a Parquet file, counted by reading every column of every row group."""
    return sum(batch.num_rows for batch in pq.ParquetFile(path).iter_batches(batch_size=CHUNK_ROWS))


def _chunks(conn: psycopg.Connection[Any], day: date) -> Iterator[pa.Table]:
    with conn.transaction(), conn.cursor(name="archive_export") as cur:
        cur.itersize = CHUNK_ROWS
        cur.execute(_SELECT, _bounds(day))
        while rows := cur.fetchmany(CHUNK_ROWS):
            cols = list(zip(*rows, strict=True))
            yield pa.table([pa.array(c, type=f.type) for c, f in zip(cols, SCHEMA, strict=True)], schema=SCHEMA)


def _write(tables: Iterator[pa.Table], path: Path) -> int:
    """Write ``tables`` to ``path`` atomically and durably; return the rows written."""
    tmp = path.with_name(f".{path.name}.tmp")
    written = 0
    with pq.ParquetWriter(
        tmp, SCHEMA, compression="zstd", compression_level=9, use_dictionary=_DICTIONARY, column_encoding=_ENCODING
    ) as out:
        for table in tables:
            out.write_table(table, row_group_size=CHUNK_ROWS)
            written += table.num_rows
    fsync_path(tmp)
    tmp.replace(path)
    fsync_path(path.parent)
    return written


def _merged(existing: Path, new: Iterator[pa.Table]) -> Iterator[pa.Table]:
    """The rows of ``existing`` and ``new`` without repeats (a restored day, late data)."""
    table = pa.concat_tables([pq.read_table(existing, schema=SCHEMA), *new])
    seen: set[tuple[Any, ...]] = set()
    keep = []
    keys = zip(*(table.column(c).to_pylist() for c in ("producer", "seq", "channel", "observed_at")), strict=True)
    for i, key in enumerate(keys):
        if key not in seen:
            seen.add(key)
            keep.append(i)
    merged = table.take(keep)
    yield merged.sort_by([("source", "ascending"), ("device", "ascending"), ("channel", "ascending"),
                          ("observed_at", "ascending")])  # fmt: skip


def export_day(conn: psycopg.Connection[Any], day: date, directory: Path, drop: bool = True) -> tuple[Path, int]:
    """Archive ``day``; with ``drop``, then drop its partition (only if the file is verified).

    Returns the file and its rows. Raises ArchiveError (nothing dropped) when the file does not
    hold every row PostgreSQL has for the day.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = archive_path(directory, day)
    hot = hot_rows(conn, day)
    if path.exists() and hot:
        written = _write(_merged(path, _chunks(conn, day)), path)  # restored, or late data
    elif hot or not path.exists():
        written = _write(_chunks(conn, day), path)
    else:
        written = file_rows(path)  # archived before; nothing hot
    if file_rows(path) != written or written < hot:
        raise ArchiveError(f"{path}: read back {file_rows(path)} rows, wrote {written}, PostgreSQL has {hot}")
    if drop:
        _drop_verified(conn, day, path, hot)
    logger.info("archive: %s -> %s (%d readings%s)", day, path, written, ", partition dropped" if drop else "")
    return path, written


def _drop_verified(conn: psycopg.Connection[Any], day: date, path: Path, exported: int) -> None:
    """Drop the day's partition if it still holds exactly the ``exported`` rows, in one
    transaction that first locks it against new rows (SHARE: inserts wait; readers go on)."""
    part = partition_name("readings", day)
    with conn.transaction():
        if conn.execute("SELECT to_regclass(%s)", [part]).fetchone() == (None,):
            return
        conn.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(sql.Identifier(part)))
        hot = hot_rows(conn, day)
        if hot != exported:
            raise ArchiveError(
                f"{day}: {hot} readings in PostgreSQL now, {exported} when {path} was written; nothing dropped"
            )
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(part)))


def due_days(conn: psycopg.Connection[Any], today: date, hot_days: int) -> list[date]:
    """Days older than the hot horizon that still have readings in PostgreSQL, oldest first."""
    rows = conn.execute(
        "SELECT DISTINCT (observed_at AT TIME ZONE 'UTC')::date FROM readings_packed WHERE observed_at < %s ORDER BY 1",
        [datetime.combine(today - timedelta(days=hot_days), time.min, UTC)],
    ).fetchall()
    return [r[0] for r in rows]


_RESTORE_TABLE = (
    "CREATE TEMP TABLE restore_rows (observed_at timestamptz, received_at timestamptz, source text, device text,"
    " channel text, value float8, text_value text, unit text, quality text, session text, producer text, seq int8)"
    " ON COMMIT DROP"
)
_PACK = (
    "INSERT INTO devices (source, device) SELECT DISTINCT source, device FROM restore_rows ORDER BY 1, 2"
    " ON CONFLICT DO NOTHING",
    "INSERT INTO series (device_id, source, device, channel, unit) SELECT DISTINCT d.id, d.source, d.device,"
    " r.channel, r.unit FROM restore_rows r JOIN devices d USING (source, device) ORDER BY 1, 4, 5"
    " ON CONFLICT DO NOTHING",
    "INSERT INTO producers (producer) SELECT DISTINCT producer FROM restore_rows ORDER BY 1 ON CONFLICT DO NOTHING",
    "INSERT INTO sessions (session) SELECT DISTINCT session FROM restore_rows WHERE session IS NOT NULL ORDER BY 1"
    " ON CONFLICT DO NOTHING",
    "INSERT INTO readings_packed (observed_at, received_at, seq, device_id, producer_id, session_id, series,"
    " num_values, text_values, qualities)"
    " SELECT r.observed_at, r.received_at, r.seq, d.id, p.id, ss.id, array_agg(se.id ORDER BY r.channel, se.id),"
    " array_agg(r.value ORDER BY r.channel, se.id),"
    " CASE WHEN bool_or(r.text_value IS NOT NULL) THEN array_agg(r.text_value ORDER BY r.channel, se.id) END,"
    " CASE WHEN bool_or(r.quality <> 'good') THEN array_agg((array_position(ARRAY['good', 'warn', 'no_data',"
    " 'error'], r.quality) - 1)::int2 ORDER BY r.channel, se.id) END"
    " FROM restore_rows r JOIN devices d USING (source, device)"
    " JOIN series se ON se.device_id = d.id AND se.channel = r.channel AND se.unit = r.unit"
    " JOIN producers p ON p.producer = r.producer LEFT JOIN sessions ss ON ss.session = r.session"
    " GROUP BY r.observed_at, r.received_at, r.seq, d.id, p.id, ss.id",
)
"""Names first (as the owner, so directly), then one packed row per frame, as migration 004."""


def restore_day(conn: psycopg.Connection[Any], day: date, directory: Path) -> int:
    """Put an archived day back into PostgreSQL (one transaction); return the readings restored.

    Refuses a day that has readings in PostgreSQL (they would be repeated). The ledger,
    current_state and producer_progress are not touched: these are old frames, not new ones.
    """
    path = archive_path(directory, day)
    if not path.exists():
        raise ArchiveError(f"no archive file {path}")
    if hot_rows(conn, day):
        raise ArchiveError(f"{day} has readings in PostgreSQL; restore only puts back a day that was dropped")
    ensure_partitions(conn, day, day)
    restored = 0
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(_RESTORE_TABLE)
        with cur.copy("COPY restore_rows FROM STDIN") as copy:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=CHUNK_ROWS, columns=list(COLUMNS)):
                for row in zip(*(batch.column(c).to_pylist() for c in COLUMNS), strict=True):
                    copy.write_row(row)
                restored += batch.num_rows
        for statement in _PACK:
            cur.execute(statement)
    logger.info("archive: restored %d readings of %s from %s", restored, day, path)
    return restored


def list_archive(directory: Path) -> list[tuple[date, Path, int, int]]:
    """(day, file, readings, bytes) of every archive file, oldest first."""
    out = []
    for path in sorted(directory.glob("readings_*.parquet")):
        try:
            day = datetime.strptime(path.stem.removeprefix("readings_"), "%Y%m%d").date()
        except ValueError:
            continue
        out.append((day, path, pq.ParquetFile(path).metadata.num_rows, path.stat().st_size))
    return out
