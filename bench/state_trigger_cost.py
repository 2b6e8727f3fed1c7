"""Benchmark: what migration 008's current_state trigger (last_good_at, interval_s) costs the writer.

    python bench/state_trigger_cost.py [--devices 10] [--channels 100] [--batches 200]

Runs the writer's own current_state upsert (writer/pg_copy.py) batch after batch in a schema of its
own, with the trigger enabled and then disabled, and prints microseconds per upserted row and per
batch for each. A benchmark, not a test: it asserts nothing. Drops its schema at the end.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

from admin.migrate import migrate
from writer.pg_copy import _UPSERT_STATE

DSN = os.environ.get("TELEMETRY_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/telemetry_test")


def run(conn: psycopg.Connection[tuple[object, ...]], devices: int, channels: int, batches: int) -> float:
    t0 = datetime.now(UTC)
    keys = [(f"d{d}", f"c{c}") for d in range(devices) for c in range(channels)]
    start = time.perf_counter()
    for b in range(batches):
        obs = t0 + timedelta(milliseconds=100 * b)
        cols = [
            ["simulate"] * len(keys), [d for d, _ in keys], [c for _, c in keys], [obs] * len(keys),
            [float(b)] * len(keys), [None] * len(keys), ["u"] * len(keys), ["good"] * len(keys), [None] * len(keys),
        ]  # fmt: skip
        with conn.transaction():
            conn.execute(_UPSERT_STATE, [*cols, obs + timedelta(days=1)])
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=10)
    ap.add_argument("--channels", type=int, default=100)
    ap.add_argument("--batches", type=int, default=200)
    args = ap.parse_args()
    schema = "bench_" + uuid.uuid4().hex[:8]
    rows = args.devices * args.channels
    with psycopg.connect(DSN, autocommit=True) as conn:
        migrate(conn, schema)
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        try:
            for label, toggle in [("warm-up", "ENABLE")] + [("trigger off", "DISABLE"), ("trigger on", "ENABLE")] * 2:
                conn.execute(f"ALTER TABLE current_state {toggle} TRIGGER current_state_track")
                conn.execute("TRUNCATE current_state")
                seconds = run(conn, args.devices, args.channels, args.batches)
                per_row = 1e6 * seconds / (rows * args.batches)
                print(f"{label:<12} {rows} rows x {args.batches} batches: {per_row:6.2f} us/row, "
                      f"{1e3 * seconds / args.batches:7.2f} ms/batch")  # fmt: skip
        finally:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


if __name__ == "__main__":
    main()
