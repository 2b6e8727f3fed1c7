"""writer/gc_tuning.py: the writer's collector thresholds (issue 15, CPU per reading)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import weakref
from collections.abc import Iterator

import pytest

from writer.gc_tuning import WRITER_GC_THRESHOLDS, tune_writer_gc


@pytest.fixture
def restore_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_tune_sets_the_thresholds_and_keeps_the_collector_on(restore_gc: None) -> None:
    gc.set_threshold(700, 10, 10)
    assert tune_writer_gc() == (700, 10, 10)
    assert gc.get_threshold() == WRITER_GC_THRESHOLDS
    assert gc.isenabled()


def test_cycles_are_still_collected_after_tuning(restore_gc: None) -> None:
    tune_writer_gc()

    class Node:
        other: object = None

    a, b = Node(), Node()
    a.other, b.other = b, a  # a reference cycle: only the collector frees it
    alive = weakref.ref(a)
    del a, b
    gc.collect()
    assert alive() is None


def test_telemetry_write_tunes_its_process() -> None:
    """``telemetry-write``'s main applies the thresholds (in a child process, so this test process
    keeps its own; the writer loop and the HTTP server are replaced, the settings are real)."""
    code = (
        "import gc, writer.cli as c, writer.gc_tuning as g\n"
        "calls = []\n"
        "c.tune_writer_gc = lambda: calls.append(g.tune_writer_gc())\n"
        "c.run_writer = lambda *a, **k: None\n"
        "c.serve = lambda *a, **k: None\n"
        "assert c.main([]) == 0, 'main failed'\n"
        "assert calls and gc.get_threshold() == g.WRITER_GC_THRESHOLDS, (calls, gc.get_threshold())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    env["TELEMETRY_HTTP__ENABLED"] = "false"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
