"""Bad input end to end (real Redis, writer, PostgreSQL): rejected, dead-lettered, never re-sent (issue 12).

The jsonl producer (``telemetry-produce jsonl``, a subprocess) is fed odd timestamps, a NUL
byte, an over-long text and an 8 MiB line between good lines, three times over the same file:
every good line is committed once, every bad line is dead-lettered once with its line number.
The same CSV and JSONL imported twice leave the row count unchanged.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from redis import Redis

from common.schema import MAX_TEXT_LEN, Priority
from common.settings import Settings
from producers.file_import.job import ImportOptions, run_import
from producers.file_import.mapping import ColumnMapping
from tests.conftest import REPO, env_for
from tests.helpers import count_readings, running_writer, wait_for

pytestmark = pytest.mark.integration

BAD = {
    3: orjson.dumps({"device": "d", "observed_at": "0001-01-01T00:00:00+01:00", "channels": {"a": 1}}),
    6: orjson.dumps({"device": "d", "observed_at": "9999-12-31T23:59:59-05:00", "channels": {"a": 1}}),
    9: b'{"device":"d","channels":{"a":"nul \\u0000 here"}}',
    12: orjson.dumps({"device": "d", "channels": {"a": "x" * (MAX_TEXT_LEN + 1)}}),
    15: b"z" * (8 << 20),
}


def jsonl_file(path: Path) -> int:
    """Write 30 good lines with BAD at their line numbers; return the number of good lines."""
    lines, good = [], 0
    for n in range(1, 31 + len(BAD)):
        if n in BAD:
            lines.append(BAD[n])
        else:
            good += 1
            obs = f"2026-11-23T10:{good // 60:02d}:{good % 60:02d}Z"
            lines.append(orjson.dumps({"device": "dev", "observed_at": obs, "channels": {"v": good}}))
    path.write_bytes(b"\n".join(lines) + b"\n")
    return good


def dead_letters(redis: Redis, s: Settings) -> list[dict[bytes, bytes]]:
    return [f for _, f in redis.xrange(s.redis.names.deadletter)]


def test_jsonl_run_three_times_commits_each_line_once_and_dead_letters_bad_lines(
    settings: Settings, redis: Redis, tmp_path: Path
) -> None:
    path = tmp_path / "feed.jsonl"
    good = jsonl_file(path)
    env = env_for(settings)
    env.update(
        TELEMETRY_JSONL__PATH=str(path),
        TELEMETRY_PRODUCER__SPOOL_DIR=str(tmp_path / "spool"),
        TELEMETRY_PRODUCER__NAME="jsonl-rejections",
        TELEMETRY_HTTP__ENABLED="false",
    )
    with running_writer(settings):
        for run in range(3):
            cmd = [sys.executable, "-m", "producers.cli", "jsonl"]
            proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
            assert proc.returncode == 0, proc.stderr[-3000:]
            assert "Traceback" not in proc.stderr
            if run == 0:
                for n in BAD:
                    assert f"feed.jsonl:{n} " in proc.stderr  # logged with its line number
        wait_for(lambda: count_readings(settings) == good, 30, what="every good line committed")
        wait_for(lambda: len(dead_letters(redis, settings)) == len(BAD), 30, what="dead letters")
    assert count_readings(settings) == good  # three runs, each line once
    letters = dead_letters(redis, settings)
    assert sorted(int(f[b"orig.line"]) for f in letters) == sorted(BAD)
    for f in letters:
        n = int(f[b"orig.line"])
        assert f[b"error"].startswith(b"rejected by jsonl-rejections/") and f[b"orig.file"] == str(path).encode()
        assert f[b"orig.raw"] == BAD[n][:4096] and int(f[b"orig.size"]) == len(BAD[n])
        assert f[b"stream"] == settings.redis.names.stream(Priority.BULK).encode()


def test_the_same_csv_and_jsonl_imported_twice_leave_the_row_count_unchanged(
    settings: Settings, redis: Redis, tmp_path: Path
) -> None:
    csv_path, jsonl_path = tmp_path / "pull.csv", tmp_path / "pull.jsonl"
    csv_path.write_text("Time (s),Engine Speed (RPM),Gear\n" + "".join(f"{i / 10},{1000 + i},3\n" for i in range(20)))
    jsonl_path.write_text(
        "".join(
            f'{{"device":"j","observed_at":"2026-11-23T10:00:{i:02d}Z","channels":{{"a":{i}}}}}\n' for i in range(10)
        )
        + '{"device":"j","channels":{"a":99}}\n'  # no time: a bad row, never the import time
    )
    elapsed = ColumnMapping(start_time=datetime(2026, 11, 23, 9, tzinfo=UTC))
    options = {
        csv_path: ImportOptions(namespace=settings.redis.namespace, mapping=elapsed),
        jsonl_path: ImportOptions(namespace=settings.redis.namespace),
    }
    with running_writer(settings):
        for path in (csv_path, jsonl_path):
            run_import(redis, path, options[path])
        wait_for(lambda: drained(redis, settings), 30, what="first imports committed")
        first = count_readings(settings)
        for path in (csv_path, jsonl_path):
            path.touch()  # a new mtime must not matter
            run_import(redis, path, options[path])
        wait_for(lambda: drained(redis, settings), 30, what="second imports read")
        assert count_readings(settings) == first == 20 * 2 + 10
        wait_for(lambda: len(dead_letters(redis, settings)) == 2, 30, what="the bad row, dead-lettered per import")


def drained(redis: Redis, s: Settings) -> bool:
    """Every bulk entry read and acknowledged by the writer group."""
    groups = redis.xinfo_groups(s.redis.names.stream(Priority.BULK))
    return bool(groups) and all(g["lag"] == 0 and g["pending"] == 0 for g in groups)
