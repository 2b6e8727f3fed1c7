"""CPU time and peak RSS of processes, read from /proc (Linux). No third-party deps."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) of ``pid`` in MiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def pids_of(name: str) -> list[int]:
    """PIDs whose command name (comm) starts with ``name`` (redis-server, postgres)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip().startswith(name):
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


class Group:
    """CPU used by a set of processes between ``start()`` and the last ``sample()``, and their peak RSS.

    ``pids`` is a list or a function returning the current PIDs (PostgreSQL forks a backend per
    connection after the run starts): a PID first seen after ``start()`` counts from zero.
    """

    def __init__(self, pids: list[int] | Callable[[], list[int]]) -> None:
        self.pid_fn = pids if callable(pids) else (lambda: list(pids))
        self.pids: list[int] = []
        self.base: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.cpu = 0.0
        self.rss = 0.0

    def start(self) -> None:
        self.base = {p: cpu_seconds(p) for p in self.pid_fn()}
        self.pids = list(self.base)

    def sample(self) -> None:
        for p in self.pid_fn():
            self.base.setdefault(p, 0.0)
            self.last[p] = cpu_seconds(p) or self.last.get(p, 0.0)
            self.rss = max(self.rss, peak_rss_mb(p))
        self.pids = list(self.base)
        self.cpu = sum(max(0.0, self.last.get(p, b) - b) for p, b in self.base.items())


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU jiffies of the whole machine so far, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return float(sum(fields) - idle), float(sum(fields))


def tcp_ports(pid: int) -> set[int]:
    """Local TCP ports of ``pid``'s sockets (IPv4 and IPv6), from /proc (empty if it is gone)."""
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return set()
    ports = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[9] in inodes:
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports
