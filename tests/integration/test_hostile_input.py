"""Hostile stream entries: each is stored byte-exact or dead-lettered with its reason.

Synthetic entries, written into the normal stream by hand (XADD), each between two valid
neighbours. The writer runs as a real process and must neither crash nor restart; every valid
neighbour is stored exactly once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from redis import Redis

from common.schema import Channel, Frame, Priority, encode
from common.settings import Settings
from tests.helpers import pg_query, wait_for
from tests.integration.pipeline import start_writer, stop_process
from writer import deadletter

pytestmark = pytest.mark.integration

T = datetime.now(UTC).replace(microsecond=123456)
PRODUCER = "hostile/1"


def entry(n: int, chans: list[list[Any]] | None = None, **override: Any) -> dict[str, Any]:
    channels = tuple(Channel(*c) for c in chans) if chans else (Channel("x", float(n)),)
    fields: dict[str, Any] = encode(Frame("jsonl", "dev", T, T, 1, channels, None, PRODUCER, n))
    if chans and any(isinstance(c[1], str) for c in chans):
        fields["ch"] = orjson.dumps([[c[0], c[1], c[2] if len(c) > 2 else "", "good"] for c in chans])
    for key, value in override.items():
        if value is None:
            fields.pop(key)
        else:
            fields[key] = value
    return fields


MANY = [[f"ch_{i:05d}", float(i), "V"] for i in range(10_000)]
TOO_MANY = [[f"ch_{i:05d}", float(i), "V"] for i in range(10_001)]
ESCAPES = [
    ["'); DROP TABLE readings; --", 1.0],
    ["a\tb", 2.0],
    ["a\nb", 3.0],
    ["\\.", 4.0],
    ["\\N", "\\N"],
    ["x", "\\."],
]
UNICODE = [["温度🔥", "🚗 مرحبا e\u0301"], ["\u202eRTL\u202c", 5.0], ["e\u0301", "\u05e9\u05dc\u05d5\u05dd"]]

# name -> (fields, expected dead-letter reason substring or None = stored as is)
CASES: dict[str, tuple[dict[str, Any], str | None]] = {
    "invalid_json": (entry(101, ch=b'[["x", 1.0, "", "good"'), "not valid JSON"),
    "missing_field": (entry(102, seq=None), "missing field 'seq'"),
    "wrong_type": (entry(103, ch=b'[["x", {"a": 1}, "", "good"]]'), "value must be a number"),
    "nan": (entry(104, ch=b'[["x", NaN, "", "good"]]'), "not valid JSON"),
    "1e400": (entry(105, ch=b'[["x", 1e400, "", "good"]]'), "not valid JSON"),
    "nul_byte": (entry(106, dev="a\x00b"), "NUL"),
    "lone_surrogate_escape": (entry(107, ch=b'[["\\ud800", 1.0, "", "good"]]'), "not valid JSON"),
    "lone_surrogate_bytes": (entry(108, dev=b"\xed\xa0\x80"), "not UTF-8"),
    "8mb_field": (entry(109, ch=orjson.dumps([["big", "x" * (8 << 20), "", "good"]])), "MAX_ENTRY_BYTES"),
    "long_text": (entry(112, ch=orjson.dumps([["big", "x" * 65_537, "", "good"]])), "longer than"),
    "10001_channels": (entry(113, TOO_MANY), "more than MAX_CHANNELS"),
    "year_0": (entry(110, obs="0000-01-01T00:00:00+00:00"), "not an ISO 8601 time"),
    "year_10000": (entry(111, obs="10000-01-01T00:00:00+00:00"), "not an ISO 8601 time"),
    "schemaless": ({"hello": "world", "sql": "'; DROP TABLE readings; --"}, "missing field 'v'"),
    "10000_channels": (entry(201, MANY), None),
    "sql_and_copy_escapes": (entry(202, ESCAPES), None),
    "emoji_rtl_combining": (entry(203, UNICODE, dev="🚗-\u202eRTL-e\u0301"), None),
}


def test_each_hostile_entry_is_stored_exactly_or_dead_lettered(settings: Settings, redis: Redis) -> None:
    names = settings.redis.names
    stream = names.stream(Priority.NORMAL)
    writer = start_writer(settings, "hostile-writer", {"TELEMETRY_HTTP__ENABLED": "false"})
    ids: dict[str, bytes] = {}
    try:
        neighbour = 1
        for name, (fields, _) in CASES.items():
            redis.xadd(stream, entry(neighbour))
            ids[name] = redis.xadd(stream, fields)
            neighbour += 1
        redis.xadd(stream, entry(neighbour))
        dead_expected = sum(1 for _, reason in CASES.values() if reason)
        wait_for(lambda: redis.xlen(names.deadletter) == dead_expected, 60, what="dead letters")
        wait_for(lambda: stored_frames(settings) == neighbour + 3, 60, what="neighbours and valid cases")
        assert writer.poll() is None, "the writer crashed"
    finally:
        out = stop_process(writer)
    assert writer.returncode == 0 and "Traceback" not in out, out[-3000:]
    dead = {fields[b"entry_id"]: fields for _, fields in redis.xrange(names.deadletter)}
    for name, (fields, reason) in CASES.items():
        if reason is None:
            assert ids[name] not in dead, name
            continue
        letter = dead[ids[name]]
        assert reason in letter[b"error"].decode(), (name, letter[b"error"])
        original = {k[len(b"orig.") :]: v for k, v in letter.items() if k.startswith(b"orig.")}
        raw = {_b(k): _b(v) for k, v in fields.items()}
        assert int(letter[b"size"]) == sum(len(k) + len(v) for k, v in raw.items()), name
        if int(letter[b"size"]) <= deadletter.COPY_MAX_BYTES:
            assert original == raw, name  # kept byte for byte
        else:  # by reference: stream, id, size and the short fields; the big ones are named, not copied
            assert original == {k: v for k, v in raw.items() if len(v) <= 256}, name
            assert letter[b"omitted"] == b"ch:" + str(len(raw[b"ch"])).encode(), name
    per_seq = dict(pg_query(settings, "SELECT seq, count(*) FROM readings WHERE seq < 100 GROUP BY seq"))
    assert per_seq == dict.fromkeys(range(1, neighbour + 1), 1)  # each neighbour exactly once
    assert_stored(settings, 201, MANY, "dev")
    assert_stored(settings, 202, ESCAPES, "dev")
    assert_stored(settings, 203, UNICODE, "🚗-\u202eRTL-e\u0301")


def _b(v: Any) -> bytes:
    return v if isinstance(v, bytes) else str(v).encode()


def stored_frames(settings: Settings) -> int:
    return int(pg_query(settings, "SELECT count(*) FROM frame_keys")[0][0])


def assert_stored(settings: Settings, seq: int, chans: list[list[Any]], device: str) -> None:
    rows = pg_query(
        settings, "SELECT channel, value, text_value, unit, device FROM readings WHERE seq = %s ORDER BY channel", [seq]
    )
    want = sorted(
        (
            c[0],
            c[1] if isinstance(c[1], float) else None,
            c[1] if isinstance(c[1], str) else None,
            c[2] if len(c) > 2 else "",
            device,
        )
        for c in chans
    )
    assert rows == want
