"""The leftover-process guard: no test may leave a process running.

pytest makes itself a child subreaper (Linux ``PR_SET_CHILD_SUBREAPER``), so even a process
that daemonised (``pg_ctl start``, ``redis-server --daemonize``) stays in pytest's process tree
instead of escaping to init. After each test, every process still in that tree is killed with
SIGKILL, reaped, and the test fails at teardown naming what it leaked. Exited children nobody
waited for (zombies) are only reaped. Linux only; elsewhere the guard does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Adopt orphaned descendants so daemonising does not hide them from the guard."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _stat(pid: int) -> tuple[int, str, str] | None:
    """(parent pid, state letter, command line) of ``pid``, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None
    rest = raw[raw.rindex(")") + 2 :].split()
    return int(rest[1]), rest[0], cmdline or raw[raw.index("(") + 1 : raw.rindex(")")]


def descendants(root: int | None = None) -> dict[int, tuple[str, str]]:
    """Every process below ``root`` (default: this process): pid -> (state, command line)."""
    root = os.getpid() if root is None else root
    if not Path("/proc").is_dir():
        return {}
    children: dict[int, list[int]] = {}
    info: dict[int, tuple[str, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        got = _stat(int(entry.name))
        if got is None:
            continue
        ppid, state, cmd = got
        children.setdefault(ppid, []).append(int(entry.name))
        info[int(entry.name)] = (state, cmd)
    found: dict[int, tuple[str, str]] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if pid in info:
            found[pid] = info[pid]
        todo.extend(children.get(pid, []))
    return found


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_leftovers() -> list[str]:
    """SIGKILL and reap every live descendant; return their descriptions (zombies only reaped)."""
    leaked: list[str] = []
    for _ in range(3):  # a process may fork while we kill its parent
        live = {pid: cmd for pid, (state, cmd) in descendants().items() if state != "Z"}
        if not live:
            break
        for pid, cmd in live.items():
            leaked.append(f"{pid} {cmd[:200]}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(s != "Z" for s, _ in descendants().values()):
            time.sleep(0.02)
        _reap()
    _reap()
    return sorted(set(leaked))
