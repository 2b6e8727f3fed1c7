"""Fault injection for tests: kill this process at a named point, deterministically.

Enabled only by the environment variable ``TELEMETRY_FAULT_KILL_AT=<point>:<n>`` (for
example ``after_commit:3`` = SIGKILL right after the 3rd commit, before its XACK). Unset in
production, where ``hit()`` is one dict lookup.
"""

from __future__ import annotations

import os
import signal
import sys

_SPEC = os.environ.get("TELEMETRY_FAULT_KILL_AT", "")
_POINT, _, _N = _SPEC.partition(":")
_counts: dict[str, int] = {}


def hit(point: str) -> None:
    if not _SPEC or point != _POINT:
        return
    _counts[point] = _counts.get(point, 0) + 1
    if _counts[point] >= int(_N or 1):
        print(f"killed by fault injection at {point}:{_counts[point]}", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
