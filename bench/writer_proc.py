"""Run one writer replica (settings from env) and, on SIGTERM, dump its stats as JSON.

Used by the benchmark to run writers as real processes and read their latency histograms.
"""

from __future__ import annotations

import json
import signal
import sys
import threading

from common.settings import load_settings
from writer.gc_tuning import tune_writer_gc
from writer.replica import run_writer


def main() -> None:
    out_path, consumer = sys.argv[1], sys.argv[2]
    tune_writer_gc()  # as telemetry-write does (writer/cli.py)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stats = run_writer(load_settings(), stop, consumer=consumer)
    result = {
        "frames": stats.frames, "rows": stats.rows, "duplicates": stats.duplicates, "batches": stats.batches,
        "dead_letters": sum(stats.dead_letters.values()),
        "latency": {p: h.summary() | {"hist": h.counts} for p, h in stats.latency.items()},
    }  # fmt: skip
    with open(out_path, "w") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    main()
