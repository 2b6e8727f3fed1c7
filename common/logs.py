"""setup_logging(level): the logging set-up every process uses (one line per event, UTC, on stderr)."""

from __future__ import annotations

import logging
import logging.config
import time


def setup_logging(level: str = "INFO") -> None:
    logging.Formatter.converter = time.gmtime
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"plain": {"format": "%(asctime)sZ %(levelname)s %(name)s[%(process)d]: %(message)s"}},
            "handlers": {
                "stderr": {
                    "class": "logging.StreamHandler",
                    "formatter": "plain",
                    "stream": "ext://sys.stderr",
                }
            },
            "root": {"level": level, "handlers": ["stderr"]},
        }
    )
