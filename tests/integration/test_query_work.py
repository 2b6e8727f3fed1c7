"""What migrations 010 and 011 and the writer's row order change for queries of ``readings``
(issue 15), on real PostgreSQL: the leaner view returns exactly the rows of migration 004's
definition (frames stored with series NULL read with their device's layout), partitions
carry no CHECK constraint for the planner to test (their bound still holds), and a batch's
packed rows lie grouped by device.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from admin.migrate import migrate
from common.schema import Channel, Frame, Quality
from common.settings import Settings
from tests.helpers import pg_query
from writer.partitions import ensure_partitions
from writer.pg import connect_pg
from writer.pg_copy import write_frames

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
MIGRATIONS = Path(__file__).resolve().parents[2] / "writer" / "migrations"


_SERIES_SPELLED_OUT = (
    "(SELECT f.observed_at, f.received_at, f.seq, f.device_id, f.producer_id, f.session_id,"
    " coalesce(f.series, d.layout) AS series, f.num_values, f.text_values, f.qualities"
    " FROM readings_packed f JOIN devices d ON d.id = f.device_id) f"
)
"""readings_packed with every frame's series spelled out: a frame stored with series NULL
(migration 011) has its device's layout."""


def _view_004() -> str:
    """Migration 004's CREATE VIEW readings, renamed readings_004, over readings_packed with the
    series spelled out (``_SERIES_SPELLED_OUT``)."""
    text = (MIGRATIONS / "004_packed_readings.sql").read_text()
    found = re.search(r"CREATE VIEW readings AS.*?;", text, re.S)
    assert found, "004 defines the readings view"
    view = found.group(0).replace("CREATE VIEW readings AS", "CREATE VIEW readings_004 AS")
    assert "FROM readings_packed f\n" in view
    return view.replace("FROM readings_packed f\n", f"FROM {_SERIES_SPELLED_OUT}\n")


def _check_constraints(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    rows = conn.execute(
        "SELECT k.conname FROM pg_inherits i JOIN pg_constraint k ON k.conrelid = i.inhrelid AND k.contype = 'c'"
        " WHERE i.inhparent = 'readings_packed'::regclass ORDER BY 1"
    ).fetchall()
    return [str(r[0]) for r in rows]


@pytest.fixture
def conn(settings: Settings) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with connect_pg(settings.postgres) as c:
        ensure_partitions(c, NOW.date() - timedelta(days=1), NOW.date() + timedelta(days=1))
        yield c


def _frames(seed: int) -> list[Frame]:
    """Frames of four devices (two share a name under different sources), changing channel sets,
    a channel whose unit changes, text values, nulls, every quality, with and without session."""
    rng = random.Random(seed)
    devices = [("obd", "elm-0"), ("simulate", "elm-0"), ("simulate", "sim-1"), ("can", "bus-2")]
    out = []
    for seq in range(1, 120):
        src, dev = rng.choice(devices)
        chans = []
        for name in rng.sample(["rpm", "afr", "vin", "gear", "map", "t"], rng.randint(0, 6)):
            unit = rng.choice(["kPa", "bar"]) if name == "map" else ""
            value: float | str | None = rng.choice([rng.uniform(-1e6, 1e6), None, "txt-" + str(seq)])
            quality = rng.choice(list(Quality)) if value is not None else Quality.NO_DATA
            chans.append(Channel(name, value, unit, quality))
        at = NOW - timedelta(minutes=rng.randint(0, 600), microseconds=rng.randint(0, 999_999))
        out.append(Frame(src, dev, at, NOW, seq, tuple(chans), rng.choice([None, "run-a", "run-b"]), "p/1", seq))
    return out


@pytest.mark.parametrize("seed", range(3))
def test_the_view_returns_the_rows_of_migration_004s_definition(
    settings: Settings, conn: psycopg.Connection[tuple[object, ...]], seed: int
) -> None:
    frames = _frames(seed)
    write_frames(conn, frames)
    conn.execute(_view_004())
    columns = (
        "observed_at, received_at, source, device, channel, value, text_value, unit, quality, session, producer, seq"
    )
    now = pg_query(settings, f"SELECT {columns} FROM readings")
    then = pg_query(settings, f"SELECT {columns} FROM readings_004")
    assert len(now) == sum(len(f.channels) for f in frames)
    assert sorted(now, key=repr) == sorted(then, key=repr)
    stored = pg_query(settings, "SELECT series IS NULL, count(*) FROM readings_packed GROUP BY 1 ORDER BY 1")
    assert {bool(layout) for layout, _ in stored} == {False, True}, stored  # both kinds of frame were compared
    one = frames[0]
    if one.channels:
        ch = one.channels[0]
        got = pg_query(
            settings,
            "SELECT value, text_value, quality FROM readings WHERE source = %s AND device = %s AND channel = %s"
            " AND unit = %s AND seq = %s",
            [one.source, one.device, ch.name, ch.unit, one.seq],
        )
        text = ch.value if isinstance(ch.value, str) else None
        assert got == [(None if text is not None else ch.value, text, ch.quality.value)]


def test_partitions_keep_no_check_constraint_and_their_bound_still_holds(
    conn: psycopg.Connection[tuple[object, ...]],
) -> None:
    assert _check_constraints(conn) == []
    part = "readings_p" + NOW.strftime("%Y%m%d")
    with pytest.raises(psycopg.errors.CheckViolation), conn.transaction():
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (observed_at, received_at, seq, device_id, producer_id, series, num_values)"
                " VALUES (%s, %s, 1, 1, 1, '{{}}', '{{}}')"
            ).format(sql.Identifier(part)),
            [NOW + timedelta(days=2), NOW],
        )


def test_migration_010_drops_the_check_constraints_of_existing_partitions(pg_dsn: str, namespace: str) -> None:
    schema = namespace + "_up"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        try:
            migrate(conn, schema, upto=9)
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            conn.execute("SELECT ensure_partitions(current_date - 1, current_date + 1)")
            assert len(_check_constraints(conn)) == 3  # what 004's ensure_partitions left
            assert migrate(conn, schema, upto=10) == [10]
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            assert _check_constraints(conn) == []
            conn.execute("SELECT ensure_partitions(current_date + 2, current_date + 2)")
            assert _check_constraints(conn) == []
        finally:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def test_a_batchs_rows_lie_grouped_by_device_in_batch_order(
    settings: Settings, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    devices = ["d0", "d1", "d2"]
    frames = [
        Frame("simulate", devices[i % 3], NOW, NOW, i, (Channel("x", float(i), ""),), None, "p/1", i)
        for i in range(1, 31)
    ]
    write_frames(conn, frames)
    rows = pg_query(
        settings,
        "SELECT d.device, f.seq FROM readings_packed f JOIN devices d ON d.id = f.device_id ORDER BY f.ctid",
    )
    runs = [dev for i, (dev, _) in enumerate(rows) if i == 0 or rows[i - 1][0] != dev]
    assert sorted(runs) == devices  # each device's frames side by side
    for dev in devices:
        assert [s for d, s in rows if d == dev] == [f.seq for f in frames if f.device == dev]
