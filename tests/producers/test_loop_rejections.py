"""The run loop never ends on a per-item exception; only device errors reconnect (issue 12, finding 1)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime

import fakeredis

from common.errors import ParseError
from common.publish import Publisher
from common.schema import Channel, Frame, Priority, decode
from common.settings import DEFAULT_RANGES
from common.streams import StreamNames
from producers.base import RateLimitedLog, run_producer
from producers.validate import RangeValidator

T = datetime(2026, 11, 23, tzinfo=UTC)
NAMES = StreamNames("t")


def frame(device: str, value: object = 1.0) -> Frame:
    return Frame("simulate", device, T, T, 0, (Channel("x", value),))  # type: ignore[arg-type]


class BuggySource:
    """Raises an unexpected exception on its second read, as a decoder bug would."""

    source = "simulate"

    def __init__(self) -> None:
        self.script: list[object] = [[frame("a")], OverflowError("date value out of range"), [frame("b")]]
        self.opens = 0

    def open(self) -> None:
        self.opens += 1

    def read(self, timeout: float) -> Sequence[Frame | ParseError]:
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step  # type: ignore[return-value]

    def close(self) -> None:
        pass

    @property
    def exhausted(self) -> bool:
        return not self.script


def test_an_unexpected_exception_is_an_internal_rejection_and_does_not_reconnect() -> None:
    redis, source = fakeredis.FakeRedis(), BuggySource()
    publisher = Publisher(redis, NAMES, "p/1")
    stats = run_producer(source, publisher, RangeValidator(DEFAULT_RANGES), threading.Event())
    assert [decode(f).device for _, f in redis.xrange(NAMES.stream(Priority.NORMAL))] == ["a", "b"]
    assert stats.parse_errors == {"internal": 1} and source.opens == 1 and stats.outages == 0


def test_a_frame_the_writer_would_refuse_is_a_counted_rejection_not_published() -> None:
    redis = fakeredis.FakeRedis()
    source = BuggySource()
    source.script = [[frame("a\x00b"), frame("ok"), frame("c", "x\x00")]]
    stats = run_producer(source, Publisher(redis, NAMES, "p/1"), RangeValidator({}), threading.Event())
    assert [decode(f).device for _, f in redis.xrange(NAMES.stream(Priority.NORMAL))] == ["ok"]
    assert stats.parse_errors == {"schema": 2} and stats.frames_read == 1


def test_rejection_log_lines_are_rate_limited() -> None:
    now = [0.0]
    log = RateLimitedLog(burst=2, window_s=10, clock=lambda: now[0])
    for _ in range(5):
        log.warning("x")
    assert log.suppressed == 3
    now[0] = 11.0
    log.warning("y")
    assert log.suppressed == 0


def test_spool_and_rejection_metrics_are_exported() -> None:
    from producers.base import ProducerStats
    from producers.metrics import ProducerTelemetry

    stats = ProducerStats(spool_available=False, spool_full_writes=3, rejections_sent=2)
    telemetry = ProducerTelemetry("jsonl", stats, Publisher(fakeredis.FakeRedis(), NAMES, "p/1"))
    samples = [s for fam in telemetry.registry.collect() for s in fam.samples]
    values = {s.name: s.value for s in samples if s.labels.get("source") == "jsonl"}
    assert values["telemetry_producer_spool_available"] == 0.0
    assert values["telemetry_producer_spool_full_writes_total"] == 3.0
    assert values["telemetry_producer_rejections_sent_total"] == 2.0
