"""``telemetry-produce <source>``: build settings, the source, the publisher; run the loop.

The sources are those of ``producers/registry.py`` (typed specs, no plugin discovery, no
import strings). SIGTERM and SIGINT stop the loop cleanly (what was read is published first).
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import threading

from common.breaker import Breaker
from common.errors import SpoolUnavailableError, TelemetryError
from common.http import PRODUCER_PORT, serve
from common.process import settings_or_none, stop_on_signals
from common.publish import Publisher, check_producer_name, new_producer_id
from common.redis_client import connect_redis
from common.settings import Settings
from producers import registry
from producers.base import CountingSource, ProducerStats, run_producer
from producers.jsonl import JsonlSource
from producers.metrics import ProducerTelemetry
from producers.spool import open_spool
from producers.validate import RangeValidator

logger = logging.getLogger(__name__)


def produce(source_name: str, settings: Settings, stop: threading.Event) -> ProducerStats:
    """Run one producer until ``stop``; the body of ``telemetry-produce``."""
    name = check_producer_name(settings.producer.name or f"{source_name}@{socket.gethostname()}")
    source = registry.by_name()[source_name].factory(settings)
    publisher = Publisher(connect_redis(settings.redis), settings.redis.names, new_producer_id(name))
    ps = settings.producer
    stats = ProducerStats()
    try:
        spool = open_spool(ps.spool_dir, name, ps.spool_max_mb, ps.spool_segment_kb, ps.spool_fsync_interval_s)
    except SpoolUnavailableError as exc:
        logger.error("%s; running WITHOUT a spool: reading waits while Redis is down", exc)
        spool, stats.spool_available = None, False
    if spool is not None and isinstance(source, JsonlSource) and source.offset_file is None:
        source.offset_file = spool.dir / "jsonl.offset"
    device, redis = (
        Breaker(link, ps.breaker_failures, ps.breaker_open_s, ps.breaker_successes) for link in ("device", "redis")
    )
    logger.info("producer %s starting (source %s)", name, source_name)
    events = source if isinstance(source, CountingSource) else None
    telemetry = ProducerTelemetry(source_name, stats, publisher, events=events)
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; its choices are the registry's names, read when it is built."""
    specs = registry.by_name()
    epilog = "sources:\n" + "\n".join(f"  {name:<12} {spec.summary}" for name, spec in specs.items())
    parser = argparse.ArgumentParser(
        prog="telemetry-produce",
        description=__doc__,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", choices=list(specs), help="which source this process reads")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.add_argument("--test", action="store_true", help="read --count frames, print them checked; send nothing")
    parser.add_argument("--count", type=int, default=10, help="--test: frames to read (default 10)")
    parser.add_argument("--timeout", type=float, default=30.0, help="--test: seconds to wait at most (default 30)")
    parser.add_argument("--check-config", action="store_true", help="build the source from its settings; open nothing")
    args = parser.parse_args(argv)
    settings = settings_or_none("telemetry-produce")
    if settings is None:
        return 2
    if args.test or args.check_config:  # issue 19: producers/dry_run.py
        from producers.dry_run import check_config, main_test

        spec = registry.by_name()[args.source]
        if args.check_config:
            return check_config(lambda: spec.factory(settings), args.source)
        return main_test(lambda: spec.factory(settings), settings, args.count, args.timeout)
    stop = stop_on_signals("stopping")
    try:
        stats = produce(args.source, settings, stop)
    except TelemetryError as exc:
        logger.error("%s", exc)
        return 2
    return 1 if stats.frames_unsent else 0


if __name__ == "__main__":
    sys.exit(main())
