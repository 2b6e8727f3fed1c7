"""run_writer(): one writer replica: three lanes (urgent, live, bulk) in three threads, and
partition upkeep (writer/upkeep.py) in a fourth.

Each lane is a writer/loop.py Writer with its own Redis connection and PostgreSQL sink
(writer/sink.py, built here and passed in); they share
one consumer name, one stats object and one PriorityGate, so a lane pauses while a more
urgent one has frames in hand. No reading or writing of its own here.
"""

from __future__ import annotations

import logging
import sys
import threading

from common.clock import Clock, SystemClock
from common.redis_client import connect_redis
from common.schema import Priority
from common.settings import Settings
from common.streams import consumer_name
from writer.gate import PriorityGate
from writer.loop import Observer, Writer
from writer.pg import PgLink, connect_pg
from writer.stats import WriterStats
from writer.upkeep import UPKEEP_INTERVAL_S, PartitionUpkeep

logger = logging.getLogger(__name__)

LANES: tuple[tuple[str, tuple[Priority, ...]], ...] = (
    ("urgent", (Priority.CRITICAL, Priority.HIGH)),
    ("live", (Priority.NORMAL, Priority.LOW)),
    ("bulk", (Priority.BULK,)),
)
"""A replica's lanes, most urgent first: each lane pauses while a higher one has frames in hand."""

URGENT_SWITCH_INTERVAL_S = 0.0005
"""GIL switch interval of a writer process (the default is 5 ms)."""


def _pg_sink(settings: Settings, stats: WriterStats, lane: str, wall: Clock) -> PgLink:
    """A lane's PostgreSQL sink: its own pooled connection, its state shown in ``stats.pg_links``."""
    return PgLink(settings, lambda up: stats.pg_links.__setitem__(lane, up), wall=wall)


def run_writer(
    settings: Settings,
    stop: threading.Event,
    consumer: str | None = None,
    stats: WriterStats | None = None,
    observe: Observer | None = None,
    clock: Clock | None = None,
    upkeep_interval_s: float | None = None,
) -> WriterStats:
    """Run one writer replica until ``stop`` is set; the body of ``telemetry-write``.

    Three lanes in three threads share one consumer name and one stats object (``stats``, made
    by the caller when something reads it live, such as writer.metrics.WriterTelemetry; each
    lane calls ``observe`` after every operation): ``urgent`` reads critical and high, ``live``
    normal and low, ``bulk`` bulk. If a lane dies of a bug,
    the others are stopped and the error is raised (the supervisor restarts the process).
    ``clock`` (wall time: partition days, retention, the current_state horizon) is injected by
    tests; ``upkeep_interval_s`` overrides writer/upkeep.py UPKEEP_INTERVAL_S.
    """
    wall = clock or SystemClock()
    name = consumer or settings.writer.consumer or consumer_name()
    # The urgent lane needs the GIL after each of its round trips; with the default 5 ms
    # switch interval a busy main lane (decoding a bulk backlog) would add up to 5 ms per hop.
    sys.setswitchinterval(URGENT_SWITCH_INTERVAL_S)
    stats = stats if stats is not None else WriterStats()
    gate = PriorityGate(len(LANES))
    lanes = [
        Writer(settings, connect_redis(settings.redis), name, priorities=prios, lane=lane, stats=stats, gate=gate,
               rank=rank, wall=wall, sink=_pg_sink(settings, stats, lane, wall), observe=observe)
        for rank, (lane, prios) in enumerate(LANES)
    ]  # fmt: skip
    upkeep = PartitionUpkeep(
        settings,
        stats,
        wall,
        lambda: connect_pg(settings.postgres),
        UPKEEP_INTERVAL_S if upkeep_interval_s is None else upkeep_interval_s,
    )
    failures: list[BaseException] = []

    def run_lane(lane: Writer | PartitionUpkeep) -> None:
        try:
            lane.run(stop)
        except BaseException as exc:  # a bug: stop the other lanes too, raise below
            logger.exception("writer %s crashed", getattr(lane, "lane", "upkeep"))
            failures.append(exc)
            stop.set()

    threads = [
        threading.Thread(target=run_lane, args=(lane,), name=f"writer-{lane.lane}", daemon=True) for lane in lanes[:-1]
    ]
    threads.append(threading.Thread(target=run_lane, args=(upkeep,), name="writer-upkeep", daemon=True))
    for t in threads:
        t.start()
    try:
        run_lane(lanes[-1])
    finally:
        stop.set()
        for t in threads:
            t.join()
    logger.info(
        "writer %s stopped: frames=%d rows=%d duplicates=%d dead_letters=%s",
        name,
        stats.frames,
        stats.rows,
        stats.duplicates,
        dict(stats.dead_letters),
    )
    if failures:
        raise failures[0]
    return stats
