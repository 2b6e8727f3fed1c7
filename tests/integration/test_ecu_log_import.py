"""ECU logs and real WinPEP 8 exports imported end to end: ``run_import`` (the rq job's body) ->
the real Redis bulk stream -> the real writer -> PostgreSQL, read back and compared with the
values in shared/data/dyno/README.md. Times are placed with ``start_time`` two hours ago (the
files are years old, older than the writer's partitions).
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from common.settings import Settings
from producers.file_import.job import ImportOptions, run_import
from producers.file_import.mapping import ColumnMapping
from tests.helpers import pg_query, running_writer, wait_for

pytestmark = pytest.mark.integration

START = (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0)

WINPEP8 = {
    # file: rows, last Time, peak Power, its Time / rpm / Torque / Speed, peak Torque, Time, rpm
    "winpep8_wrl_RunFile_40.csv": (312, 15.55, 274.341, 12.05, 7569.0, 190.379, 112.792, 257.962, 5.3, 4569.0),
    "winpep8_wrl_RunFile_86.csv": (272, 13.55, 276.48, 10.1, 7032.0, 206.517, 99.878, 239.441, 6.1, 5091.0),
    "winpep8_wrl_RunFile_96.csv": (285, 14.2, 276.365, 11.05, 6993.0, 207.591, 99.321, 240.794, 7.2, 5108.0),
}


def import_and_read(
    settings: Settings, redis: Redis, path: Path, mapping: ColumnMapping
) -> tuple[dict[str, Any], list[Any]]:
    options = ImportOptions(namespace=settings.redis.namespace, mapping=mapping, chunk_rows=200)
    result = run_import(redis, path, options)
    query = "SELECT coalesce(sum(frames), 0) FROM producer_progress WHERE source = 'file_import'"
    with running_writer(settings):
        wait_for(lambda: pg_query(settings, query)[0][0] == result["frames"], 60, what="import committed")
    rows = pg_query(
        settings,
        "SELECT observed_at, channel, value, text_value, unit, quality FROM readings"
        " WHERE source = 'file_import' ORDER BY observed_at, channel",
    )
    return result, rows


def by_time(rows: list[Any]) -> dict[datetime, dict[str, tuple[Any, str]]]:
    out: dict[datetime, dict[str, tuple[Any, str]]] = {}
    for observed, channel, value, text, unit, _ in rows:
        out.setdefault(observed, {})[channel] = (text if text is not None else value, unit)
    return out


@pytest.mark.parametrize("name", sorted(WINPEP8))
def test_winpep8_time_exports(settings: Settings, redis: Redis, shared_data: Path, name: str) -> None:
    rows_n, last_t, peak, peak_t, peak_rpm, peak_tq, peak_speed, peak_torque, torque_t, torque_rpm = WINPEP8[name]
    path = shared_data / "dyno" / name
    result, rows = import_and_read(settings, redis, path, ColumnMapping(start_time=START))
    assert result["frames"] == result["rows"] == rows_n and result["bad_rows"] == 0
    frames = by_time(rows)
    assert len(frames) == rows_n and max(frames) == START + timedelta(seconds=last_t)
    with path.open(newline="") as fh:
        table = [[cell.strip() for cell in row] for row in csv.reader(fh)]
    header = table[0]
    said = {h for i, h in enumerate(header) if any(row[i] for row in table[1:])}  # Distance 2 is always blank
    assert "(DWRT CPU) Distance 2" in set(header) - said
    # every column that has a value is there under its name (four under canonical names), with its unit
    names = {c for f in frames.values() for c in f}
    canonical = {"(DWRT CPU) Engine RPM": "rpm", "(DWRT CPU) Power": "horsepower", "(DWRT CPU) Torque": "torque",
                 "(DWRT CPU) Speed": "speed"}  # fmt: skip
    expected_names = {canonical.get(h, h) for h in said if h and h != "Time"}
    assert len(header) == 35 and names == expected_names
    units = {c: u for f in frames.values() for c, (_, u) in f.items()}
    assert (units["rpm"], units["horsepower"], units["torque"], units["speed"]) == ("rpm", "hp", "ft_lb", "mph")
    assert units["(DWRT CPU) Distance"] == "mi" and units["(DWRT ATMO) Pressure"] == "inHg"
    assert units["(DWRT CPU) Force"] == "lbf" and units["(DWRT CPU) Power (uncorrected)"] == "hp"
    top = max(frames.values(), key=lambda f: f.get("horsepower", (-1e9, ""))[0])
    at = START + timedelta(seconds=peak_t)
    assert frames[at] is top and top["horsepower"][0] == peak
    assert top["rpm"][0] == pytest.approx(peak_rpm, abs=1e-9)  # thousands of rpm x 1000
    assert (top["torque"][0], top["speed"][0]) == (peak_tq, peak_speed)
    strongest = max(frames.values(), key=lambda f: f.get("torque", (-1e9, ""))[0])
    assert frames[START + timedelta(seconds=torque_t)] is strongest and strongest["torque"][0] == peak_torque
    assert strongest["rpm"][0] == pytest.approx(torque_rpm, abs=1e-9)
    # blank cells (ATMO starts late, Power/Torque blank at first) are absent, never stored as values
    first = frames[START]
    assert "horsepower" not in first and "(DWRT ATMO) Humidity" not in first
    if name.endswith("_40.csv"):
        row = frames[START + timedelta(seconds=5)]
        assert row["rpm"][0] == pytest.approx(4419.0) and row["horsepower"][0] == 216.488
        assert (row["torque"][0], row["speed"][0], row["(DWRT CPU) Force"][0]) == (257.32, 65.853, 995.917)
        assert (row["(DWRT ATMO) Pressure"][0], row["(DWRT ATMO) Temperature 1"][0]) == (24.29, 69.46)
        assert row["(DWRT ATMO) Humidity"][0] == 18.23
    assert all(q == "good" for *_, q in rows)


def test_msl_import(settings: Settings, redis: Redis, shared_data: Path) -> None:
    path = shared_data / "dyno" / "megasquirt_ms1_bg20_ms_test.msl"
    result, rows = import_and_read(settings, redis, path, ColumnMapping(start_time=START))
    assert result["frames"] == 7_977 and result["bad_rows"] == 0
    frames = by_time(rows)
    ordered = [frames[t] for t in sorted(frames)]
    assert len(ordered) == 7_977
    for index, t, rpm, map_, tps, clt, pw, adv, batt in (
        (0, 26853.346, 909, 46, 0, 51, 3.2, 15, 14.1),
        (4000, 27123.021, 3289, 22, 0, 83, 3.0, 29, 14.2),
        (6253, 27276.729, 5611, 88, 37, 101, 6.4, 28, 14.0),
        (7976, 27392.920, 0, 66, 0, 88, 0.0, 10, 12.4),
    ):
        f = ordered[index]
        assert sorted(frames)[index] == START + timedelta(milliseconds=round((t - 26853.346) * 1000))
        got = [f[c][0] for c in ("RPM", "MAP", "TPS", "CLT", "PW", "Ignition Advance", "Battery V")]
        assert got == [rpm, map_, tps, clt, pw, adv, batt]
    assert (ordered[0]["MAP"][1], ordered[0]["PW"][1], ordered[0]["CLT"][1]) == ("kPa", "ms", "")
    assert max(f["RPM"][0] for f in ordered) == 5611


def test_mlg_import_with_markers(settings: Settings, redis: Redis, shared_data: Path) -> None:
    path = shared_data / "dyno" / "speeduino_markers.mlg"
    result, rows = import_and_read(settings, redis, path, ColumnMapping(start_time=START))
    assert result["frames"] == 43 + 9 and result["bad_rows"] == 0
    markers = [r for r in rows if r[1] == "marker"]
    assert len(markers) == 9 and markers[0][3].startswith("MARK 000 - Manual")
    records = by_time([r for r in rows if r[1] != "marker"])
    first, last = records[min(records)], records[max(records)]
    assert (first["RPM"][0], first["MAP"], first["CLT"][0], first["AFR"]) == (0.0, (10.0, "kPa"), 68.0, (11.0, "O2"))
    assert max(records) == START + timedelta(seconds=1.434999942779541)
    assert (last["CLT"][0], last["AFR"][0]) == (70.0, 10.8)
