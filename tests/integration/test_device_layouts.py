"""Device layouts (migration 011, issue 15), on real PostgreSQL: a frame whose series are its
device's layout is stored with series NULL and read back through the view exactly as written;
a device's layout is the first one proposed and never changes; concurrent proposals agree;
invalid proposals are refused; a schema upgraded from 010 reads its old frames unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from admin.migrate import migrate
from common.schema import Channel, Frame, Quality
from common.settings import Settings
from tests.helpers import pg_query, wait_for
from writer import names
from writer.partitions import ensure_partitions
from writer.pg import connect_pg
from writer.pg_copy import write_frames

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
COLUMNS = "seq, source, device, channel, unit, value, text_value, quality, session"


@pytest.fixture
def conn(settings: Settings) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with connect_pg(settings.postgres) as c:
        ensure_partitions(c, NOW.date() - timedelta(days=1), NOW.date() + timedelta(days=1))
        yield c


def frame(seq: int, chans: list[tuple[str, float | str | None]], device: str = "elm-0", unit: str = "") -> Frame:
    channels = tuple(
        Channel(n, v, unit, Quality.NO_DATA if v is None else Quality.WARN if n == "afr" else Quality.GOOD)
        for n, v in chans
    )
    at = NOW - timedelta(seconds=100 - seq)
    return Frame("obd", device, at, NOW, seq, channels, "run-1" if seq % 2 else None, "p/1", seq)


def expected(frames: list[Frame]) -> list[tuple[Any, ...]]:
    """What the view must say of ``frames``: one row per channel, as the frames said it."""
    rows = []
    for f in frames:
        for c in f.channels:
            text = c.value if isinstance(c.value, str) else None
            rows.append((f.seq, f.source, f.device, c.name, c.unit, None if text else c.value, text,
                         c.quality.value, f.session))  # fmt: skip
    return sorted(rows, key=repr)


def stored(settings: Settings) -> dict[int, bool]:
    """seq -> whether its frame was stored with series NULL."""
    return dict(pg_query(settings, "SELECT seq, series IS NULL FROM readings_packed"))  # type: ignore[arg-type]


def layout_of_device(settings: Settings, device: str) -> list[tuple[str, int | None]]:
    """(channel, slot) of the device's series in its layout's order, then those outside it."""
    return pg_query(  # type: ignore[return-value]
        settings,
        "SELECT s.channel, s.slot FROM series s JOIN devices d ON d.id = s.device_id WHERE d.device = %s"
        " AND s.channel <> '' ORDER BY s.slot NULLS LAST, s.channel",
        [device],
    )


def test_frames_of_the_device_layout_are_stored_without_series_and_read_back_as_written(
    settings: Settings, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    usual = [("rpm", 1.5), ("afr", 14.7), ("vin", "WDB123")]
    frames = [frame(i, usual) for i in range(1, 6)]  # the layout most frames of the batch carry
    frames += [
        frame(6, [("afr", 13.1), ("rpm", 900.0), ("vin", None)]),  # another order
        frame(7, [("rpm", 2.5)]),  # a subset
        frame(8, [("rpm", 3.5), ("afr", 12.0), ("vin", "x"), ("gear", 3.0)]),  # a superset
        frame(9, []),  # no channels
    ]
    write_frames(conn, frames)
    assert layout_of_device(settings, "elm-0") == [("rpm", 1), ("afr", 2), ("vin", 3), ("gear", None)]
    assert stored(settings) == {i: i <= 5 for i in range(1, 10)}
    assert sorted(pg_query(settings, f"SELECT {COLUMNS} FROM readings"), key=repr) == expected(frames)
    # the typical queries see the same
    assert pg_query(
        settings, "SELECT seq, value FROM readings WHERE device = 'elm-0' AND channel = 'afr' ORDER BY seq"
    ) == [(i, 14.7) for i in range(1, 6)] + [(6, 13.1), (8, 12.0)]
    latest = pg_query(
        settings,
        "SELECT DISTINCT ON (channel) channel, seq FROM readings WHERE device = 'elm-0'"
        " ORDER BY channel, observed_at DESC",
    )
    assert latest == [("afr", 8), ("gear", 8), ("rpm", 8), ("vin", 8)]


def test_a_devices_layout_is_the_first_one_and_never_changes(
    settings: Settings, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    first = [frame(1, [("rpm", 1.0), ("afr", 14.0)])]
    write_frames(conn, first)
    with connect_pg(settings.postgres) as other:  # a new connection: nothing cached
        later = [frame(i, [("afr", 13.0), ("rpm", float(i))]) for i in range(2, 6)]  # mostly another layout now
        write_frames(other, later)
    assert layout_of_device(settings, "elm-0") == [("rpm", 1), ("afr", 2)]
    assert stored(settings) == {1: True, 2: False, 3: False, 4: False, 5: False}
    assert sorted(pg_query(settings, f"SELECT {COLUMNS} FROM readings"), key=repr) == expected(first + later)


def test_devices_of_the_same_name_under_other_sources_or_units_keep_their_own_layouts(
    settings: Settings, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    frames = [frame(1, [("map", 1.0), ("rpm", 2.0)], unit="kPa"), frame(2, [("rpm", 3.0), ("map", 4.0)], unit="bar")]
    frames.append(Frame("can", "elm-0", NOW, NOW, 3, (Channel("map", 5.0, "kPa"),), None, "p/1", 3))
    write_frames(conn, frames)
    layouts = pg_query(settings, "SELECT source, cardinality(layout) FROM devices ORDER BY 1")
    assert layouts == [("can", 1), ("obd", 2)]  # obd/elm-0's first layout (map kPa, rpm kPa); its bar frame is not
    assert stored(settings) == {1: True, 2: False, 3: True}
    assert sorted(pg_query(settings, f"SELECT {COLUMNS} FROM readings"), key=repr) == expected(frames)


def _device_and_series(conn: psycopg.Connection[Any]) -> tuple[int, list[int], int]:
    """A device with three series (from a write whose own layout was then removed) and a series of
    another device."""
    write_frames(conn, [frame(1, [("a", 1.0), ("b", 2.0), ("c", 3.0)]), frame(2, [("z", 1.0)], device="other")])
    conn.execute("UPDATE devices SET layout = NULL")  # as the owner: start from devices without a layout
    conn.execute("UPDATE series SET slot = NULL")
    dev = conn.execute("SELECT id FROM devices WHERE device = 'elm-0'").fetchone()[0]  # type: ignore[index]
    ids = [r[0] for r in conn.execute("SELECT id FROM series WHERE device_id = %s ORDER BY channel", [dev])]
    foreign = conn.execute("SELECT s.id FROM series s JOIN devices d ON d.id = s.device_id WHERE d.device = 'other'")
    return int(dev), [int(i) for i in ids], int(foreign.fetchone()[0])  # type: ignore[index]


@pytest.mark.parametrize("case", ["empty", "repeated", "foreign"])
def test_an_invalid_proposal_is_refused(conn: psycopg.Connection[tuple[object, ...]], case: str) -> None:
    dev, ids, foreign = _device_and_series(conn)
    proposal = {"empty": [], "repeated": [ids[0], ids[1], ids[0]], "foreign": [ids[0], foreign]}[case]
    rows = conn.execute("SELECT * FROM device_layouts(%s, %s)", [[dev] * len(proposal), proposal]).fetchall()
    assert rows == ([] if case == "empty" else [(dev, None)])
    assert conn.execute("SELECT layout FROM devices WHERE id = %s", [dev]).fetchone() == (None,)
    assert conn.execute("SELECT count(*) FROM series WHERE slot IS NOT NULL").fetchone() == (0,)
    with pytest.raises(psycopg.errors.RaiseException, match="as many devices as series"):
        conn.execute("SELECT * FROM device_layouts(%s, %s)", [[dev], ids])


def test_concurrent_proposals_agree_on_the_first_committed(
    settings: Settings, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    dev, ids, _ = _device_and_series(conn)
    first, second = ids, ids[::-1]
    got: dict[str, Any] = {}
    with connect_pg(settings.postgres) as a, connect_pg(settings.postgres) as b:
        a.autocommit = False
        a.execute("SELECT * FROM device_layouts(%s, %s)", [[dev] * 3, first])  # holds the device's row lock
        b_pid = b.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]

        def propose() -> None:
            got["b"] = b.execute("SELECT * FROM device_layouts(%s, %s)", [[dev] * 3, second]).fetchall()

        t = threading.Thread(target=propose)
        t.start()
        wait_for(
            lambda: (
                conn.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [b_pid]).fetchone()
                == ("Lock",)
            ),
            what="the second proposal waiting on the first's row lock",
        )
        a.commit()
        t.join(30)
    assert got["b"] == [(dev, first)]
    assert conn.execute("SELECT layout FROM devices WHERE id = %s", [dev]).fetchone() == (first,)
    slots = conn.execute("SELECT id, slot FROM series WHERE device_id = %s ORDER BY slot", [dev]).fetchall()
    assert slots == [(i, n) for n, i in enumerate(first, 1)]


def test_frames_stored_before_migration_011_read_the_same_after_it(
    pg_dsn: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = namespace + "_up11"
    old_frames = [frame(i, [("rpm", float(i)), ("afr", 14.0)]) for i in range(1, 4)]
    new_frames = [frame(i, [("rpm", float(i)), ("afr", 14.0)]) for i in range(4, 7)] + [frame(7, [("afr", 1.0)])]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        try:
            migrate(conn, schema, upto=10)
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            ensure_partitions(conn, NOW.date() - timedelta(days=1), NOW.date() + timedelta(days=1))
            with monkeypatch.context() as m:  # the writer before 011: no layouts, every series written
                m.setattr(names, "_fetch_device_layouts", lambda *_: None)
                write_frames(conn, old_frames)
            before = sorted(conn.execute(f"SELECT {COLUMNS} FROM readings").fetchall(), key=repr)
            assert before == expected(old_frames)
            assert migrate(conn, schema) == [11]
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            assert sorted(conn.execute(f"SELECT {COLUMNS} FROM readings").fetchall(), key=repr) == before
            with psycopg.connect(pg_dsn, autocommit=True, options=f"-c search_path={schema}") as fresh:
                write_frames(fresh, new_frames)
            kinds = dict(conn.execute("SELECT seq, series IS NULL FROM readings_packed").fetchall())
            assert kinds == {1: False, 2: False, 3: False, 4: True, 5: True, 6: True, 7: False}
            got = sorted(conn.execute(f"SELECT {COLUMNS} FROM readings").fetchall(), key=repr)
            assert got == expected(old_frames + new_frames)
        finally:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
