"""``telemetry-write``: run one writer replica until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from common.errors import ConfigError
from common.http import WRITER_PORT, serve
from common.logs import setup_logging
from common.settings import load_settings
from writer.loop import run_writer
from writer.metrics import WriterTelemetry

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="telemetry-write", description=__doc__)
    parser.add_argument("--consumer", help="consumer name (default: <hostname>-<pid>)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"telemetry-write: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("signal %d: finishing the current batch and stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    telemetry = WriterTelemetry(settings)
    server = serve(settings.http, WRITER_PORT, telemetry.endpoints())
    try:
        run_writer(settings, stop, consumer=args.consumer, stats_out=telemetry.live, observe=telemetry.observe)
    finally:
        if server is not None:
            server.close()
        telemetry.close()
    return 0
