"""CPU time and peak RSS of processes, read from /proc (Linux). No third-party deps."""

from __future__ import annotations

import os
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
    """CPU used by a set of processes between ``start()`` and ``stop()``, and their peak RSS."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.cpu0 = 0.0
        self.cpu = 0.0
        self.rss = 0.0

    def start(self) -> None:
        self.cpu0 = sum(cpu_seconds(p) for p in self.pids)

    def sample(self) -> None:
        self.rss = max(self.rss, max((peak_rss_mb(p) for p in self.pids), default=0.0))
        self.cpu = sum(cpu_seconds(p) for p in self.pids) - self.cpu0
