"""Writer memory while a few huge entries arrive (issue 11, point 4): 4 entries of 15 MB by default.

    python bench/writer_rss.py [--entries 4] [--mb 15] [--limits MAX_ENTRY_BYTES:MAX_CHANNELS] [--repo PATH]

Starts one writer replica (``python -m writer``) on its own Redis namespace and PostgreSQL schema
(dropped at the end), lets it settle, XADDs the entries to the normal stream (valid frames of
28-byte channels), and samples the writer's RSS from /proc every 20 ms until each entry is
committed or dead-lettered. Prints the idle RSS, the peak RSS (VmHWM), what became of the entries
and the writer's batch count. ``--limits`` raises the size limits (so huge entries are decoded
and committed, in batches bounded by rows); ``--repo`` runs the writer of another checkout, to
compare (give no ``--limits`` to a checkout without those settings). A benchmark: asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_env import frames_committed, rss_mb, start_writer, stop, summary  # noqa: E402
from bench.pipeline_bench import PG_DSN, Env  # noqa: E402
from common.schema import Priority  # noqa: E402
from tests.integration.servers import free_port  # noqa: E402


def huge_entry(seq: int, megabytes: float) -> dict[str, bytes]:
    """A valid frame entry of about ``megabytes`` MB: one channel is 28 bytes of JSON."""
    n = int(megabytes * 1e6 / 28)
    channels = orjson.dumps([[f"c{i:07d}", 1.5, "V", "good"] for i in range(n)])
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00", time.gmtime()).encode()
    return {b"v": b"1", b"src": b"jsonl", b"dev": b"huge", b"prod": b"rss-bench/1", b"seq": str(seq).encode(),
            b"obs": now, b"rcv": now, b"mono": b"1", b"ch": channels}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=4)
    parser.add_argument("--mb", type=float, default=15.0)
    parser.add_argument("--limits", help="MAX_ENTRY_BYTES:MAX_CHANNELS for the writer (default: its defaults)")
    parser.add_argument("--repo", type=Path, default=REPO)
    args = parser.parse_args()
    env = Env(channels=0)
    ns, schema = env.fresh()
    port = free_port()
    extra = {"TELEMETRY_HTTP__ENABLED": "true", "TELEMETRY_HTTP__PORT": str(port)}
    if args.limits:
        max_bytes, max_channels = args.limits.split(":")
        extra |= {"TELEMETRY_WRITER__MAX_ENTRY_BYTES": max_bytes, "TELEMETRY_WRITER__MAX_CHANNELS": max_channels}
    entries = [huge_entry(i + 1, args.mb) for i in range(args.entries)]
    log = Path(tempfile.mkdtemp()) / "writer.log"
    writer = start_writer(env.env(ns, schema) | extra, args.repo.resolve(), log)
    try:
        time.sleep(3)  # connected, groups created, idle
        idle = rss_mb(writer.pid)
        key, dead = "{" + ns + "}:" + Priority.NORMAL.value, "{" + ns + "}:deadletter"
        pipe = env.redis.pipeline(transaction=False)
        for fields in entries:
            pipe.xadd(key, fields)  # type: ignore[arg-type]
        pipe.execute()
        size = sum(len(k) + len(v) for k, v in entries[0].items())
        t0, peak_seen, done = time.monotonic(), idle, 0
        while time.monotonic() - t0 < 300 and writer.poll() is None:
            peak_seen = max(peak_seen, rss_mb(writer.pid))
            done = frames_committed(PG_DSN, schema) + int(env.redis.xlen(dead))
            if done >= args.entries:
                break
            time.sleep(0.02)
        took = time.monotonic() - t0
        hwm = rss_mb(writer.pid, "VmHWM")
        committed = frames_committed(PG_DSN, schema)
        try:
            batches = summary(port)["writer"]["batches"]
        except OSError:
            batches = "?"
        print(f"writer: {args.repo.resolve()}  limits: {args.limits or 'defaults'}")
        print(f"{args.entries} entries of {size / 1e6:.1f} MB ({size // 28:,} channels each) -> "
              f"{committed} committed ({batches} batches), {env.redis.xlen(dead)} dead-lettered, "
              f"{args.entries - done} unresolved after {took:.1f} s; writer exit code {writer.poll()}")  # fmt: skip
        print(f"writer RSS: idle {idle:.0f} MiB, peak {max(hwm, peak_seen):.0f} MiB (VmHWM {hwm:.0f} MiB)")
    finally:
        stop(writer)
        env.cleanup()


if __name__ == "__main__":
    main()
