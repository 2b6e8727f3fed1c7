"""CPU of the can producer at 2,000 and 8,000 messages/s, and its corruption figure (issue 18).

CPU: ``telemetry-produce can`` (``python -m producers.cli can``, the real process: candump replay ->
DBC decode with Toyota checksums -> Redis) replays the RAV4 capture of shared/data/can, repeated
``--repeat`` times back to back (a temporary file), paced by ``TELEMETRY_CAN__REPLAY_SPEED`` so the
bus rate is the one asked for. The process's user+system CPU (/proc/<pid>/stat) is sampled from
``--warmup`` s after start (interpreter start and DBC loading left out) to the end of the replay
and divided by the wall time in between: the share of one core. Needs Redis (a throw-away
namespace, deleted afterwards). Corruption: tests/producers/can_corruption.py, printed.

    python bench/can_bench.py
    python bench/can_bench.py --rates 2000 8000 --repeat 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis import Redis

from bench.procstat import cpu_seconds
from common.schema import Priority
from common.streams import StreamNames
from tests.producers.can_corruption import corruption_tally

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("TELEMETRY_TEST_SHARED_DATA", REPO.parent / "shared" / "data")) / "can"
LOG = "comma2k19_rav4_2017_seg40_first10s.candump.log"
LOG_RATE = 22_592 / 10.0
"""Messages per second of the capture at real time (22,592 in 10.0 s)."""


def repeated_log(folder: Path, repeat: int) -> Path:
    lines = (DATA / LOG).read_text().splitlines()
    out = folder / "rav4_repeated.log"
    with out.open("w") as fh:
        for k in range(repeat):
            for line in lines:
                stamp, rest = line.split(" ", 1)
                fh.write(f"({float(stamp[1:-1]) + 10.001 * k:.6f}) {rest}\n")
    return out


def run(rate: float, log: Path, messages: int, redis_url: str, warmup: float) -> tuple[float, float, int]:
    namespace = f"bench-can-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    env.update(
        TELEMETRY_REDIS__URL=redis_url,
        TELEMETRY_REDIS__NAMESPACE=namespace,
        TELEMETRY_HTTP__ENABLED="false",
        TELEMETRY_PRODUCER__NAME="can-bench",
        TELEMETRY_CAN__LOG_FILE=str(log),
        TELEMETRY_CAN__REPLAY_SPEED=str(rate / LOG_RATE),
        TELEMETRY_CAN__DBC=json.dumps(
            {"can0": [str(DATA / "toyota_new_mc_pt_generated.dbc")], "can1": [str(DATA / "toyota_adas.dbc")]}
        ),
        TELEMETRY_CAN__CHECKSUM='{"*": "toyota"}',
        TELEMETRY_LOG_LEVEL="WARNING",
    )
    proc = subprocess.Popen([sys.executable, "-m", "producers.cli", "can"], env=env, cwd=REPO)
    try:
        time.sleep(warmup)
        cpu0, wall0 = cpu_seconds(proc.pid), time.monotonic()
        end = wall0 + messages / rate - warmup + 1.0  # the replay's end, roughly
        last = (cpu0, wall0)
        while proc.poll() is None and time.monotonic() < end + 30:
            time.sleep(0.2)
            if proc.poll() is None:
                last = (cpu_seconds(proc.pid), time.monotonic())
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        redis = Redis.from_url(redis_url)
        published = int(redis.xlen(StreamNames(namespace).stream(Priority.NORMAL)))
        keys = list(redis.scan_iter(match=f"{StreamNames(namespace).tag}:*"))
        if keys:
            redis.delete(*keys)
    cpu, wall = last[0] - cpu0, last[1] - wall0
    return cpu, wall, published


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=float, nargs="+", default=[2000.0, 8000.0])
    parser.add_argument("--repeat", type=int, default=3, help="copies of the 10-s capture replayed back to back")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--redis", default=os.environ.get("TELEMETRY_REDIS__URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = repeated_log(Path(tmp), args.repeat)
        messages = 22_592 * args.repeat
        for rate in args.rates:
            cpu, wall, published = run(rate, log, messages, args.redis, args.warmup)
            print(
                f"can producer at {rate:6.0f} messages/s (RAV4 capture x{args.repeat}, Toyota checksums, Redis): "
                f"CPU {cpu:6.2f} s in {wall:5.1f} s wall = {100 * cpu / wall:5.1f} % of one core "
                f"({1e6 * cpu / (rate * wall):.0f} us per message); "
                f"frames published {published} of {14_975 * args.repeat}"
            )
    print(corruption_tally(DATA, LOG).line())


if __name__ == "__main__":
    main()
