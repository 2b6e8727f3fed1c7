"""CPU cost of the gps_nmea producer at 10 Hz: a real u-blox capture replayed onto a pty.

Starts ``telemetry-produce gps_nmea`` as its own process on a pseudo-terminal, replays the
NEO-M9N capture (``shared/data/nmea/ublox-neo-m9n-nmea.log``: 4 constellations, ~23 sentences
and ~1.3 KB per epoch) at ``--rate`` epochs per second, looping, for ``--seconds``, and prints
the producer's CPU seconds per wall second, read from ``/proc/<pid>/stat`` (utime + stime) after
start-up (imports, connect) so only steady-state work counts. The replay runs in this process
and is not counted. Needs Redis; writes to a throw-away namespace and deletes it.

    python bench/gps_cost.py --seconds 20 --rate 10
"""

from __future__ import annotations

import argparse
import os
import pty
import signal
import subprocess
import sys
import time
import tty
import uuid
from pathlib import Path

from redis import Redis

REPO = Path(__file__).resolve().parent.parent
CAPTURE = REPO.parent / "shared" / "data" / "nmea" / "ublox-neo-m9n-nmea.log"


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _epochs(path: Path) -> list[bytes]:
    lines = [line + b"\r\n" for line in path.read_bytes().split(b"\n") if line.startswith(b"$")]
    epochs: list[bytes] = []
    for line in lines:
        if line.startswith(b"$GNRMC") or not epochs:  # this receiver starts each epoch with RMC
            epochs.append(b"")
        epochs[-1] += line
    return epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=10.0, help="epochs per second")
    parser.add_argument("--capture", type=Path, default=CAPTURE)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()

    epochs = _epochs(args.capture)
    master, slave = pty.openpty()
    tty.setraw(slave)
    namespace = "bench-gps-" + uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    env |= {
        "TELEMETRY_REDIS__URL": args.redis_url,
        "TELEMETRY_REDIS__NAMESPACE": namespace,
        "TELEMETRY_GPS_NMEA__URL": os.ttyname(slave),
        "TELEMETRY_GPS_NMEA__BAUDRATE": "115200",
        "TELEMETRY_GPS_NMEA__MIN_DATE": "2000-01-01",
        "TELEMETRY_LOG_LEVEL": "WARNING",
    }
    cmd = [sys.executable, "-m", "producers.cli", "gps_nmea"]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO)
    redis = Redis.from_url(args.redis_url)
    try:
        time.sleep(3.0)  # imports, Redis, open the pty: not part of the steady-state cost
        cpu0, wall0 = _cpu_seconds(proc.pid), time.monotonic()
        sent, total = 0, int(args.seconds * args.rate)
        while sent < total:
            os.write(master, epochs[sent % len(epochs)])
            sent += 1
            time.sleep(max(0.0, wall0 + sent / args.rate - time.monotonic()))
        time.sleep(0.5)  # let the last epoch be read and flushed (idle timeout 0.3 s)
        cpu, wall = _cpu_seconds(proc.pid) - cpu0, time.monotonic() - wall0
        frames = redis.xlen("{" + namespace + "}:normal")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        os.close(master)
        os.close(slave)
        keys = list(redis.scan_iter(match="{" + namespace + "}*"))
        if keys:
            redis.delete(*keys)
    bytes_per_s = sum(len(epochs[i % len(epochs)]) for i in range(sent)) / wall
    print(
        f"gps_nmea: {sent} epochs at {args.rate:g}/s ({bytes_per_s:.0f} B/s) over {wall:.1f}s -> {frames} frames; "
        f"CPU {cpu:.2f}s = {100 * cpu / wall:.2f}% of one core"
    )


if __name__ == "__main__":
    main()
