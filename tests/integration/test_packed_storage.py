"""The packed hot store (issue 15, migration 004) on real PostgreSQL: an existing database's rows
come through the upgrade unchanged, the view shows what the writer was given, and replicas
creating the same names at once get the same ids."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from operator import itemgetter

import psycopg
import pytest
from psycopg import sql

from admin.migrate import migrate
from common.schema import Channel, Frame, Quality
from common.settings import Settings
from tests.helpers import pg_query, wait_for
from writer.partitions import ensure_partitions
from writer.pg import connect_pg
from writer.pg_copy import write_frames

pytestmark = pytest.mark.integration

_ALL = "SELECT * FROM readings ORDER BY producer, seq, channel, observed_at"


def _long_row(at: datetime, channel: str, value: float | None, text: str | None, quality: str,
              session: str | None, seq: int) -> list[object]:  # fmt: skip
    return [
        at,
        at + timedelta(milliseconds=5),
        "obd",
        "elm-1",
        channel,
        value,
        text,
        "u",
        quality,
        session,
        "p@b/1",
        seq,
    ]


def test_migration_004_packs_an_existing_database_and_the_view_shows_the_same_rows(pg_dsn: str, namespace: str) -> None:
    schema = namespace
    now = datetime.now(UTC).replace(microsecond=0)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        try:
            assert migrate(conn, schema, upto=3) == [1, 2, 3]
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            conn.execute("SELECT ensure_partitions(%s, %s)", [now.date() - timedelta(days=2), now.date()])
            rows = []
            for seq in range(1, 31):
                at = now - timedelta(days=seq % 3, seconds=seq)
                session = f"run-{seq % 2}" if seq % 5 else None
                rows += [
                    _long_row(at, "rpm", 800.0 + seq, None, "good", session, seq),
                    _long_row(at, "vin", None, f"WP0-{seq}", "good", session, seq),
                    _long_row(at, "afr", None, None, "no_data" if seq % 4 else "error", session, seq),
                    _long_row(at, "map", 99.5, None, "warn", session, seq),
                ]
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO readings VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)", rows)
                # The pre-003 double-store bug: one reading stored twice is packed once.
                cur.execute("INSERT INTO readings VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)", rows[0])
            before = conn.execute(_ALL).fetchall()
            assert migrate(conn, schema)[0] == 4  # and any later migration (005+: the writer needs them)
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            after = conn.execute(_ALL).fetchall()
            assert after == list(dict.fromkeys(before)) and len(after) == 120
            assert conn.execute("SELECT count(*) FROM readings_packed").fetchone() == (30,)
            types = conn.execute(
                "SELECT string_agg(format_type(atttypid, atttypmod), ',' ORDER BY attnum) FROM pg_attribute"
                " WHERE attrelid = 'readings'::regclass AND attnum > 0"
            ).fetchone()
            assert types == (
                "timestamp with time zone,timestamp with time zone,text,text,text,double precision,text,text,text,"
                "text,text,bigint",
            )
            # The writer goes on where the old rows left off: same names, same ids.
            new = Frame("obd", "elm-1", now, now, 0, (Channel("rpm", 900.0, "u"),), "run-1", "p@b/2", 1)
            assert write_frames(conn, [new]).frames == 1
            assert conn.execute("SELECT count(DISTINCT device_id) FROM readings_packed").fetchone() == (1,)
            assert conn.execute("SELECT count(*) FROM series WHERE channel = 'rpm'").fetchone() == (1,)
        finally:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def test_the_view_shows_exactly_what_the_writer_was_given(settings: Settings) -> None:
    now = datetime.now(UTC)
    chans = (
        Channel("rpm", 1234.5, "rpm"),
        Channel("dtc", "P0301", "", Quality.WARN),
        Channel("afr", None, "afr", Quality.NO_DATA),
        Channel("fault", None, "", Quality.ERROR),
    )
    frames = [
        Frame("obd", "elm-1", now, now + timedelta(milliseconds=2), 0, chans, "s-1", "p@b/1", 1),
        Frame("obd", "elm-1", now + timedelta(seconds=1), now, 0, chans[:1], None, "p@b/1", 2),
        Frame("obd", "elm-2", now, now, 0, chans[1:2], None, "p@b/9", 7),
    ]
    with connect_pg(settings.postgres) as conn:
        ensure_partitions(conn, now.date(), (now + timedelta(seconds=1)).date())
        assert write_frames(conn, frames).frames == 3
    key = itemgetter(10, 11, 4)  # producer, seq, channel
    expected = sorted(
        ((f.observed_at, f.received_at, f.source, f.device, c.name,
         c.value if not isinstance(c.value, str) else None, c.value if isinstance(c.value, str) else None,
         c.unit, c.quality.value, f.session, f.producer, f.seq)
        for f in frames for c in f.channels), key=key,
    )  # fmt: skip
    assert sorted(pg_query(settings, "SELECT * FROM readings"), key=key) == expected


def test_replicas_creating_the_same_names_at_once_get_the_same_ids(settings: Settings) -> None:
    """The second replica waits for the first's insert, then reads its ids (no error, no twin)."""
    names = [["obd"], ["new-dev"], ["rpm"], ["rpm"]]
    first = connect_pg(settings.postgres, autocommit=False)
    second = connect_pg(settings.postgres)
    got: list[object] = []
    try:
        ids_a = first.execute("SELECT * FROM series_ids(%s, %s, %s, %s)", names).fetchall()
        pid = second.info.backend_pid
        t = threading.Thread(
            target=lambda: got.append(second.execute("SELECT * FROM series_ids(%s, %s, %s, %s)", names).fetchall())
        )
        t.start()
        wait_for(
            lambda: (
                pg_query(settings, "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid]) == [("Lock",)]
            ),
            10,
            what="the second replica waiting on the first's uncommitted names",
        )
        first.commit()
        t.join(10)
        assert got == [ids_a]
        assert pg_query(settings, "SELECT count(*) FROM devices WHERE device = 'new-dev'") == [(1,)]
    finally:
        first.close()
        second.close()
