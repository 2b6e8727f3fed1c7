"""``telemetry-runs``: the run detector (runs/detector.py) until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse

from common.process import settings_or_none, stop_on_signals
from runs.detector import run_detector


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="telemetry-runs", description=__doc__)
    parser.add_argument("--consumer", help="consumer name (default: <hostname>-<pid>)")
    args = parser.parse_args(argv)
    settings = settings_or_none("telemetry-runs")
    if settings is None:
        return 2
    run_detector(settings, stop_on_signals("finishing the current batch and stopping"), args.consumer)
    return 0
