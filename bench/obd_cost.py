"""CPU cost of the obd producer at the adapter's full speed, against the ELM327 emulator.

Runs the real producer loop (ObdSource -> RangeValidator -> Publisher -> Redis) in this process
for ``--seconds`` after the adapter has connected, with every PID at interval 0 (query as fast as
the adapter answers), and prints CPU seconds per wall second of this process (the emulator is a
child process and is not counted). ``--delay`` makes the emulator answer late, like a real adapter
on a real CAN bus (0.05 s ~ 20 answers/s). Needs Redis; writes to a throw-away namespace.

    python bench/obd_cost.py --seconds 20
    python bench/obd_cost.py --seconds 20 --delay 0.05
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

from redis import Redis

from common.publish import Publisher, new_producer_id
from common.settings import DEFAULT_RANGES, Settings
from producers.base import ProducerStats, run_producer
from producers.obd import from_settings
from producers.validate import RangeValidator


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _start_emulator(workdir: Path) -> tuple[subprocess.Popen[str], str]:
    out = workdir / "elm.out"
    proc = subprocess.Popen(["elm", "-s", "car", "-b", str(out)], stdin=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while not (out.exists() and "\n" in out.read_text()):
        if time.monotonic() > deadline:
            raise SystemExit("emulator did not start")
        time.sleep(0.02)
    return proc, out.read_text().split("\n", 1)[0].strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--delay", type=float, default=0.0, help="emulator answer delay, s")
    parser.add_argument("--pids", default="RPM,SPEED,COOLANT_TEMP,THROTTLE_POS,INTAKE_PRESSURE")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()

    namespace = "bench-obd-" + uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory() as tmp:
        emulator, pty = _start_emulator(Path(tmp))
        try:
            pids = dict.fromkeys(args.pids.split(","), 0.0)
            obd = {"url": pty, "baudrate": 38400, "pids": pids}
            settings = Settings(redis={"url": args.redis_url, "namespace": namespace}, obd=obd, _env_file=None)  # type: ignore[call-arg,arg-type]
            redis = Redis.from_url(args.redis_url)
            source = from_settings(settings)
            connected = threading.Event()
            marks: dict[str, float] = {}
            connect = source.open

            def open_then_mark() -> None:  # the ~4 s connect stays outside the measured window
                connect()
                assert emulator.stdin is not None
                emulator.stdin.write(f"delay {args.delay}\n")
                emulator.stdin.flush()
                marks.update(cpu=_cpu(), wall=time.monotonic())
                connected.set()

            source.open = open_then_mark  # type: ignore[method-assign]
            stop = threading.Event()
            out: dict[str, ProducerStats] = {}
            publisher = Publisher(redis, settings.redis.names, new_producer_id("obd-bench"))
            thread = threading.Thread(
                target=lambda: out.update(stats=run_producer(source, publisher, RangeValidator(DEFAULT_RANGES), stop))
            )
            started = time.monotonic()
            thread.start()
            if not connected.wait(30):
                raise SystemExit("adapter did not connect")
            connect_s = time.monotonic() - started
            time.sleep(args.seconds)
            stop.set()
            thread.join(30)
            cpu, wall = _cpu() - marks["cpu"], time.monotonic() - marks["wall"]
        finally:
            emulator.terminate()
            emulator.wait(10)
        keys = list(redis.scan_iter(match="{" + namespace + "}*"))
        if keys:
            redis.delete(*keys)
    stats = out["stats"]
    queries = stats.frames_read * len(pids)  # every PID is due in every round (interval 0)
    print(f"connect {connect_s:.1f} s; measured {wall:.1f} s, emulator delay {args.delay} s, {len(pids)} PIDs")
    print(f"frames {stats.frames_published} ({stats.frames_published / wall:.1f}/s), queries {queries / wall:.0f}/s")
    print(f"connects {stats.connects}, outages {stats.outages}, parse errors {dict(stats.parse_errors)}")
    print(f"CPU {cpu:.2f} s = {100 * cpu / wall:.2f} % of a core; {1e6 * cpu / max(queries, 1):.0f} us per query")


if __name__ == "__main__":
    main()
