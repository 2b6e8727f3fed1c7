"""jsonl on fakeredis: odd input is a counted, dead-lettered rejection; a file resumes where it stopped.

Issue 12 findings 1, 2 and 7: nothing in one line ends the producer, every rejected line reaches
the bulk stream as a rejection entry (the writer dead-letters it) with its line number, one
over-long line is one rejection read in bounded memory, and a regular file is never re-sent.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import fakeredis
import orjson
import pytest

from common.errors import DecodeError, ParseError, RejectedInputError
from common.publish import MAX_PRODUCER_NAME, Publisher, new_producer_id
from common.schema import MAX_TEXT_LEN, Channel, Frame, Priority, decode, encode, validate_frame
from common.streams import StreamNames
from producers.base import run_producer
from producers.jsonl import MAX_LINE, JsonlSource, parse_line
from producers.validate import RangeValidator
from tests.conftest import REPO

T = datetime(2026, 11, 23, tzinfo=UTC)
NAMES = StreamNames("t")


def good(i: int) -> bytes:
    return orjson.dumps({"device": "d", "observed_at": f"2026-11-23T10:00:{i % 60:02d}Z", "channels": {"n": i}})


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-05:00"])
def test_timestamps_without_a_utc_form_are_time_rejections(stamp: str) -> None:
    line = orjson.dumps({"device": "d", "observed_at": stamp, "channels": {"a": 1}})
    with pytest.raises(ParseError, match="out of range") as info:
        parse_line(line, 9, T, 0)
    assert (info.value.kind, info.value.line, info.value.raw) == ("time", 9, line)


def hostile_lines() -> list[tuple[bytes, str]]:
    """(line, expected kind) of every bad line the producer must reject without stopping."""
    return [
        (orjson.dumps({"device": "d", "observed_at": "0001-01-01T00:00:00+01:00", "channels": {"a": 1}}), "time"),
        (orjson.dumps({"device": "d", "observed_at": "9999-12-31T23:59:59-05:00", "channels": {"a": 1}}), "time"),
        (b'{"device":"d\\u0000x","channels":{"a":1}}', "schema"),  # NUL: the writer refuses it
        (orjson.dumps({"device": "d", "channels": {"a": "x" * (MAX_TEXT_LEN + 1)}}), "schema"),
        (b"x" * (8 << 20), "too_long"),  # one 8 MiB line: one rejection, later numbers unchanged
        (b"{not json", "json"),
    ]


def run_file(path: Path, redis: fakeredis.FakeRedis, offset_file: Path | None = None) -> tuple[Publisher, object]:
    source = JsonlSource(str(path), offset_file=offset_file)
    publisher = Publisher(redis, NAMES, new_producer_id("jsonl-test"))
    stats = run_producer(source, publisher, RangeValidator({}), threading.Event(), read_timeout=0.05)
    return publisher, stats


def test_bad_lines_never_stop_the_producer_and_are_dead_lettered_with_their_line(tmp_path: Path) -> None:
    bad = hostile_lines()
    lines, expected = [], {}
    for i, (line, kind) in enumerate(bad):
        lines += [good(2 * i), line]
        expected[2 * i + 2] = kind  # 1-based line number of the bad line
    lines.append(good(99))
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    redis = fakeredis.FakeRedis()
    _, stats = run_file(path, redis)
    frames = redis.xrange(NAMES.stream(Priority.NORMAL))
    assert [orjson.loads(f[b"ch"])[0][1] for _, f in frames] == [float(2 * i) for i in range(len(bad))] + [99.0]
    rejections = redis.xrange(NAMES.stream(Priority.BULK))
    got = {int(f[b"line"]): f[b"kind"].decode() for _, f in rejections}
    assert got == expected
    for _, fields in rejections:
        assert fields[b"file"] == str(path).encode() and fields[b"src"] == b"jsonl"
        assert len(fields[b"raw"]) <= 4096 and int(fields[b"size"]) == len(lines[int(fields[b"line"]) - 1])
        with pytest.raises(RejectedInputError, match=f"in.jsonl:{int(fields[b'line'])}\\)"):
            decode(fields)  # the writer's decode: a DecodeError, so it is dead-lettered as is
    assert sum(stats.parse_errors.values()) == len(bad) == stats.rejections_sent  # type: ignore[attr-defined]


def test_an_over_long_line_is_read_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    with path.open("wb") as fh:
        fh.write(good(1) + b"\n")
        for _ in range(64):
            fh.write(b"y" * (1 << 20))  # one 64 MiB line
        fh.write(b"\n" + good(3) + b"\n")
    source = JsonlSource(str(path))
    items: list[Frame | ParseError] = []
    tracemalloc.start()
    try:
        while not source.exhausted:
            items.extend(source.read(0.05))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        source.close()
    assert peak < 4 * MAX_LINE
    assert [type(i).__name__ for i in items] == ["Frame", "ParseError", "Frame"]
    error = items[1]
    assert isinstance(error, ParseError) and error.line == 2 and error.size == 64 << 20
    assert "line 2:" in str(error) and source.lineno == 3


def test_three_runs_over_one_file_send_each_line_once(tmp_path: Path) -> None:
    path, offsets = tmp_path / "in.jsonl", tmp_path / "state" / "jsonl.offset"
    offsets.parent.mkdir()
    path.write_bytes(b"\n".join(good(i) for i in range(50)) + b"\n")
    redis = fakeredis.FakeRedis()
    run_file(path, redis, offsets)
    run_file(path, redis, offsets)  # nothing new: nothing sent
    with path.open("ab") as fh:
        fh.write(b"\n".join(good(i) for i in range(50, 80)) + b"\nnot json\n")
    run_file(path, redis, offsets)
    frames = redis.xrange(NAMES.stream(Priority.NORMAL))
    assert [orjson.loads(f[b"ch"])[0][1] for _, f in frames] == [float(i) for i in range(80)]
    [(_, rejection)] = redis.xrange(NAMES.stream(Priority.BULK))
    assert rejection[b"line"] == b"81"  # line numbers continue across runs


def test_a_replaced_file_is_read_from_the_start(tmp_path: Path) -> None:
    path, offsets = tmp_path / "in.jsonl", tmp_path / "jsonl.offset"
    path.write_bytes(good(1) + b"\n")
    redis = fakeredis.FakeRedis()
    run_file(path, redis, offsets)
    os.unlink(path)
    path.write_bytes(good(2) + b"\n" + good(3) + b"\n")
    run_file(path, redis, offsets)
    assert len(redis.xrange(NAMES.stream(Priority.NORMAL))) == 3


HOSTILE_FRAMES = [
    Frame("jsonl", "d", T, T, 0, (Channel("a", 1.0),)),
    Frame("jsonl", "d\x00", T, T, 0, (Channel("a", 1.0),)),
    Frame("jsonl", "d" * 201, T, T, 0, (Channel("a", 1.0),)),
    Frame("jsonl", "d", T, T, 0, (Channel("a", "x\x00"),)),
    Frame("jsonl", "d", T, T, 0, (Channel("a", "\\u0000"),)),
    Frame("jsonl", "d", T, T, 0, (Channel("a", "x" * (MAX_TEXT_LEN + 1)),)),
    Frame("jsonl", "d", T, T, 0, (Channel("a", "x" * MAX_TEXT_LEN),)),
    Frame("jsonl", "d", T, T, 0, (Channel("a", 1.0, "u" * 33),)),
    Frame("jsonl", "d", T, T, 0, (Channel("a", 1.0), Channel("a", 2.0))),
    Frame("jsonl", "d", T, T, 0, (Channel("", 1.0),)),
    Frame("jsonl", "d", T, T, 0, ()),
    Frame("nope", "d", T, T, 0, (Channel("a", 1.0),)),
    Frame("jsonl", "d", T, T, 0, (Channel("a", 1.0),), session="s\x00"),
]


@pytest.mark.parametrize("frame", HOSTILE_FRAMES)
def test_validate_frame_refuses_exactly_what_the_writer_refuses(frame: Frame) -> None:
    from dataclasses import replace

    def writer_refuses() -> bool:
        try:
            decode({k.encode(): v.encode() if isinstance(v, str) else v for k, v in encode(stamped).items()})
        except (DecodeError, ValueError):
            return True
        return False

    stamped = replace(frame, producer="p/1", seq=1)
    try:
        validate_frame(frame)
        producer_refuses = False
    except DecodeError:
        producer_refuses = True
    assert producer_refuses == writer_refuses()


def test_a_producer_name_the_writer_would_refuse_stops_the_start_with_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    env.update(TELEMETRY_PRODUCER__NAME="n" * (MAX_PRODUCER_NAME + 1), TELEMETRY_HTTP__ENABLED="false")
    env["TELEMETRY_REDIS__URL"] = "redis://127.0.0.1:1/0"  # never reached: refused before connecting
    cmd = [sys.executable, "-m", "producers.cli", "simulate"]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if "TELEMETRY_PRODUCER__NAME" in line]
    assert len(errors) == 1 and f"1-{MAX_PRODUCER_NAME} characters" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(new_producer_id("n" * MAX_PRODUCER_NAME)) <= 200


def test_the_position_is_saved_after_close(tmp_path: Path) -> None:
    path, offsets = tmp_path / "in.jsonl", tmp_path / "jsonl.offset"
    path.write_bytes(good(1) + b"\n" + good(2) + b"\n")
    source = JsonlSource(str(path), offset_file=offsets)
    while not source.exhausted:
        source.read(0.05)
    source.close()
    source.commit()  # what the run loop does after draining at exit
    assert orjson.loads(offsets.read_bytes())["offset"] == path.stat().st_size


@pytest.mark.parametrize(
    "variable", ["TELEMETRY_GPS_NMEA__DEVICE", "TELEMETRY_OBD__DEVICE", "TELEMETRY_PRODUCER__SESSION"]
)
def test_names_the_writer_would_refuse_are_refused_at_start(variable: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    env.update(
        {variable: "n" * 201, "TELEMETRY_HTTP__ENABLED": "false", "TELEMETRY_REDIS__URL": "redis://127.0.0.1:1/0"}
    )
    cmd = [sys.executable, "-m", "producers.cli", "simulate"]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and variable in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_a_reopened_file_goes_on_where_it_was(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(good(i) for i in range(3)) + b"\n")
    source = JsonlSource(str(path))
    first = source.read(0.05)
    source.close()  # what the run loop does when a read fails (SourceUnavailableError)
    with path.open("ab") as fh:
        fh.write(good(3) + b"\n")
    rest: list[Frame | ParseError] = []
    while not source.exhausted:
        rest.extend(source.read(0.05))
    source.close()
    values = [i.channels[0].value for i in [*first, *rest] if isinstance(i, Frame)]
    assert values == [0.0, 1.0, 2.0, 3.0] and source.lineno == 4
