"""The producer runtime on fakeredis: validation, publishing, reconnects, clean stop; plus jsonl/simulate."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from datetime import UTC, datetime

import fakeredis
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from common.breaker import Breaker
from common.errors import ParseError, SourceUnavailableError
from common.publish import Publisher, new_producer_id
from common.schema import Channel, Frame, Priority, Quality, decode
from common.settings import DEFAULT_RANGES
from common.streams import StreamNames
from producers.base import run_producer
from producers.jsonl import JsonlSource, parse_line
from producers.simulate import SimulateSource, simulated_value
from producers.validate import RangeValidator

T = datetime(2026, 11, 23, tzinfo=UTC)
NAMES = StreamNames("t")


def f(*chans: Channel, priority: Priority = Priority.NORMAL) -> Frame:
    return Frame("simulate", "d", T, T, 0, chans, priority=priority)


# ---- range validation ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("channel", "quality"),
    [
        (Channel("rpm", 3000.0, "rpm"), Quality.GOOD),
        (Channel("rpm", 16383.75, "rpm"), Quality.WARN),
        (Channel("rpm", 25000.0, "rpm"), Quality.ERROR),
        (Channel("rpm", 100.0, "rpm"), Quality.WARN),
        (Channel("afr", 5.0, "afr"), Quality.ERROR),
        (Channel("map", 260.0, "kPa"), Quality.WARN),
        (Channel("tps", 101.0, "%"), Quality.ERROR),
        (Channel("iat", 25.0, "degC"), Quality.GOOD),  # 77 degF
        (Channel("iat", 160.0, "degC"), Quality.ERROR),  # 320 degF, converted before comparing
        (Channel("horsepower", -60.0, "hp"), Quality.ERROR),
        (Channel("torque", 1999.0, "ft_lb"), Quality.GOOD),
        (Channel("unlisted", 1e9, ""), Quality.GOOD),
        (Channel("afr_2", 40.0, "afr"), Quality.ERROR),  # numbered sensors use the base entry
        (Channel("afr_x", 40.0, "afr"), Quality.GOOD),
    ],
)
def test_range_table(channel: Channel, quality: Quality) -> None:
    out = RangeValidator(DEFAULT_RANGES).check(f(channel)).channels[0]
    assert out.quality is quality
    assert out.value == channel.value  # kept: evidence is not thrown away


def test_nan_and_inf_become_null_error_and_are_counted() -> None:
    v = RangeValidator(DEFAULT_RANGES)
    out = v.check(f(Channel("rpm", float("nan"), "rpm"), Channel("x", float("inf"))))
    assert [(c.value, c.quality) for c in out.channels] == [(None, Quality.ERROR), (None, Quality.ERROR)]
    assert v.flags["non_finite"] == 2


# ---- run loop -----------------------------------------------------------------------
class ScriptedSource:
    """A source that replays a script of read results; ``"unplug"`` raises SourceUnavailable."""

    source = "simulate"

    def __init__(self, script: list[object], fail_opens: int = 0) -> None:
        self.script = list(script)
        self.fail_opens = fail_opens
        self.opens = 0
        self.closed = 0

    def open(self) -> None:
        self.opens += 1
        if self.fail_opens > 0:
            self.fail_opens -= 1
            raise SourceUnavailableError("no such device")

    def read(self, timeout: float) -> Sequence[Frame | ParseError]:
        step = self.script.pop(0)
        if step == "unplug":
            raise SourceUnavailableError("device reports readiness to read but returned no data")
        return step  # type: ignore[return-value]

    def close(self) -> None:
        self.closed += 1

    @property
    def exhausted(self) -> bool:
        return not self.script


def run(source: ScriptedSource, redis: fakeredis.FakeRedis) -> tuple[Publisher, object]:
    pub = Publisher(redis, NAMES, new_producer_id("test"))
    stats = run_producer(source, pub, RangeValidator(DEFAULT_RANGES), threading.Event(), reconnect_max=0.01)
    return pub, stats


def test_loop_publishes_counts_errors_and_numbers_frames() -> None:
    r = fakeredis.FakeRedis()
    src = ScriptedSource([
        [f(Channel("rpm", 1000.0, "rpm")), ParseError("bad checksum", "checksum")],
        [f(Channel("rpm", 30000.0, "rpm"), priority=Priority.CRITICAL)],
    ])  # fmt: skip
    pub, stats = run(src, r)
    assert stats.frames_read == stats.frames_published == 2  # type: ignore[attr-defined]
    assert stats.parse_errors == {"checksum": 1}  # type: ignore[attr-defined]
    normal = [decode(fl) for _, fl in r.xrange(NAMES.stream(Priority.NORMAL))]
    crit = [decode(fl, Priority.CRITICAL) for _, fl in r.xrange(NAMES.stream(Priority.CRITICAL))]
    assert [x.seq for x in normal + crit] == [1, 2]
    assert crit[0].channels[0].quality is Quality.ERROR
    assert normal[0].producer == crit[0].producer == pub.producer_id


def test_unplug_reconnects_and_counts_the_outage() -> None:
    r = fakeredis.FakeRedis()
    src = ScriptedSource([[f(Channel("a", 1.0))], "unplug", [f(Channel("a", 2.0))]], fail_opens=0)
    _, stats = run(src, r)
    assert stats.outages == 1 and stats.connects == 2  # type: ignore[attr-defined]
    assert r.xlen(NAMES.stream(Priority.NORMAL)) == 2


def test_failed_opens_back_off_and_retry() -> None:
    src = ScriptedSource([[f(Channel("a", 1.0))]], fail_opens=3)
    _, stats = run(src, fakeredis.FakeRedis())
    assert stats.open_failures == 3 and stats.frames_published == 1  # type: ignore[attr-defined]


def test_redis_outage_keeps_frames_and_their_keys_until_sent() -> None:
    r = fakeredis.FakeRedis()
    calls = {"n": 0}
    real = r.pipeline

    def flaky(*a: object, **k: object) -> object:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise RedisConnectionError("Connection refused")
        return real(*a, **k)

    r.pipeline = flaky  # type: ignore[method-assign]
    _, stats = run(ScriptedSource([[f(Channel("a", 1.0)), f(Channel("a", 2.0))]]), r)
    assert stats.redis_errors == 2 and stats.frames_published == 2 and stats.frames_unsent == 0  # type: ignore[attr-defined]
    assert [decode(x).seq for _, x in r.xrange(NAMES.stream(Priority.NORMAL))] == [1, 2]


def test_breaker_log_says_where_frames_go_without_a_spool(caplog: pytest.LogCaptureFixture) -> None:
    """Issue 10.7: "frames go to the spool" was logged by a producer that has no spool."""
    r = fakeredis.FakeRedis()
    calls = {"n": 0}
    real = r.pipeline

    def flaky(*a: object, **k: object) -> object:
        calls["n"] += 1
        if calls["n"] <= 3:
            raise RedisConnectionError("Connection refused")
        return real(*a, **k)

    r.pipeline = flaky  # type: ignore[method-assign]
    pub = Publisher(r, NAMES, new_producer_id("test"))
    with caplog.at_level("WARNING", logger="producers.outbox"):
        stats = run_producer(
            ScriptedSource([[f(Channel("a", 1.0))]]),
            pub,
            RangeValidator(DEFAULT_RANGES),
            threading.Event(),
            reconnect_max=0.01,
            redis_breaker=Breaker("redis", failures=1, open_s=0.01),
        )
    assert stats.frames_published == 1
    opened = [m for m in caplog.messages if "breaker open" in m]
    assert opened and all("reading waits for Redis (no spool)" in m for m in opened), caplog.messages
    assert not [m for m in caplog.messages if "spool" in m and "no spool" not in m], caplog.messages


def test_stop_publishes_what_was_read() -> None:
    r = fakeredis.FakeRedis()
    stop = threading.Event()

    class StopAfterRead(ScriptedSource):
        def read(self, timeout: float) -> Sequence[Frame | ParseError]:
            stop.set()  # SIGTERM arrives while this read is in progress
            return [f(Channel("a", 1.0))]

    pub = Publisher(r, NAMES, "p/1")
    stats = run_producer(StopAfterRead([]), pub, RangeValidator({}), stop)
    assert stats.frames_published == 1 and r.xlen(NAMES.stream(Priority.NORMAL)) == 1


def test_producer_ids_are_never_reused() -> None:
    assert len({new_producer_id("x") for _ in range(100_000)}) == 100_000


# ---- simulate and jsonl -------------------------------------------------------------
def test_simulate_emits_count_frames_with_predictable_values() -> None:
    src = SimulateSource(devices=3, channels=4, rate_hz=0, count=10)
    frames: list[Frame] = []
    while not src.exhausted:
        frames.extend(x for x in src.read(0.1) if isinstance(x, Frame))
    assert len(frames) == 10
    assert frames[0].channels[0].name == "rpm" and frames[3].channels[1].value == simulated_value(1, 1)


def test_parse_line_accepts_both_channel_forms() -> None:
    fr = parse_line(
        b'{"device":"pump","observed_at":"2026-11-23T11:00:00+01:00","priority":"high",'
        b'"channels":{"p":1.5,"state":"on","t":{"value":20,"unit":"degC"},"gone":null}}',
        1,
        T,
        5,
    )
    assert fr.observed_at == datetime(2026, 11, 23, 10, tzinfo=UTC)
    assert fr.priority is Priority.HIGH
    assert [(c.name, c.value, c.unit, c.quality) for c in fr.channels] == [
        ("p", 1.5, "", Quality.GOOD), ("state", "on", "", Quality.GOOD),
        ("t", 20.0, "degC", Quality.GOOD), ("gone", None, "", Quality.NO_DATA),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("line", "kind", "text"),
    [
        (b"{not json", "json", "line 7: invalid JSON"),
        (b"[1,2]", "schema", "expected a JSON object"),
        (b'{"channels":{"a":1}}', "schema", "'device'"),
        (b'{"device":"d","channels":{}}', "schema", "non-empty"),
        (b'{"device":"d","channels":{"a":[1]}}', "schema", "number, string or null"),
        (b'{"device":"d","channels":{"a":1},"observed_at":"2026-01-01T00:00:00"}', "schema", "no timezone"),
        (b'{"device":"d","channels":{"a":1},"priority":"urgent"}', "schema", "unknown priority"),
        (b'{"device":"d","channels":{"a":1},"colour":"red"}', "schema", "unknown keys"),
        (b'{"device":"d","channels":{"a":NaN}}', "json", "invalid JSON"),
    ],
)
def test_parse_line_errors_name_the_line(line: bytes, kind: str, text: str) -> None:
    with pytest.raises(ParseError, match=text) as info:
        parse_line(line, 7, T, 0)
    assert info.value.kind == kind


def test_jsonl_source_reads_a_file_reports_bad_lines_and_finishes(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "in.jsonl")
    with open(path, "wb") as fh:
        fh.write(b'{"device":"a","channels":{"x":1}}\n\nnot json\n{"device":"b","channels":{"x":2}}')
    src = JsonlSource(path)
    src.open()
    items: list[object] = []
    while not src.exhausted:
        items.extend(src.read(0.1))
    src.close()
    frames = [i for i in items if isinstance(i, Frame)]
    errors = [i for i in items if isinstance(i, ParseError)]
    assert [x.device for x in frames] == ["a", "b"]
    assert len(errors) == 1 and "line 3" in str(errors[0])
