"""The argparse wiring of the issue-19 verbs (``tap``, ``validate``) for ``telemetry-admin``.

``add_verbs(sub)`` adds their subcommands; each handler takes (settings, args) and returns the
exit code, like the other ``telemetry-admin`` handlers. No logic of its own.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from common.schema import Priority
from common.settings import Settings


def _tap(s: Settings, args: argparse.Namespace) -> int:
    from admin.tap import TapFilter, tap
    from common.process import stop_on_signals
    from common.redis_client import connect_redis

    priorities = [Priority(args.priority)] if args.priority else list(Priority)
    flt = TapFilter(args.source, args.device, args.channel)
    stop = stop_on_signals("tap stopping")
    try:
        stats = tap(
            connect_redis(s.redis), s.redis.names, priorities, flt, sys.stdout, sys.stderr, stop,
            count=args.count, duration_s=args.timeout,
        )  # fmt: skip
    except BrokenPipeError:  # `telemetry-admin tap | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    print(
        f"tap: {stats.shown} frames shown, {stats.filtered} filtered out, {stats.rejections} rejection entries, "
        f"{stats.undecodable} undecodable",
        file=sys.stderr,
    )
    return 0


def _validate(s: Settings, args: argparse.Namespace) -> int:
    from admin.validate import command

    return command(s, args.role, args.source)


def add_verbs(sub: Any) -> None:
    from admin.validate import ROLES

    p = sub.add_parser("validate", help="check settings, servers, rights, schema, spool, device (exit 0/2/3)")
    p.add_argument("--role", choices=ROLES, default="all", help="which process's needs to check (default all)")
    p.add_argument(
        "--source", help="producer: the source (telemetry-produce SOURCE) whose device and settings to check"
    )
    p.set_defaults(fn=_validate)
    p = sub.add_parser("tap", help="follow the priority streams live (no consumer group); frames as JSON lines")
    p.add_argument("--priority", choices=[x.value for x in Priority], help="one stream (default: all)")
    p.add_argument("--source", help="shell pattern on the source name, e.g. obd")
    p.add_argument("--device", help="shell pattern on the device name, e.g. 'elm*'")
    p.add_argument("--channel", help="shell pattern on channel names; other channels are left out")
    p.add_argument("--count", type=int, help="stop after this many frames")
    p.add_argument("--timeout", type=float, help="stop after this many seconds")
    p.set_defaults(fn=_tap)
