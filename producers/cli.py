"""``telemetry-produce <source>``: build settings, the source, the publisher; run the loop.

SOURCES maps each source name to a factory; there is no plugin discovery. SIGTERM and
SIGINT stop the loop cleanly (what was read is published first).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import socket
import sys
import threading
from collections.abc import Callable
from types import SimpleNamespace

from common.breaker import Breaker
from common.errors import ConfigError, SpoolUnavailableError, TelemetryError
from common.http import PRODUCER_PORT, serve
from common.process import settings_or_none, stop_on_signals
from common.publish import check_producer_name, new_producer_id
from common.redis_client import connect_redis
from common.schema import Priority
from common.settings import Settings
from producers.base import ProducerStats, Source, run_producer
from producers.metrics import MeteredPublisher, ProducerTelemetry, breakers_of
from producers.spool import open_spool
from producers.validate import RangeValidator

logger = logging.getLogger(__name__)


def _simulate(s: Settings) -> Source:
    from producers.simulate import SimulateSource

    try:
        priority = Priority(s.simulate.priority)
    except ValueError:
        raise ConfigError(f"TELEMETRY_SIMULATE__PRIORITY: unknown priority {s.simulate.priority!r}") from None
    return SimulateSource(s.simulate.devices, s.simulate.channels, s.simulate.rate_hz, s.simulate.count, priority)


def _jsonl(s: Settings) -> Source:
    from producers.jsonl import JsonlSource

    return JsonlSource(s.jsonl.path, s.jsonl.follow, offset_file=s.jsonl.offset_file)


def _lazy(module: str) -> Callable[[Settings], Source]:
    """Factory importing ``producers.<module>`` only when that source is chosen."""

    def factory(s: Settings) -> Source:
        mod = importlib.import_module(f"producers.{module}")
        return mod.from_settings(s)  # type: ignore[no-any-return]

    return factory


SOURCES: dict[str, Callable[[Settings], Source]] = {
    "simulate": _simulate,
    "jsonl": _jsonl,
    "gps_nmea": _lazy("gps_nmea"),
    "obd": _lazy("obd"),
    "dyno_udp": _lazy("dyno_udp"),
    "afr_serial": _lazy("afr_serial"),
    "scales": _lazy("scales"),
    "can": _lazy("can"),
}


def produce(source_name: str, settings: Settings, stop: threading.Event) -> ProducerStats:
    """Run one producer until ``stop``; the body of ``telemetry-produce``."""
    name = check_producer_name(settings.producer.name or f"{source_name}@{socket.gethostname()}")
    source = SOURCES[source_name](settings)
    publisher = MeteredPublisher(connect_redis(settings.redis), settings.redis.names, new_producer_id(name))
    ps = settings.producer
    stats = ProducerStats()
    try:
        spool = open_spool(ps.spool_dir, name, ps.spool_max_mb, ps.spool_segment_kb, ps.spool_fsync_interval_s)
    except SpoolUnavailableError as exc:
        logger.error("%s; running WITHOUT a spool: reading waits while Redis is down", exc)
        spool, stats.spool_available = None, False
    if spool is not None and getattr(source, "offset_file", False) is None:
        source.offset_file = spool.dir / "jsonl.offset"  # type: ignore[attr-defined]
    device, redis = (
        Breaker(link, ps.breaker_failures, ps.breaker_open_s, ps.breaker_successes) for link in ("device", "redis")
    )
    logger.info("producer %s starting (source %s)", name, source_name)
    holders = {"device": SimpleNamespace(breaker=device), "redis": SimpleNamespace(breaker=redis)}
    telemetry = ProducerTelemetry(source_name, stats, publisher, breakers_of(**holders))
    server = serve(settings.http, PRODUCER_PORT, telemetry.endpoints())
    try:
        run_producer(
            source,
            publisher,
            RangeValidator(settings.producer.ranges),
            stop,
            read_timeout=settings.producer.read_timeout_s,
            reconnect_max=settings.producer.reconnect_max_s,
            stats=stats,
            spool=spool,
            redis_breaker=redis,
            device_breaker=device,
        )
    finally:
        if server is not None:
            server.close()
    logger.info(
        "producer %s stopped: read=%d published=%d unsent=%d parse_errors=%s outages=%d spooled=%d dropped=%s",
        publisher.producer_id,
        stats.frames_read,
        stats.frames_published,
        stats.frames_unsent,
        dict(stats.parse_errors),
        stats.outages,
        stats.frames_spooled,
        {f"{r}/{p}": n for (r, p), n in stats.dropped.items()},
    )
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="telemetry-produce", description=__doc__)
    parser.add_argument("source", choices=sorted(SOURCES), help="which source this process reads")
    args = parser.parse_args(argv)
    settings = settings_or_none("telemetry-produce")
    if settings is None:
        return 2
    stop = stop_on_signals("stopping")
    try:
        stats = produce(args.source, settings, stop)
    except TelemetryError as exc:
        logger.error("%s", exc)
        return 2
    return 1 if stats.frames_unsent else 0


if __name__ == "__main__":
    sys.exit(main())
