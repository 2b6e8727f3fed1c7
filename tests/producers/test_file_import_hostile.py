"""file_import on fakeredis: no row ends an import; every time comes from the file (issue 12).

Odd timestamps, fields over the csv module's limit, over-long lines and text in a numeric
column are bad rows, dead-lettered (via rejection entries) with their line numbers; memory
stays bounded whatever a line's length; importing the same file twice gives the same frames.
"""

from __future__ import annotations

import os
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import fakeredis
import pytest

from common.errors import ConfigError, ParseError
from common.schema import Frame, decode
from producers.file_import.job import MAX_ROW_BYTES, ImportOptions, ImportStats, iter_items, run_import
from producers.file_import.mapping import ColumnMapping

START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def bulk(redis: fakeredis.FakeRedis) -> tuple[list[Frame], list[dict[bytes, bytes]]]:
    entries = [fields for _, fields in redis.xrange("{ns}:bulk")]
    return [decode(f) for f in entries if b"rej" not in f], [f for f in entries if b"rej" in f]


def test_odd_timestamps_long_fields_and_text_in_numbers_are_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "odd.csv"
    rows = [
        "time,device,rpm,note",
        "2026-11-23T10:00:00Z,d,1000,a",
        "0001-01-01T00:00:00+01:00,d,1001,b",  # line 3: no UTC form
        "9999-12-31T23:59:59-05:00,d,1002,c",  # line 4
        f'2026-11-23T10:00:01Z,d,1003,"{"x" * 200_000}"',  # line 5: over the csv field limit
        "2026-11-23T10:00:02Z,d,abc,d",  # line 6: text in a numeric column (no unit)
        "2026-11-23T10:00:03Z,d\x00x,1004,e",  # line 7: NUL in the device, refused by the writer
        "2026-11-23T10:00:04Z,d,1005,f",
    ]
    path.write_text("\n".join(rows) + "\n")
    redis = fakeredis.FakeRedis()
    result = run_import(redis, path, ImportOptions(namespace="ns", mapping=ColumnMapping(device_column="device")))
    frames, rejections = bulk(redis)
    assert [f.channels[0].value for f in frames] == [1000.0, 1005.0]
    assert result["bad_rows"] == 5 and [line for line, _ in result["bad_row_samples"]] == [3, 4, 5, 6, 7]
    assert [(int(r[b"line"]), r[b"kind"]) for r in rejections] == [
        (3, b"time"), (4, b"time"), (5, b"csv"), (6, b"value"), (7, b"schema"),
    ]  # fmt: skip
    assert all(r[b"file"] == str(path).encode() and len(r[b"raw"]) <= 4096 for r in rejections)
    assert rejections[0][b"raw"] == rows[2].encode()


def test_jsonl_import_rejects_odd_timestamps_and_rows_without_a_time(tmp_path: Path) -> None:
    path = tmp_path / "odd.jsonl"
    path.write_text(
        '{"device":"d","observed_at":"2026-11-23T10:00:00Z","channels":{"a":1}}\n'
        '{"device":"d","observed_at":"0001-01-01T00:00:00+01:00","channels":{"a":2}}\n'
        '{"device":"d","channels":{"a":3}}\n'
        '{"device":"d","observed_at":"9999-12-31T23:59:59-05:00","channels":{"a":4}}\n'
    )
    redis = fakeredis.FakeRedis()
    result = run_import(redis, path, ImportOptions(namespace="ns"))
    frames, rejections = bulk(redis)
    assert [f.channels[0].value for f in frames] == [1.0]
    assert [(int(r[b"line"]), r[b"kind"]) for r in rejections] == [(2, b"time"), (3, b"time"), (4, b"time")]
    assert result["bad_rows"] == 3


def test_an_over_long_line_is_one_bad_row_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    with path.open("wb") as fh:
        fh.write(b"time,rpm\n2026-11-23T10:00:00Z,1\n")
        for _ in range(48):
            fh.write(b"9" * (1 << 20))  # line 3: one 48 MiB line
        fh.write(b"\n2026-11-23T10:00:01Z,2\n")
    stats = ImportStats(path.stat().st_size, "p")
    tracemalloc.start()
    try:
        got = list(iter_items(path, ColumnMapping(), stats))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MAX_ROW_BYTES
    assert [type(i).__name__ for i in got] == ["Frame", "ParseError", "Frame"]
    error = got[1]
    assert isinstance(error, ParseError) and error.kind == "too_long" and error.line == 3
    assert error.size == 48 << 20 and stats.bytes_read == stats.total_bytes


def test_the_same_files_imported_twice_give_the_same_frames(tmp_path: Path) -> None:
    csv_path, jsonl_path = tmp_path / "run.csv", tmp_path / "run.jsonl"
    csv_path.write_text("Time (s),Engine Speed (RPM)\n0.0,1200\n0.5,1300\n")
    jsonl_path.write_text(
        '{"device":"d","observed_at":"2026-11-23T10:00:00Z","channels":{"a":1}}\n'
        '{"device":"d","channels":{"a":2}}\n'  # no time in the file: a bad row, never the import time
    )
    redis = fakeredis.FakeRedis()
    options = {
        csv_path: ImportOptions(namespace="ns", mapping=ColumnMapping(start_time=START)),
        jsonl_path: ImportOptions(namespace="ns"),
    }
    for _ in range(2):
        for path in (csv_path, jsonl_path):
            run_import(redis, path, options[path])
            os.utime(path, (1e9, 1e9))  # a copied file gets a new mtime: it must not matter
    frames, _ = bulk(redis)
    assert len(frames) == 6
    first, second = frames[:3], frames[3:]
    assert [(f.key, f.observed_at, f.channels) for f in first] == [(f.key, f.observed_at, f.channels) for f in second]


def test_elapsed_times_need_a_start_time(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    path.write_text("Time (s),Engine Speed (RPM)\n0.0,1200\n")
    with pytest.raises(ConfigError, match="start_time"):
        list(iter_items(path, ColumnMapping(), ImportStats(1, "p")))
