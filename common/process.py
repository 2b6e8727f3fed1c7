"""What every console script does first: load settings (exit 2 with the variable named on a
bad one), set up logging, and turn SIGTERM/SIGINT into a stop event. No other I/O."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

from common.errors import ConfigError
from common.logs import setup_logging
from common.settings import Settings, load_settings

logger = logging.getLogger(__name__)


def settings_or_none(prog: str) -> Settings | None:
    """The settings, or None after printing ``prog: <what is wrong>`` to stderr."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return None
    setup_logging(settings.log_level)
    return settings


def stop_on_signals(message: str) -> threading.Event:
    """An event set by SIGTERM or SIGINT (logging ``message``): the process then stops cleanly."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("signal %d: %s", signum, message)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop
