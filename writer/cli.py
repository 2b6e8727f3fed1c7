"""``telemetry-write``: run one writer replica until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging

from common.http import WRITER_PORT, serve
from common.process import settings_or_none, stop_on_signals
from writer.gc_tuning import tune_writer_gc
from writer.metrics import WriterTelemetry
from writer.replica import run_writer

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="telemetry-write", description=__doc__)
    parser.add_argument("--consumer", help="consumer name (default: <hostname>-<pid>)")
    args = parser.parse_args(argv)
    settings = settings_or_none("telemetry-write")
    if settings is None:
        return 2
    tune_writer_gc()  # fewer collector passes over each batch's frames (writer/gc_tuning.py)
    stop = stop_on_signals("finishing the current batch and stopping")
    telemetry = WriterTelemetry(settings)
    server = serve(settings.http, WRITER_PORT, telemetry.endpoints())
    try:
        run_writer(settings, stop, consumer=args.consumer, stats=telemetry.stats, observe=telemetry.observe)
    finally:
        if server is not None:
            server.close()
        telemetry.close()
    return 0
