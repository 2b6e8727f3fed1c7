"""Stream length while a bulk producer runs flat out (issue 11, point 9): does trimming keep up?

    python bench/trim_bench.py [--seconds 60] [--channels 8] [--nice N] [--repo PATH]

Starts one writer replica and one ``simulate`` producer (bulk priority, rate 0 = flat out) on
their own Redis namespace and PostgreSQL schema (dropped at the end). Every 0.5 s it samples the
bulk stream: XLEN, and of those the entries not yet delivered (lag), delivered but unacked
(pending), and acknowledged but still held (the rest: what trimming has not removed yet). Prints
the ingest rate and max / mean / last of each, and the acknowledged entries held in seconds of
ingest. ``--nice`` runs the producer at that CPU niceness (deploy/ runs bulk sources at 10, so the
writer keeps up on a small box); ``--repo`` runs the writer of another checkout, to compare.
A benchmark: asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_env import start_writer, stop  # noqa: E402
from bench.pipeline_bench import Env  # noqa: E402


def sample(redis: Any, key: str) -> tuple[int, int, int, int]:
    """(entries added so far, length, lag, pending) of ``key`` for the writer group."""
    info = redis.xinfo_stream(key)
    group = next(g for g in redis.xinfo_groups(key) if g["name"] in (b"writer", "writer"))
    lag = group.get("lag") or 0
    return int(info["entries-added"]), int(info["length"]), int(lag), int(group["pending"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--nice", type=int, default=0)
    parser.add_argument("--repo", type=Path, default=REPO)
    args = parser.parse_args()
    env = Env(channels=args.channels)
    ns, schema = env.fresh()
    key = "{" + ns + "}:bulk"
    folder = Path(tempfile.mkdtemp())
    writer = start_writer(env.env(ns, schema), args.repo.resolve(), folder / "writer.log")
    producer: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + 30
        while not env.redis.exists(key) and time.monotonic() < deadline:
            time.sleep(0.1)  # the writer created its groups
        penv = env.env(ns, schema, TELEMETRY_SIMULATE__RATE_HZ="0", TELEMETRY_SIMULATE__PRIORITY="bulk",
                       TELEMETRY_SIMULATE__DEVICES="4", TELEMETRY_SIMULATE__CHANNELS=str(args.channels))  # fmt: skip
        cmd = ["nice", "-n", str(args.nice), sys.executable, "-m", "producers.cli", "simulate"]
        producer = subprocess.Popen(cmd, env=penv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rows: list[tuple[int, int, int, int]] = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < args.seconds:
            time.sleep(0.5)
            rows.append(sample(env.redis, key))
        elapsed = time.monotonic() - t0
        added = rows[-1][0]
        rate = added / elapsed
        length = [r[1] for r in rows]
        lag = [r[2] for r in rows]
        held = [max(0, r[1] - r[2] - r[3]) for r in rows]  # acknowledged, not trimmed yet
        print(f"writer: {args.repo.resolve()}; bulk producer (nice {args.nice}) flat out for {elapsed:.0f} s,"
              f" {args.channels} channels")  # fmt: skip
        print(f"ingest: {added:,} entries ({rate:,.0f}/s)")
        for name, values in (("stream length (XLEN)", length), ("unread (lag)", lag), ("acked, untrimmed", held)):
            print(f"{name:22s} max {max(values):>9,}  mean {statistics.mean(values):>11,.0f}  last {values[-1]:>9,}")
        print(f"acknowledged entries held: at most {max(held) / max(rate, 1):.1f} s of ingest")
    finally:
        if producer is not None:
            stop(producer)  # type: ignore[arg-type]
        stop(writer)
        env.cleanup()


if __name__ == "__main__":
    main()
