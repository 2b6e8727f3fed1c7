"""How fast the run detector applies frames: N frames of one device (a pull every 10 s of frame
time, 50 Hz) published to a fresh Redis namespace and PostgreSQL schema, then read, applied and
committed by runs/detector.py in batches of TELEMETRY_RUNS__BATCH. Prints frames/s and runs found.

    python -m bench.runs_detector_bench [--frames 50000] [--batch 500]

Needs the test servers (TELEMETRY_TEST_REDIS_URL / TELEMETRY_TEST_PG_DSN defaults). Asserts nothing.
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql
from redis import Redis

from admin.migrate import migrate
from common.publish import Publisher, new_producer_id
from common.schema import Channel, Frame
from common.settings import Settings
from runs.detector import Detector
from writer.pg import connect_pg

RULE = {"name": "pull", "channel": "rpm", "start_above": 2000, "start_for_s": 1, "stop_below": 1500, "stop_for_s": 2}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/telemetry_test")
    args = parser.parse_args()
    ns = "bench" + uuid.uuid4().hex[:8]
    s = Settings(redis={"url": args.redis, "namespace": ns}, postgres={"dsn": args.pg, "schema_name": ns},
                 runs={"rules": [RULE], "batch": args.batch, "block_ms": 10}, _env_file=None)  # type: ignore[call-arg]  # fmt: skip
    redis = Redis.from_url(args.redis)
    with psycopg.connect(args.pg, autocommit=True) as c:
        migrate(c, ns)
    try:
        t0 = datetime.now(UTC) - timedelta(hours=1)
        pub = Publisher(redis, s.redis.names, new_producer_id("bench"))
        for i in range(args.frames):
            at = t0 + timedelta(milliseconds=20 * i)
            rpm = 6000.0 if (i // 250) % 2 else 900.0  # 5 s pull, 5 s idle
            pub.stamp([Frame("simulate", "dyno", at, at, i, (Channel("rpm", rpm, "rpm"),))])
            if len(pub.pending) >= 1000:
                pub.send()
        pub.send()
        with connect_pg(s.postgres) as conn:
            det = Detector(redis, conn, s.redis.names, s, "bench")
            det.prepare(threading.Event())
            start = time.perf_counter()
            while det.once():
                pass
            took = time.perf_counter() - start
        print(f"{args.frames} frames in {took:.2f} s: {args.frames / took:,.0f} frames/s, batch {args.batch};"
              f" runs started {det.stats['runs_started']}, ended {det.stats['runs_ended']}")  # fmt: skip
    finally:
        with psycopg.connect(args.pg, autocommit=True) as c:
            c.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(ns)))
        keys = list(redis.scan_iter(match="{" + ns + "}*"))
        if keys:
            redis.delete(*keys)


if __name__ == "__main__":
    main()
