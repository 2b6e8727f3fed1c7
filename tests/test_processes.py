"""The leftover-process guard itself (tests/processes.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests import processes

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the guard reads /proc")


def test_guard_finds_and_kills_a_process_that_daemonised() -> None:
    # sh starts sleep in the background and exits: sleep is orphaned, and without the subreaper
    # it would be re-parented to init and escape the guard.
    subprocess.run(["sh", "-c", "sleep 300 >/dev/null 2>&1 &"], check=True, timeout=10)
    time.sleep(0.1)
    found = [cmd for state, cmd in processes.descendants().values() if state != "Z"]
    assert any("sleep 300" in cmd for cmd in found), found
    leaked = processes.kill_leftovers()
    assert any("sleep 300" in line for line in leaked), leaked
    assert not [s for s, _ in processes.descendants().values() if s != "Z"]


def test_guard_reaps_zombies_without_reporting_them() -> None:
    pid = os.posix_spawnp("true", ["true"], dict(os.environ))
    time.sleep(0.2)  # exited, not waited for: a zombie
    assert processes.descendants().get(pid, ("Z", ""))[0] == "Z"
    assert processes.kill_leftovers() == []
    assert pid not in processes.descendants()
