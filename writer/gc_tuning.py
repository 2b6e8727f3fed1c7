"""Cyclic garbage collector settings for a writer process (issue 15: CPU per reading).

What it does: raises the collector's generation-0 threshold so that the frames of a batch (tens
of thousands of small tuples and lists, none of them in a reference cycle) are not traversed
again and again while the batch is decoded and written. Measured with bench/pipeline_bench.py
(one writer draining a backlog, CPU from /proc): ~4.0 -> ~3.0 µs of writer CPU per reading.
Memory is still freed by reference counting as before; only objects in cycles (rare: tracebacks,
a few library internals) wait a little longer, and collections of every generation still run.

What it does not do: disable the collector, or change anything for other processes (tests
call ``run_writer`` in-process and keep Python's defaults).
"""

from __future__ import annotations

import gc

WRITER_GC_THRESHOLDS = (50_000, 20, 100)
"""(generation 0, 1, 2) thresholds; Python's defaults are (700, 10, 10)."""


def tune_writer_gc() -> tuple[int, int, int]:
    """Apply WRITER_GC_THRESHOLDS to this process; return the thresholds it had before."""
    before = gc.get_threshold()
    gc.set_threshold(*WRITER_GC_THRESHOLDS)
    return before
