"""gps_nmea end to end: every real capture -> pseudo-terminal -> producer -> Redis -> writer -> PostgreSQL.

The producer reads a real pty (``pty.openpty()``; the test writes the capture bytes into the master,
as fast as the reader takes them), decodes, and publishes through the real run loop. Compared with
gpsd's own decode (``*.log.chk``): every gpsd fix time is a row time in PostgreSQL (exact, to the
microsecond), with the same fix mode, and latitude/longitude within 1e-6 deg. The rejected-line
counts the run loop counted are the unit tests' golden counts. Unplug/replug: the pty behind a fixed
symlink vanishes and a new one appears; the producer reconnects within the backoff cap, loses nothing
it had read, and counts the outage.
"""

from __future__ import annotations

import datetime as dt
import os
import pty
import threading
import time
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from redis import Redis

from common.publish import Publisher, new_producer_id
from common.schema import Channel, Frame, Priority, decode
from common.settings import Settings
from producers.base import ProducerStats
from producers.gps_nmea import GpsNmeaSource, NmeaDecoder
from tests.helpers import count_readings, pg_query, running_producer, running_writer, wait_for
from tests.producers.gps_captures import CAPTURES, MIN_DATE, ORACLE_MODE_EXCEPTIONS, gpsd_fixes, replay_bytes
from tests.producers.test_gps_nmea import EXPECTED

pytestmark = pytest.mark.integration


def open_pty() -> tuple[int, int, str]:
    master, slave = pty.openpty()
    tty.setraw(slave)
    return master, slave, os.ttyname(slave)


def write_all(fd: int, data: bytes) -> threading.Thread:
    """Write ``data`` into a pty master from a thread (it blocks while the reader is behind)."""

    def target() -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view[:1024]) :]

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


@contextmanager
def producing(
    source: GpsNmeaSource, redis: Redis, settings: Settings, reconnect_max: float = 10.0
) -> Iterator[ProducerStats]:
    name = f"gps_nmea@{source.device}"
    with running_producer(source, redis, settings, name, read_timeout=0.05, reconnect_max=reconnect_max) as run:
        yield run.stats


def expected_frames(data: bytes, device: str) -> list[Frame]:
    decoder = NmeaDecoder(device, min_date=MIN_DATE)
    now = dt.datetime.now(dt.UTC)
    return [x for x in decoder.feed(data, now, 0) + decoder.flush() if isinstance(x, Frame)]


def create_partitions(settings: Settings, days: set[dt.date]) -> None:
    """The captures date from 2008-2025: give the writer partitions for those days."""
    from writer.partitions import ensure_partitions

    with psycopg.connect(settings.postgres.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(settings.postgres.schema_name)))
        for day in days:
            ensure_partitions(conn, day - dt.timedelta(days=1), day + dt.timedelta(days=1))


def test_every_capture_through_pty_redis_writer_postgres(settings: Settings, redis: Redis, shared_data: Path) -> None:
    data = {name: replay_bytes(shared_data, name) for name in CAPTURES}
    expected = {name: expected_frames(data[name], name) for name in CAPTURES}
    ptys = {name: open_pty() for name in CAPTURES}
    stats: dict[str, ProducerStats] = {}
    with running_writer(settings) as live, _all_producing(ptys, redis, settings, stats) as sources:
        # The writer's upkeep thread drops partitions older than its retention in its first pass:
        # prime it with one frame of today, and once that pass has run add the capture days,
        # 2008-2025 (its next pass is 10 minutes on). Waiting for a commit is not enough: upkeep
        # runs on its own thread, apart from the commit path.
        now = dt.datetime.now(dt.UTC)
        primer = Publisher(redis, settings.redis.names, new_producer_id("primer"))
        primer.stamp([Frame("simulate", "primer", now, now, 0, (Channel("x", 1.0),))])
        primer.send()
        wait_for(lambda: count_readings(settings) == 1, 10, what="writer connected")
        wait_for(lambda: live.retention_passes >= 1, 30, what="the writer's first retention pass")
        create_partitions(settings, {f.observed_at.date() for frames in expected.values() for f in frames})
        wait_for(lambda: all(s.is_open for s in sources), 5, what="ports open")  # pyserial flushes on open
        writers = [write_all(ptys[name][0], data[name]) for name in CAPTURES]
        want = sum(len(frames) for frames in expected.values())
        count = "SELECT count(DISTINCT (device, observed_at)) FROM readings WHERE source = 'gps_nmea'"
        wait_for(lambda: pg_query(settings, count)[0][0] == want, 30, what=f"{want} GPS frames in PostgreSQL")
        for thread in writers:
            thread.join(5)
    for master, slave, _ in ptys.values():
        os.close(master)
        os.close(slave)
    rows = pg_query(
        settings,
        "SELECT device, observed_at, channel, value FROM readings"
        " WHERE channel IN ('latitude', 'longitude', 'fix_mode')",
    )
    stored: dict[tuple[str, dt.datetime], dict[str, float | None]] = {}
    for device, observed_at, channel, value in rows:
        stored.setdefault((device, observed_at), {})[channel] = value
    for name in CAPTURES:
        _compare_with_gpsd(name, stored, shared_data)
        assert {f.observed_at for f in expected[name]} == {t for d, t in stored if d == name}
        run = stats[name]
        rejected = {k: v for k, v in EXPECTED[name].items() if k not in ("frames", "sentences")}
        assert dict(run.parse_errors) == rejected, name
        assert run.frames_published == EXPECTED[name]["frames"] and run.outages == 0


@contextmanager
def _all_producing(
    ptys: dict[str, tuple[int, int, str]], redis: Redis, settings: Settings, stats: dict[str, ProducerStats]
) -> Iterator[list[GpsNmeaSource]]:
    from contextlib import ExitStack

    sources = []
    with ExitStack() as stack:
        for name, (_, _, path) in ptys.items():
            sources.append(GpsNmeaSource(path, 4800, name, min_date=MIN_DATE, epoch_idle_s=0.2))
            stats[name] = stack.enter_context(producing(sources[-1], redis, settings))
        yield sources


def _compare_with_gpsd(
    name: str, stored: dict[tuple[str, dt.datetime], dict[str, float | None]], shared_data: Path
) -> None:
    """Tolerances: time exact (gpsd prints milliseconds; ours are the receiver's), lat/lon 1e-6 deg, mode equal."""
    fixes = gpsd_fixes(shared_data, name)
    assert fixes or name == "garmin-geko201"  # gpsd gives the Geko's void fixes no time at all
    for when, fix in fixes.items():
        row = stored.get((name, when))
        assert row is not None, f"{name}: gpsd fix at {when} missing from PostgreSQL"
        mode = ORACLE_MODE_EXCEPTIONS.get((name, when.isoformat()), (fix.mode, fix.mode))[0]
        assert row["fix_mode"] == mode, (name, when)
        if fix.mode >= 2:
            assert row["latitude"] == pytest.approx(fix.lat, abs=1e-6), (name, when)
            assert row["longitude"] == pytest.approx(fix.lon, abs=1e-6), (name, when)
        else:
            assert row.get("latitude") is None, (name, when)


def _stream(redis: Redis, settings: Settings) -> list[Frame]:
    return [decode(f) for _id, f in redis.xrange(settings.redis.names.stream(Priority.NORMAL))]  # type: ignore[arg-type]


def test_unplug_and_replug_reconnects_and_loses_nothing(
    settings: Settings, redis: Redis, shared_data: Path, tmp_path: Path
) -> None:
    data = replay_bytes(shared_data, "ublox-neo-m9n-nmea")
    cut = data.index(b"$GNRMC", len(data) // 2)  # an epoch boundary (this receiver starts epochs with RMC)
    part_a, part_b = data[:cut], data[cut:]
    n_a, n_b = len(expected_frames(part_a, "a")), len(expected_frames(part_b, "b"))
    link = tmp_path / "ttyGPS0"  # the fixed path, like socat's link= or a udev symlink
    master, slave, path = open_pty()
    link.symlink_to(path)
    # A long idle timeout: the last epoch before each unplug is only emitted because of the link loss.
    source = GpsNmeaSource(str(link), 4800, "neo", min_date=MIN_DATE, epoch_idle_s=60)
    cap = 1.0
    with producing(source, redis, settings, reconnect_max=cap) as out:
        wait_for(lambda: source.is_open, 5, what="port open")  # pyserial flushes input on open
        write_all(master, part_a).join(10)
        wait_for(lambda: len(_stream(redis, settings)) == n_a - 1, 10, what="part A read")
        os.close(master)  # unplug: the pty vanishes, and so does its symlink (as udev removes /dev/gps0);
        os.close(slave)  # a dangling link could point at another process's pty once its number is reused
        link.unlink()
        wait_for(lambda: len(_stream(redis, settings)) == n_a, 10, what="epoch in progress kept at unplug")
        time.sleep(2 * cap)  # stays unplugged long enough for the backoff to reach its cap
        master, slave, path = open_pty()  # replug: a new pty behind the same path
        link.symlink_to(path)
        replugged = time.monotonic()
        wait_for(lambda: source.is_open, cap + 2, interval=0.01, what="reconnect within the backoff cap")
        reconnect_s = time.monotonic() - replugged
        write_all(master, part_b)
        wait_for(lambda: len(_stream(redis, settings)) == n_a + n_b - 1, 10, what="part B read")
        os.close(master)
        os.close(slave)
        wait_for(lambda: len(_stream(redis, settings)) == n_a + n_b, 10, what="last epoch kept at unplug")
    stats = out
    frames = _stream(redis, settings)
    whole = expected_frames(data, "neo")
    assert [f.observed_at for f in frames] == [f.observed_at for f in whole]
    assert [f.channels for f in frames] == [f.channels for f in whole]
    assert [f.seq for f in frames] == list(range(1, n_a + n_b + 1))
    assert stats.outages == 2 and stats.connects == 2 and stats.open_failures >= 1
    assert reconnect_s < cap + 1.0
