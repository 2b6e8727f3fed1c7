"""file_import: column mappings, bad rows with line numbers, streaming, idempotent keys (fakeredis).

Every CSV here is SYNTHETIC. No public real PowerVision export exists, so its headers follow the
assumed layout in producers/file_import/mapping.py; the WinPEP 8 sample copies the layout of the real
exports in shared/data/dyno (tested themselves in tests/integration/test_ecu_log_import.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import fakeredis
import pytest

from admin.imports import render_progress
from common.errors import ConfigError, ParseError
from common.schema import Frame, Priority, Quality, decode
from producers.file_import.job import ImportOptions, ImportStats, iter_items, run_import
from producers.file_import.mapping import ChannelSpec, ColumnMapping, detect_profile, parse_time, split_unit

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)

# Synthetic PowerVision-style export: unit in parentheses, elapsed seconds.
POWERVISION = """Time (s),Engine Speed (RPM),Throttle Position (%),Manifold Absolute Pressure (kPa),Gear
0.00,1200,5.1,35.2,N
0.05,1250,7.5,38.0,1
"""
# Synthetic values in the real WinPEP 8 Time Export layout: module prefixes, ", " separators, a
# trailing empty column, Engine RPM in thousands, no units row.
WINPEP8 = (
    "Time, (DWRT CPU) Engine RPM, (DWRT CPU) Torque, (DWRT CPU) Power, (DWRT CPU) Power (uncorrected),"
    " (DWRT CPU) WB Volts Petrol AFR, \n"
    "1.5, 3.5, 84.7, 56.4, 45.6, , \n"
)
GENERIC = """timestamp;device;oil (psi);coolant [°C];note
2026-11-23T10:00:00Z;pump-1;42.5;80.1;ok
2026-11-23T10:00:01Z;pump-2;43;81;
2026-11-23T10:00:02Z;pump-1;44;oops;x
not-a-time;pump-1;1;2;3
2026-11-23T10:00:03Z;pump-1;1;2
;;;;
2026-11-23T10:00:04Z;;1;2;3
2026-11-23T10:00:05Z;pump-1;;;
2026-11-23T10:00:06Z;pump-1;inf;20;
"""


def write(tmp_path: Path, text: str, name: str = "run.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def items(path: Path, mapping: ColumnMapping | None = None) -> list[Frame | ParseError]:
    return list(iter_items(path, mapping or ColumnMapping(), ImportStats(path.stat().st_size, "p")))


def test_split_unit() -> None:
    assert split_unit("Engine Speed (RPM)") == ("Engine Speed", "rpm")
    assert split_unit("coolant [°C]") == ("coolant", "degC")
    assert split_unit("Torque (ft-lb)") == ("Torque", "ft_lb")
    assert split_unit("Flow (l/min)") == ("Flow", "l/min")
    assert split_unit("Gear") == ("Gear", "")


def test_profiles_recognised_by_header() -> None:
    assert detect_profile(POWERVISION.splitlines()[0].split(",")) == "powervision"
    assert detect_profile(WINPEP8.splitlines()[0].split(",")) == "winpep8"
    assert detect_profile(["time", "a", "b"]) == "generic"


def test_powervision_rows(tmp_path: Path) -> None:
    start = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    got = items(write(tmp_path, POWERVISION), ColumnMapping(start_time=start))
    assert all(isinstance(f, Frame) for f in got)
    first, second = got
    assert isinstance(first, Frame) and isinstance(second, Frame)
    assert first.device == "run" and first.priority is Priority.BULK and first.source == "file_import"
    assert [(c.name, c.value, c.unit) for c in first.channels] == [
        ("rpm", 1200.0, "rpm"),
        ("tps", 5.1, "%"),
        ("map", 35.2, "kPa"),
        ("Gear", "N", ""),
    ]
    assert second.observed_at - first.observed_at == timedelta(milliseconds=50)
    assert first.observed_at == start


def test_winpep8_units_from_profile(tmp_path: Path) -> None:
    [frame] = items(write(tmp_path, WINPEP8), ColumnMapping(start_time=NOW))
    assert isinstance(frame, Frame)
    assert [(c.name, c.value, c.unit) for c in frame.channels] == [
        ("rpm", 3500.0, "rpm"),
        ("torque", 84.7, "ft_lb"),
        ("horsepower", 56.4, "hp"),
        ("(DWRT CPU) Power (uncorrected)", 45.6, "hp"),  # "(uncorrected)" is part of the name, not a unit
    ]  # the blank AFR cell is no channel
    assert frame.observed_at == NOW + timedelta(seconds=1.5)


def test_bad_rows_have_line_numbers_and_do_not_stop(tmp_path: Path) -> None:
    got = items(write(tmp_path, GENERIC), ColumnMapping(device_column="device"))
    errors = [(str(e).split(":")[0], e.kind) for e in got if isinstance(e, ParseError)]
    assert errors == [
        ("line 4", "value"),  # 'oops' in a column with a unit
        ("line 5", "time"),
        ("line 6", "columns"),
        ("line 8", "device"),
        ("line 9", "empty"),
    ]
    frames = [f for f in got if isinstance(f, Frame)]
    assert [f.device for f in frames] == ["pump-1", "pump-2", "pump-1"]
    assert [(c.name, c.value, c.unit) for c in frames[0].channels] == [
        ("oil", 42.5, "psi"),
        ("coolant", 80.1, "degC"),
        ("note", "ok", ""),
    ]
    assert frames[2].channels[0].quality is Quality.ERROR and frames[2].channels[0].value is None


def test_explicit_mapping_time_formats_and_zone(tmp_path: Path) -> None:
    text = "when,rpm,ignored\n23/11/2026 11:00:00,900,1\n"
    mapping = ColumnMapping(
        time_column="when",
        time_format="%d/%m/%Y %H:%M:%S",
        timezone="Europe/Berlin",
        device="bench-3",
        channels={"rpm": ChannelSpec(name="engine_rpm", unit="rpm")},
        session="s1",
    )
    [frame] = items(write(tmp_path, text), mapping)
    assert isinstance(frame, Frame)
    assert frame.observed_at == NOW and frame.device == "bench-3" and frame.session == "s1"
    assert [(c.name, c.value, c.unit) for c in frame.channels] == [("engine_rpm", 900.0, "rpm")]
    utc = ZoneInfo("UTC")
    assert parse_time("1795428000000", "epoch_ms", utc, NOW, 1) == NOW
    assert parse_time("1795428000", "epoch_s", utc, NOW, 1) == NOW


def test_missing_column_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not in header"):
        items(write(tmp_path, WINPEP8), ColumnMapping(time_column="Zeit"))


def test_jsonl_lines_become_bulk_file_import_frames(tmp_path: Path) -> None:
    text = '{"device": "d1", "observed_at": "2026-11-23T10:00:00Z", "channels": {"t": 1.5}}\n\n{"device": 3}\n'
    got = items(write(tmp_path, text, "x.jsonl"))
    frame, error = got
    assert isinstance(frame, Frame) and frame.source == "file_import" and frame.priority is Priority.BULK
    assert isinstance(error, ParseError) and str(error).startswith("line 3:")


def test_reading_streams_without_loading_the_file(tmp_path: Path) -> None:
    rows = "".join(f"2026-11-23T10:00:{i % 60:02d}Z,{i}\n" for i in range(20_000))
    path = write(tmp_path, "time,v (rpm)\n" + rows)
    stats = ImportStats(path.stat().st_size, "p")
    it = iter_items(path, ColumnMapping(), stats)
    next(it)
    assert stats.bytes_read < stats.total_bytes / 4  # only a read-ahead buffer, not the whole file


def test_run_import_is_idempotent_per_content_and_mapping(tmp_path: Path) -> None:
    redis = fakeredis.FakeRedis()
    path = write(tmp_path, GENERIC)
    options = ImportOptions(namespace="ns", chunk_rows=2, mapping=ColumnMapping(device_column="device"))
    reports: list[dict[str, object]] = []
    first = run_import(redis, path, options, reports.append)
    second = run_import(redis, path, options)
    entries = redis.xrange("{ns}:bulk")
    keys = [(f.producer, f.seq) for f in (decode(e[1]) for e in entries if b"rej" not in e[1])]
    rejected = [int(e[1][b"line"]) for e in entries if b"rej" in e[1]]
    assert rejected == [4, 5, 6, 8, 9] * 2  # each bad row is dead-lettered (via the writer) per import
    assert len(keys) == 6 and set(keys[:3]) == set(keys[3:])  # same keys again: the writer drops them
    assert first["producer"] == second["producer"] and [k[1] for k in keys[:3]] == [1, 2, 3]
    assert first["frames"] == 3 and first["bad_rows"] == 5 and first["rows"] == 8
    assert [row[0] for row in first["bad_row_samples"]] == [4, 5, 6, 8, 9]  # type: ignore[index]
    assert reports[-1]["state"] == "done" and reports[-1]["percent"] == 100.0
    other = run_import(redis, path, options.model_copy(update={"mapping": ColumnMapping(device="x")}))
    assert other["producer"] != first["producer"]


def test_render_progress() -> None:
    line = render_progress({"percent": 50.0, "rows": 12345, "bad_rows": 2, "rows_per_s": 999.6, "state": "running"})
    assert line == "[###############---------------]  50.0%  12,345 rows  2 bad  1,000 rows/s  running"
    assert render_progress({}, width=4).startswith("[----]   0.0%  0 rows")
