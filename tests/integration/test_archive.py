"""The cold tier on real PostgreSQL: a day exported to Parquet and dropped, then restored exactly
(issue 15); the drop refuses a day that changed since its file was written."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

from common.schema import Channel, Frame, Quality
from common.settings import Settings
from tests.conftest import IN_CI, REPO, env_for
from tests.helpers import pg_query
from writer.partitions import ensure_partitions, partition_days
from writer.pg import connect_pg
from writer.pg_copy import write_frames

try:  # the optional extra `archive`; tests/run.sh installs it, so CI never skips these
    import pyarrow.parquet as pq

    from admin import archive
except ImportError as exc:
    if IN_CI:
        raise
    pytest.skip(f"pyarrow not installed (pip install -e '.[archive]'): {exc}", allow_module_level=True)

pytestmark = pytest.mark.integration

TODAY = datetime.now(UTC).date()
OLD = TODAY - timedelta(days=3)
_DAY_ROWS = "SELECT * FROM readings WHERE observed_at >= %s AND observed_at < %s ORDER BY producer, seq, channel"


def _frames(day_start: datetime, n: int, producer: str) -> list[Frame]:
    """Frames of every kind the view shows: numbers, text, NULLs, qualities, with and without session."""
    out = []
    for i in range(n):
        at = day_start + timedelta(minutes=7 * i, microseconds=i)
        chans = (
            Channel("rpm", 1000.0 + i, "rpm"),
            Channel("afr", 14.7 - i / 100, "afr", Quality.WARN if i % 5 == 0 else Quality.GOOD),
            Channel("dtc", f"P0{i:03d}" if i % 3 == 0 else None, "", Quality.GOOD if i % 3 == 0 else Quality.NO_DATA),
        )
        session = f"run-{i // 10}" if i % 4 else None
        out.append(Frame("simulate", f"dev-{i % 3}", at, at + timedelta(milliseconds=3), i, chans, session,
                         producer, i + 1))  # fmt: skip
    return out


def _admin(settings: Settings, directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = env_for(settings) | {"TELEMETRY_ARCHIVE__DIR": str(directory), "TELEMETRY_ARCHIVE__HOT_DAYS": "2"}
    return subprocess.run(
        [sys.executable, "-m", "admin.cli", "archive", *args],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _load(settings: Settings) -> None:
    with connect_pg(settings.postgres) as conn:
        ensure_partitions(conn, OLD, TODAY)
        noon = datetime.combine(OLD, time(12), UTC)
        write_frames(conn, _frames(noon - timedelta(hours=11), 180, "old@box/1"))  # 21 hours of OLD
        write_frames(conn, _frames(datetime.combine(TODAY, time(0), UTC), 20, "new@box/1"))


def test_a_restored_day_gives_back_exactly_the_readings_exported(settings: Settings, tmp_path: Path) -> None:
    _load(settings)
    lo, hi = datetime.combine(OLD, time(0), UTC), datetime.combine(OLD + timedelta(days=1), time(0), UTC)
    before = pg_query(settings, _DAY_ROWS, [lo, hi])
    others = pg_query(settings, "SELECT count(*) FROM readings WHERE observed_at >= %s", [hi])
    assert len(before) == 540 and any(r[6] is not None for r in before) and any(r[9] is None for r in before)

    out = _admin(settings, tmp_path, "export", "--due")  # OLD is past the 2 hot days; today is not
    assert out.returncode == 0, out.stderr
    assert f"{OLD}: 540 readings" in out.stdout and str(TODAY) not in out.stdout
    path = archive.archive_path(tmp_path, OLD)
    assert path.exists() and not list(tmp_path.glob(".*.tmp"))
    assert pg_query(settings, _DAY_ROWS, [lo, hi]) == []
    with connect_pg(settings.postgres) as conn:
        assert OLD not in partition_days(conn), "the day's partition is dropped"
    assert pg_query(settings, "SELECT count(*) FROM readings WHERE observed_at >= %s", [hi]) == others

    # The file is plain Parquet: any reader gets the view's rows, as they were.
    table = pq.read_table(path)
    assert table.column_names == list(archive.COLUMNS) and table.num_rows == 540
    as_rows = sorted(zip(*(table.column(c).to_pylist() for c in archive.COLUMNS), strict=True),
                     key=lambda r: (r[10], r[11], r[4]))  # fmt: skip
    assert as_rows == before
    listing = _admin(settings, tmp_path, "list")
    assert f"{OLD}" in listing.stdout and "540 readings" in listing.stdout

    out = _admin(settings, tmp_path, "restore", str(OLD))
    assert out.returncode == 0, out.stderr
    assert pg_query(settings, _DAY_ROWS, [lo, hi]) == before
    again = _admin(settings, tmp_path, "restore", str(OLD))
    assert again.returncode == 1 and "has readings in PostgreSQL" in again.stderr

    # Archived again (the restored day is past the horizon): the file keeps 540 readings, no repeats.
    assert _admin(settings, tmp_path, "export", str(OLD)).returncode == 0
    assert archive.file_rows(path) == 540 and pg_query(settings, _DAY_ROWS, [lo, hi]) == []


def test_the_drop_refuses_a_day_that_changed_after_its_file_was_written(settings: Settings, tmp_path: Path) -> None:
    _load(settings)
    with connect_pg(settings.postgres) as conn:
        path, n = archive.export_day(conn, OLD, tmp_path, drop=False)
        assert n == 540 and OLD in partition_days(conn)
        with pytest.raises(archive.ArchiveError, match="nothing dropped"):
            archive._drop_verified(conn, OLD, path, n - 1)  # as if a frame had arrived meanwhile
        assert OLD in partition_days(conn)


def test_export_needs_the_archive_directory(settings: Settings) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "admin.cli", "archive", "list"],
        env=env_for(settings), cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2 and "TELEMETRY_ARCHIVE__DIR" in proc.stderr


def test_restore_of_a_missing_file_is_an_operator_error(settings: Settings, tmp_path: Path) -> None:
    out = _admin(settings, tmp_path, "restore", "2020-01-01")
    assert out.returncode == 1 and "no archive file" in out.stderr
