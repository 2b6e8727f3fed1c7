"""Benchmark: the pipeline against the machine's limits and against hand-written writers.

    python bench/pipeline_bench.py [--frames 50000] [--channels 10] [--quick] [--storage-only] [--repeat 3]
                                   [--data-end HH:MM]

Needs the local Redis and PostgreSQL (``bash deploy/local-services.sh``) and
``pip install -e ".[bench]"`` (SQLAlchemy, for the comparison). Prints a table: each
throughput with its ratio to raw COPY (1) and to SQLAlchemy bulk_insert_mappings (2),
latencies, and CPU / peak RSS per process; then issue 15's storage figures (bench/storage_bench.py):
bytes per reading of the long layout (migration 003, the yardstick's table) and the packed one
(004) by table and index, archived bytes, WAL, CPU per reading, query p50s before/after.
A benchmark, not a test: it asserts nothing.
Uses its own Redis namespace and PostgreSQL schema, dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from redis import Redis

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from admin.migrate import migrate  # noqa: E402
from bench import storage_bench  # noqa: E402
from bench.procstat import Group, cpu_seconds, machine_busy, pids_of, tcp_ports  # noqa: E402
from common.publish import Publisher  # noqa: E402
from common.schema import Frame, encode  # noqa: E402
from producers.simulate import SimulateSource  # noqa: E402
from tests.pgdb import ensure_database  # noqa: E402
from writer.partitions import maintain  # noqa: E402

REDIS_URL = os.environ.get("TELEMETRY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_DSN = os.environ.get("TELEMETRY_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/telemetry_test")

READINGS_COPY = (
    "COPY readings (observed_at, received_at, source, device, channel, value, text_value,"
    " unit, quality, session, producer, seq) FROM STDIN (FORMAT BINARY)"
)
"""The fixed yardstick (issue 15): long rows into the layout of migrations 001-003 (a schema
migrated up to 003, where readings is still the partitioned long table)."""
READINGS_TYPES = [
    "timestamptz", "timestamptz", "text", "text", "text", "float8", "text", "text", "text", "text", "text", "int8",
]  # fmt: skip
LONG_LAYOUT = 3
"""The last migration of the long layout."""

NICE_BULK = ["nice", "-n", os.environ.get("BENCH_BULK_NICE", "10")]
"""Bulk sources run at lower CPU priority, as deploy/ runs the import worker (bulk yields to live data)."""

results: list[tuple[str, float, str]] = []  # (name, value, unit)
notes: list[str] = []


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Env:
    def __init__(self, channels: int) -> None:
        self.channels = channels
        ensure_database(PG_DSN)  # a fresh server has no telemetry_test database yet
        self.redis = Redis.from_url(REDIS_URL)
        self.schemas: list[str] = []
        self.namespaces: list[str] = []

    def fresh(self, upto: int | None = None) -> tuple[str, str]:
        """A new namespace + migrated schema (up to migration ``upto``) with today's partitions."""
        name = "bench" + uuid.uuid4().hex[:8]
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            migrate(conn, name, upto=upto)
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(name)))
            maintain(conn, date.today(), 1, 1)
        self.schemas.append(name)
        self.namespaces.append(name)
        return name, name

    def env(self, ns: str, schema: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
        env.update(
            PYTHONPATH=str(REPO), TELEMETRY_REDIS__URL=REDIS_URL, TELEMETRY_REDIS__NAMESPACE=ns,
            TELEMETRY_POSTGRES__DSN=PG_DSN, TELEMETRY_POSTGRES__SCHEMA_NAME=schema,
            TELEMETRY_WRITER__RETENTION_DAYS="1", TELEMETRY_WRITER__PARTITIONS_AHEAD_DAYS="1",
            TELEMETRY_HTTP__ENABLED="false", **extra,
        )  # fmt: skip
        return env

    def cleanup(self) -> None:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            for s in self.schemas:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(s)))
        for ns in self.namespaces:
            keys = list(self.redis.scan_iter(match="{" + ns + "}*", count=1000))
            if keys:
                self.redis.delete(*keys)


def make_frames(n: int, channels: int, devices: int = 10, producer: str = "bench/1") -> list[Frame]:
    src = SimulateSource(devices=devices, channels=channels, rate_hz=0, count=n, burst=n)
    frames: list[Frame] = []
    while not src.exhausted:
        frames.extend(f for f in src.read(0.1) if isinstance(f, Frame))
    pub = Publisher(None, None, producer)  # type: ignore[arg-type]
    pub.stamp(frames)
    return pub.pending


def rows_of(frames: list[Frame]) -> list[tuple[Any, ...]]:
    return [
        (f.observed_at, f.received_at, f.source, f.device, c.name, c.value, None, c.unit, c.quality.value,
         f.session, f.producer, f.seq)
        for f in frames for c in f.channels
    ]  # fmt: skip


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


# ---- (1) the limits ----------------------------------------------------------------
def bench_raw_copy(env: Env, frames: list[Frame], cpu: dict[str, float] | None = None) -> float:
    """The fixed yardstick: raw binary COPY of long rows into the long layout (migration 003).
    ``cpu`` gets the client's and its backend's CPU seconds."""
    _, schema = env.fresh(upto=LONG_LAYOUT)
    rows = rows_of(frames)
    with psycopg.connect(PG_DSN, autocommit=True, options=f"-c search_path={schema}") as conn:
        backend = int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]
        c0, s0 = cpu_seconds(os.getpid()), cpu_seconds(backend)

        def run() -> None:
            for i in range(0, len(rows), 20_000):
                with conn.transaction(), conn.cursor() as cur, cur.copy(READINGS_COPY) as cp:
                    cp.set_types(READINGS_TYPES)
                    for r in rows[i : i + 20_000]:
                        cp.write_row(r)

        dt = timed(run)
        if cpu is not None:
            cpu.update(client=cpu_seconds(os.getpid()) - c0, server=cpu_seconds(backend) - s0, readings=len(rows))
    return len(rows) / dt


def bench_raw_redis(env: Env, frames: list[Frame]) -> tuple[float, float]:
    ns, _ = env.fresh()
    key = "{" + ns + "}:normal"
    encoded = [encode(f) for f in frames]

    def add() -> None:
        for i in range(0, len(encoded), 500):
            pipe = env.redis.pipeline(transaction=False)
            for e in encoded[i : i + 500]:
                pipe.xadd(key, e)  # type: ignore[arg-type]
            pipe.execute()

    xadd = len(encoded) / timed(add)
    env.redis.xgroup_create(key, "writer", id="0")

    def read() -> None:
        got = 0
        while got < len(encoded):
            reply = env.redis.xreadgroup("writer", "b", {key: ">"}, count=1000)
            got += sum(len(m) for _, m in (reply.items() if isinstance(reply, dict) else reply))

    xread = len(encoded) / timed(read)
    return xadd, xread


# ---- (2) what users write by hand ------------------------------------------------------
def bench_sqlalchemy(env: Env, frames: list[Frame]) -> float:
    from sqlalchemy import Column, DateTime, Float, Integer, MetaData, String, Table, create_engine
    from sqlalchemy.orm import Session

    _, schema = env.fresh(upto=LONG_LAYOUT)
    md = MetaData(schema=schema)
    table = Table(
        "readings", md, Column("observed_at", DateTime(timezone=True)), Column("received_at", DateTime(timezone=True)),
        Column("source", String), Column("device", String), Column("channel", String), Column("value", Float),
        Column("text_value", String), Column("unit", String), Column("quality", String), Column("session", String),
        Column("producer", String), Column("seq", Integer), Column("id", Integer, primary_key=True),
    )  # fmt: skip

    class Reading:
        pass

    from sqlalchemy.orm import registry

    registry().map_imperatively(Reading, table)
    engine = create_engine(PG_DSN.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as c:
        c.exec_driver_sql(f"ALTER TABLE {schema}.readings ADD COLUMN id bigserial")
    keys = ["observed_at", "received_at", "source", "device", "channel", "value", "text_value", "unit", "quality",
            "session", "producer", "seq"]  # fmt: skip
    mappings = [dict(zip(keys, r, strict=True)) for r in rows_of(frames)]

    def run() -> None:
        with Session(engine) as session:
            for i in range(0, len(mappings), 50):
                session.bulk_insert_mappings(Reading, mappings[i : i + 50])  # type: ignore[arg-type]
                session.commit()

    rate = len(mappings) / timed(run)
    engine.dispose()
    return rate


def bench_row_inserts(env: Env, frames: list[Frame]) -> float:
    _, schema = env.fresh(upto=LONG_LAYOUT)
    rows = rows_of(frames)
    with psycopg.connect(PG_DSN, options=f"-c search_path={schema}") as conn:

        def run() -> None:
            for r in rows:
                conn.execute("INSERT INTO readings VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)", r)
                conn.commit()

        return len(rows) / timed(run)


# ---- (3) the pipeline ------------------------------------------------------------------
def start_writer(env: Env, ns: str, schema: str, consumer: str, out: Path, **extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "writer_proc.py"), str(out), consumer],
        env=env.env(ns, schema, **extra),
        cwd=REPO,
        stderr=subprocess.DEVNULL,
    )


_MONITOR: list[psycopg.Connection[Any]] = []
"""The benchmark's one connection for watching progress. A connection per poll (50 a second)
cost PostgreSQL a quarter of a core in backend start-ups, taken from the writer being measured."""


def monitor() -> psycopg.Connection[Any]:
    if not _MONITOR or _MONITOR[0].closed:
        _MONITOR[:] = [psycopg.connect(PG_DSN, autocommit=True)]
    return _MONITOR[0]


def committed(schema: str) -> int:
    query = sql.SQL("SELECT coalesce(sum(frames), 0) FROM {}.producer_progress").format(sql.Identifier(schema))
    row = monitor().execute(query).fetchone()
    return int(row[0]) if row else 0


def commit_rate(schema: str, target: int, timeout: float, on_poll: Callable[[], None] | None = None) -> float:
    """Frames committed per second from the first commit seen to the last (polls producer_progress).

    Process start-up (imports, connections, partition checks) is not counted: the rate is
    what the writer sustains once it runs.
    """
    start = time.perf_counter()
    first: tuple[float, int] | None = None
    while True:
        n = committed(schema)
        now = time.perf_counter()
        if n and first is None:
            first = (now, n)
        if n >= target:
            break
        if on_poll is not None:
            on_poll()
        if now - start > timeout:
            raise TimeoutError(f"only {n} of {target} frames after {timeout}s")
        time.sleep(0.02)
    assert first is not None
    if now - first[0] < 1e-3:
        raise RuntimeError("everything committed in one poll: use more --frames")
    return (target - first[1]) / (now - first[0])


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(60)


def backends_of(pids: list[int]) -> list[int]:
    """PostgreSQL backend PIDs serving the TCP connections of ``pids``."""
    ports = set().union(*(tcp_ports(p) for p in pids))
    if not ports:
        return []
    rows = monitor().execute("SELECT pid FROM pg_stat_activity WHERE client_port = ANY(%s)", [list(ports)]).fetchall()
    return [int(r[0]) for r in rows]


def bench_drain(
    env: Env, frames: list[Frame], tmp: Path, writers: int = 1, cpu: dict[str, float] | None = None
) -> float:
    """Readings/s one or more writers commit from a pre-filled backlog. ``cpu`` gets the writers'
    and their PostgreSQL backends' CPU seconds from the first commit on, and the readings meanwhile."""
    ns, schema = env.fresh()
    key = "{" + ns + "}:normal"
    for i in range(0, len(frames), 500):
        pipe = env.redis.pipeline(transaction=False)
        for f in frames[i : i + 500]:
            pipe.xadd(key, encode(f))  # type: ignore[arg-type]
        pipe.execute()
    ws = [start_writer(env, ns, schema, f"drain{i}", tmp / f"drain{i}.json") for i in range(writers)]
    wpids = [w.pid for w in ws]
    client, server = Group(wpids), Group(lambda: backends_of(wpids))
    first: list[int] = []

    def poll() -> None:
        if not first:
            n = committed(schema)
            if n:
                first.append(n)
                client.start()
                server.start()
        else:
            server.sample()  # backends are seen while they live

    rate = commit_rate(schema, len(frames), 600, poll)
    client.sample()
    server.sample()
    stop_all(ws)
    if cpu is not None and first:
        cpu.update(client=client.cpu, server=server.cpu, readings=(len(frames) - first[0]) * env.channels)
    return rate * env.channels


def bench_live(
    env: Env, writers: int, producers: int, per_producer: int, tmp: Path, groups: dict[str, Group] | None = None
) -> float:
    ns, schema = env.fresh()
    ws = [start_writer(env, ns, schema, f"w{i}", tmp / f"live{i}.json") for i in range(writers)]
    time.sleep(1.0)  # writers connected and partitions checked
    penv = env.env(ns, schema, TELEMETRY_SIMULATE__RATE_HZ="0", TELEMETRY_SIMULATE__COUNT=str(per_producer),
                   TELEMETRY_SIMULATE__DEVICES="10", TELEMETRY_SIMULATE__CHANNELS=str(env.channels),
                   TELEMETRY_LOG_LEVEL="WARNING")  # fmt: skip
    t0 = time.perf_counter()
    ps = [subprocess.Popen([sys.executable, "-m", "producers.cli", "simulate"], env=penv, cwd=REPO)
          for _ in range(producers)]  # fmt: skip
    if groups is not None:
        groups["producer"] = Group([p.pid for p in ps])
        groups["writer"] = Group([w.pid for w in ws])
        groups["redis-server"] = Group(lambda: pids_of("redis-server"))
        groups["postgres"] = Group(lambda: pids_of("postgres"))
        busy0 = machine_busy()
        for g in groups.values():
            g.start()
    total = producers * per_producer

    def sample() -> None:
        for g in (groups or {}).values():
            g.sample()

    rate = commit_rate(schema, total, 900, sample)
    dt = time.perf_counter() - t0
    if groups is not None:
        sample()
        groups["_wall"] = Group([])
        groups["_wall"].cpu = dt
        busy1 = machine_busy()
        groups["_machine"] = Group([])
        groups["_machine"].cpu = (busy1[0] - busy0[0]) / max(1.0, busy1[1] - busy0[1])
    for p in ps:
        p.wait(60)
    stop_all(ws)
    return rate * env.channels


# ---- (5) storage: long layout (003) vs packed (004), issue 15 ------------------------------
def bench_storage(env: Env, frames: list[Frame], tmp: Path, runs: int, end: datetime | None = None) -> dict[str, Any]:
    """Bytes, WAL, load CPU and query p50s of both layouts on the same frames, observed over the
    12 hours before ``end`` (default: now); the narrow alternative's bytes; the archive's bytes
    (admin/archive.py, when pyarrow is installed)."""
    data = storage_bench.spread(frames, end=end)
    mid = data[len(data) // 2]
    params = {
        "device": mid.device, "channel": mid.channels[0].name, "session": mid.session,
        "since": max(f.observed_at for f in data) - timedelta(hours=1),
    }  # fmt: skip
    pid = os.getpid()
    _, old_schema = env.fresh(upto=LONG_LAYOUT)
    _, schema = env.fresh()
    out: dict[str, Any] = {"params": params}
    with (
        psycopg.connect(PG_DSN, autocommit=True, options=f"-c search_path={old_schema}") as old,
        psycopg.connect(PG_DSN, autocommit=True, options=f"-c search_path={schema}") as conn,
    ):
        long = storage_bench.load_long(old, rows_of(data), READINGS_COPY, READINGS_TYPES, pid)
        storage_bench.settle(old, long, old_schema)
        packed = storage_bench.load_packed(conn, data, pid)
        storage_bench.settle(conn, packed, schema)
        storage_bench.time_queries([(old, long), (conn, packed)], params, runs)
        out.update(long=long, packed=packed)
        ledger = sum(b for n, _, b in packed.sizes if n.startswith("frame_keys"))
        out["narrow"] = storage_bench.narrow_alternative(conn, schema) + ledger
        out["archive"] = archive_bytes(conn, schema, tmp)
    return out


def archive_bytes(conn: psycopg.Connection[Any], schema: str, tmp: Path) -> tuple[int, int] | str:
    """(bytes of the Parquet files, readings in them) for every day of the packed schema."""
    try:
        from admin.archive import export_day
    except ImportError as exc:  # pyarrow is the optional extra `archive`
        return f"not measured ({exc})"
    days = [r[0] for r in conn.execute("SELECT DISTINCT (observed_at AT TIME ZONE 'UTC')::date FROM readings_packed")]
    total, readings = 0, 0
    for day in days:
        path, n = export_day(conn, day, tmp / schema, drop=False)
        total += path.stat().st_size
        readings += n
    return total, readings


# ---- (4) latency ---------------------------------------------------------------------------
def bench_latency(env: Env, tmp: Path, seconds: float) -> dict[str, Any]:
    """p50/p99 at 10,000 readings/s: 10 devices x 10 channels x 100 Hz."""
    ns, schema = env.fresh()
    out = tmp / "lat.json"
    w = start_writer(env, ns, schema, "lat", out)
    time.sleep(1.0)
    penv = env.env(ns, schema, TELEMETRY_SIMULATE__RATE_HZ="100", TELEMETRY_SIMULATE__DEVICES="10",
                   TELEMETRY_SIMULATE__CHANNELS="10", TELEMETRY_LOG_LEVEL="WARNING")  # fmt: skip
    p = subprocess.Popen([sys.executable, "-m", "producers.cli", "simulate"], env=penv, cwd=REPO)
    g = Group([p.pid])
    g.start()
    time.sleep(seconds)
    g.sample()
    stop_all([p])
    time.sleep(1.0)
    stop_all([w])
    data = json.loads(out.read_text())
    lat: dict[str, Any] = data["latency"]["normal"]
    lat["rate"] = data["rows"] / seconds
    lat["producer_cpu_pct"] = 100 * g.cpu / seconds
    return lat


def bench_critical_under_flood(env: Env, tmp: Path, bulk_frames: int, seconds: float) -> dict[str, Any]:
    ns, schema = env.fresh()
    out = tmp / "crit.json"
    # A bulk import floods the bulk stream while a critical source publishes at 20 Hz.
    bulk_env = env.env(ns, schema, TELEMETRY_SIMULATE__RATE_HZ="0", TELEMETRY_SIMULATE__COUNT=str(bulk_frames),
                       TELEMETRY_SIMULATE__DEVICES="10", TELEMETRY_SIMULATE__CHANNELS=str(env.channels),
                       TELEMETRY_SIMULATE__PRIORITY="bulk", TELEMETRY_LOG_LEVEL="WARNING")  # fmt: skip
    crit_env = env.env(ns, schema, TELEMETRY_SIMULATE__RATE_HZ="20", TELEMETRY_SIMULATE__DEVICES="1",
                       TELEMETRY_SIMULATE__CHANNELS="4", TELEMETRY_SIMULATE__PRIORITY="critical",
                       TELEMETRY_LOG_LEVEL="WARNING")  # fmt: skip
    bulk = subprocess.Popen([*NICE_BULK, sys.executable, "-m", "producers.cli", "simulate"], env=bulk_env, cwd=REPO)
    time.sleep(2.0)  # a backlog builds up before the writer starts
    w = start_writer(env, ns, schema, "crit", out)
    t0 = time.perf_counter()
    while committed(schema) == 0 and time.perf_counter() - t0 < 60:  # steady state: the writer is draining
        time.sleep(0.05)
    crit = subprocess.Popen([sys.executable, "-m", "producers.cli", "simulate"], env=crit_env, cwd=REPO)
    time.sleep(seconds)
    backlog = int(env.redis.xlen("{" + ns + "}:bulk"))
    stop_all([crit, bulk])
    stop_all([w])
    data = json.loads(out.read_text())
    lat: dict[str, Any] = data["latency"].get("critical", {})
    lat["bulk_rows_during"] = data["latency"].get("bulk", {}).get("count", 0) * env.channels
    lat["bulk_stream_len_at_end"] = backlog
    return lat


def write_csv(path: Path, rows: int) -> None:
    """A synthetic dyno log (labelled synthetic): time + 4 channels, one row per 10 ms, ending now."""
    from datetime import UTC, datetime, timedelta

    start = datetime.now(UTC) - timedelta(seconds=rows / 100)
    with path.open("w") as fh:
        fh.write("time,rpm,afr,map,tps\n")
        for i in range(rows):
            t = (start + timedelta(milliseconds=10 * i)).isoformat()
            fh.write(f"{t},{3000 + i % 5000},{13 + (i % 40) / 10},{100 + i % 50},{i % 100}\n")


def bench_import_with_live(env: Env, tmp: Path, rows: int) -> dict[str, Any]:
    """A 1,000,000-row CSV import (the real file_import job, niced like the deployed rq worker)
    while live normal (10,000 readings/s) and critical (20 Hz) sources publish."""
    ns, schema = env.fresh()
    csv = tmp / "import.csv"
    write_csv(csv, rows)
    out = tmp / "imp.json"
    w = start_writer(env, ns, schema, "imp", out)
    live_env = env.env(ns, schema, TELEMETRY_SIMULATE__RATE_HZ="100", TELEMETRY_SIMULATE__DEVICES="10",
                       TELEMETRY_SIMULATE__CHANNELS="10", TELEMETRY_LOG_LEVEL="WARNING")  # fmt: skip
    crit_env = env.env(ns, schema, TELEMETRY_SIMULATE__RATE_HZ="20", TELEMETRY_SIMULATE__DEVICES="1",
                       TELEMETRY_SIMULATE__CHANNELS="4", TELEMETRY_SIMULATE__PRIORITY="critical",
                       TELEMETRY_LOG_LEVEL="WARNING")  # fmt: skip
    live = subprocess.Popen([sys.executable, "-m", "producers.cli", "simulate"], env=live_env, cwd=REPO)
    crit = subprocess.Popen([sys.executable, "-m", "producers.cli", "simulate"], env=crit_env, cwd=REPO)
    time.sleep(2.0)
    code = (
        "import sys, json; from pathlib import Path; from redis import Redis;"
        "from producers.file_import.job import run_import, ImportOptions;"
        f"r = run_import(Redis.from_url({REDIS_URL!r}), Path({str(csv)!r}), ImportOptions(namespace={ns!r}));"
        "print(json.dumps(r))"
    )
    t0 = time.perf_counter()
    imp = subprocess.run([*NICE_BULK, sys.executable, "-c", code], cwd=REPO, env=env.env(ns, schema),
                         capture_output=True, text=True, timeout=1200)  # fmt: skip
    import_s = time.perf_counter() - t0
    stop_all([crit, live])
    time.sleep(1.0)
    stop_all([w])
    data = json.loads(out.read_text())
    summary = json.loads(imp.stdout.strip().splitlines()[-1]) if imp.returncode == 0 else {"error": imp.stderr[-300:]}
    return {
        "import_rows": summary.get("rows", 0), "import_s": import_s,
        "normal": data["latency"].get("normal", {}), "critical": data["latency"].get("critical", {}),
        "bulk_rows": data["latency"].get("bulk", {}).get("count", 0), "error": summary.get("error"),
    }  # fmt: skip


def gps_cost() -> str:
    script = REPO / "bench" / "gps_cost.py"
    if not script.exists():
        return "bench/gps_cost.py not present"
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=REPO)
    return (proc.stdout.strip().splitlines() or ["(no output)"])[-1] if proc.returncode == 0 else proc.stderr[-300:]


YARDSTICK = "raw COPY yardstick (bench process)"
DRAIN = "writer drain, 1 writer"
Run = tuple[float, float, dict[str, dict[str, float]]]
"""(yardstick rows/s, drain readings/s, CPU seconds by process group) of one back-to-back pair."""


def per_reading_us(c: dict[str, float], key: str) -> float:
    return 1e6 * c.get(key, 0) / max(1.0, c.get("readings", 0))


def median_run(runs: list[Run]) -> Run:
    """The run whose drain/yardstick ratio is the median (a shared machine's load varies between
    runs; a pair measured back to back shares it)."""
    ordered = sorted(runs, key=lambda r: r[1] / r[0])
    return ordered[(len(ordered) - 1) // 2]


def print_drain_runs(runs: list[Run]) -> None:
    """Every yardstick/drain pair, wall-clock and CPU per reading from /proc, and the medians."""
    print(f"\nsingle-writer drain vs the raw-COPY yardstick, {len(runs)} run(s) back to back:")
    print(
        "| run | yardstick rows/s | drain readings/s | ratio | yardstick CPU µs/reading client + PG |"
        " writer CPU µs/reading writer + PG |\n|---|---|---|---|---|---|"
    )
    for k, (copy, drain, cpu) in enumerate(runs, 1):
        y, d = cpu[YARDSTICK], cpu[DRAIN]
        print(
            f"| {k} | {copy:,.0f} | {drain:,.0f} | {drain / copy:.2f} | {per_reading_us(y, 'client'):.2f} +"
            f" {per_reading_us(y, 'server'):.2f} | {per_reading_us(d, 'client'):.2f} +"
            f" {per_reading_us(d, 'server'):.2f} |"
        )
    med = statistics.median

    def cpu_med(group: str, key: str) -> float:
        return med(per_reading_us(c[group], key) for _, _, c in runs)

    print(
        f"| median | {med(r[0] for r in runs):,.0f} | {med(r[1] for r in runs):,.0f} |"
        f" {med(r[1] / r[0] for r in runs):.2f} | {cpu_med(YARDSTICK, 'client'):.2f} +"
        f" {cpu_med(YARDSTICK, 'server'):.2f} | {cpu_med(DRAIN, 'client'):.2f} + {cpu_med(DRAIN, 'server'):.2f} |"
    )


def print_storage(st: dict[str, Any], copy: float, drain: float, cpu: dict[str, dict[str, float]]) -> None:
    """Issue 15's figures: bytes per reading (hot, by table and index; archived), WAL, drain vs
    the yardstick, CPU per reading, query p50s."""
    long, packed = st["long"], st["packed"]
    print(f"\nstorage, {packed.readings:,} readings (VACUUM ANALYZE; partitions summed into their table):")
    print("| layout | relation | kind | bytes | bytes/reading |\n|---|---|---|---|---|")
    for lay in (long, packed):
        for name, is_index, b in lay.sizes:
            if b >= 0.005 * lay.total:  # the empty partitions and small tables are in the total
                kind = "index" if is_index else "table"
                print(f"| {lay.name} | {name} | {kind} | {b:,} | {lay.per_reading(b):.1f} |")
        print(f"| {lay.name} | **total** (all relations) | | {lay.total:,} | **{lay.per_reading(lay.total):.1f}** |")
    hot = packed.per_reading(packed.total)
    print(
        f"hot bytes/reading: {hot:.1f} vs {long.per_reading(long.total):.1f} before "
        f"(x{hot / long.per_reading(long.total):.2f}); target <= 80 -> {'MET' if hot <= 80 else 'MISSED'}"
    )
    ledger = sum(b for n, _, b in packed.sizes if n.startswith("frame_keys"))
    print(
        f"alternative measured: narrow rows (series, observed_at, frame, value, quality; btree (series, time))"
        f" + per-frame table + ledger: {packed.per_reading(st['narrow']):.1f} bytes/reading"
        f" (ledger alone {packed.per_reading(ledger):.1f})"
    )
    arch = st["archive"]
    if isinstance(arch, tuple):
        per = arch[0] / max(1, arch[1])
        print(
            f"archived (Parquet, zstd, one file a day): {arch[0]:,} bytes for {arch[1]:,} readings = {per:.2f}"
            f" bytes/reading (x{per / hot:.3f} of hot); target <= 8 -> {'MET' if per <= 8 else 'MISSED'}"
        )
    else:
        print(f"archived: {arch}")
    print(
        f"WAL bytes/reading while loading: long (raw COPY + ledger) {long.per_reading(long.wal_bytes):.1f}, "
        f"packed (the writer's write_frames, ledger + state included) {packed.per_reading(packed.wal_bytes):.1f} "
        f"(x{packed.wal_bytes / max(1, long.wal_bytes):.2f}; the server is shared, other sessions' WAL included)"
    )
    print(
        f"single-writer drain (median run) {drain:,.0f} readings/s vs the raw-COPY yardstick {copy:,.0f} rows/s: "
        f"x{drain / copy:.2f}; target >= 1.0 -> {'MET' if drain >= copy else 'MISSED'}"
    )
    print("| CPU per reading (µs, /proc) | client | PostgreSQL backend(s) |\n|---|---|---|")
    for name, c in cpu.items():
        n = max(1.0, c.get("readings", 0))
        print(f"| {name} | {1e6 * c.get('client', 0) / n:.2f} | {1e6 * c.get('server', 0) / n:.2f} |")
    for lay in (long, packed):
        n = max(1, lay.readings)
        client, server = 1e6 * lay.client_cpu_s / n, 1e6 * lay.server_cpu_s / n
        print(f"| load into {lay.name} (in-process) | {client:.2f} | {server:.2f} |")
    print(f"\nquery p50 (ms), same data, params {st['params']}:")
    print("| query | rows | before (long) | after (packed view) | after/before |\n|---|---|---|---|---|")
    for q in long.p50_ms:
        b, a = long.p50_ms[q], packed.p50_ms[q]
        rows = f"{long.rows[q]}" if long.rows[q] == packed.rows[q] else f"{long.rows[q]} vs {packed.rows[q]} (DIFFER)"
        print(f"| {q} | {rows} | {b:.2f} | {a:.2f} | {a / b:.2f} |")


def window_end(hhmm: str) -> datetime:
    """``--data-end``: today at HH:MM UTC."""
    try:
        at = datetime.strptime(hhmm, "%H:%M").time()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{hhmm!r} is not HH:MM") from None
    return datetime.combine(datetime.now(UTC).date(), at, UTC)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=50_000)
    ap.add_argument("--channels", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    ap.add_argument("--import-rows", type=int, default=1_000_000, help="rows of the CSV import run; 0 = skip")
    ap.add_argument(
        "--storage-only", action="store_true", help="only the yardstick, the 1-writer drain and the storage figures"
    )
    ap.add_argument(
        "--repeat", type=int, default=3, help="runs of the yardstick and the 1-writer drain (the median is reported)"
    )
    ap.add_argument(
        "--data-end",
        type=window_end,
        metavar="HH:MM",
        help="UTC time of today at which the storage figures' 12 hours of data end (default: now); "
        "the long layout's query plans depend on it",
    )
    args = ap.parse_args()
    n = 5_000 if args.quick else args.frames
    env = Env(args.channels)
    frames = make_frames(n, args.channels)
    rows = n * args.channels
    say(f"{n} frames x {args.channels} channels = {rows} readings per run; machine: {os.cpu_count()} cores")
    tmp = Path(tempfile.mkdtemp(prefix="bench"))
    runs: list[tuple[float, float, dict[str, dict[str, float]]]] = []
    try:
        for k in range(args.repeat):  # yardstick and drain back to back: both see the same machine load
            run_cpu: dict[str, dict[str, float]] = {YARDSTICK: {}, DRAIN: {}}
            copy = bench_raw_copy(env, frames, run_cpu[YARDSTICK])
            say(f"(1) raw binary COPY: {copy:,.0f} rows/s (run {k + 1} of {args.repeat})")
            drain = bench_drain(env, frames, tmp, cpu=run_cpu[DRAIN])
            say(f"(3) writer drain of a pre-filled backlog: {drain:,.0f} rows/s (x{drain / copy:.2f})")
            runs.append((copy, drain, run_cpu))
        copy, drain, cpu = median_run(runs)
        st = bench_storage(env, frames, tmp, 10 if args.quick else 200, args.data_end)
        say("(5) storage figures measured")
        if not args.storage_only:
            xadd, xread = bench_raw_redis(env, frames)
            say(
                f"(1) raw XADD {xadd:,.0f} entries/s = {xadd * args.channels:,.0f} readings/s; "
                f"XREADGROUP {xread:,.0f} entries/s"
            )
            sa = bench_sqlalchemy(env, frames[: max(1, n // 5)])
            say(f"(2) SQLAlchemy bulk_insert_mappings, batches of 50: {sa:,.0f} rows/s")
            per_row = bench_row_inserts(env, frames[: max(1, 3000 // args.channels)])
            say(f"(2) per-row INSERT + commit: {per_row:,.0f} rows/s")
            drain2 = bench_drain(env, frames, tmp, writers=2)
            say(f"(3) drain with 2 writer replicas: {drain2:,.0f} rows/s")
            live: dict[int, float] = {}
            groups: dict[str, Group] = {}
            for w in (1, 2, 4):
                live[w] = bench_live(env, w, 2, n // 2, tmp, groups if w == 1 else None)
                say(f"(3) live end-to-end, 2 simulate producers, {w} writer(s): {live[w]:,.0f} readings/s")
            lat = bench_latency(env, tmp, 10 if args.quick else 20)
            say(f"(4) latency at {lat['rate']:,.0f} readings/s: p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms")
            crit = bench_critical_under_flood(env, tmp, n * 2, 10 if args.quick else 20)
            p50, p99 = crit.get("p50_ms", 0), crit.get("p99_ms", 0)
            say(f"(4) critical during bulk flood: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
            imp: dict[str, Any] = {}
            if args.import_rows:
                imp = bench_import_with_live(env, tmp, 20_000 if args.quick else args.import_rows)
                say(
                    f"(6) import of {imp['import_rows']:,} CSV rows in {imp['import_s']:.0f} s with live data:"
                    f" normal p99 {imp['normal'].get('p99_ms', 0):.0f} ms,"
                    f" critical p99 {imp['critical'].get('p99_ms', 0):.0f} ms"
                )
            gps = gps_cost()
    finally:
        env.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)

    print_drain_runs(runs)
    print_storage(st, copy, drain, cpu)
    if args.storage_only:
        return
    print("\n| figure | value | x raw COPY (1) | x SQLAlchemy (2) | target |")
    print("|---|---|---|---|---|")

    def row(name: str, v: float, unit: str = "rows/s", target: str = "") -> None:
        print(f"| {name} | {v:,.0f} {unit} | {v / copy:.2f} | {v / sa:.1f} | {target} |")

    row("raw binary COPY into readings (1)", copy)
    row("raw XADD (readings/s)", xadd * args.channels, "readings/s")
    row("raw XREADGROUP (readings/s)", xread * args.channels, "readings/s")
    row("SQLAlchemy bulk_insert_mappings x50 (2)", sa)
    row("per-row INSERT + commit", per_row)
    row("writer drain, backlog, 1 writer", drain, target=f">= 1.0 x (1) -> {'MET' if drain >= copy else 'MISSED'}")
    row("writer drain, backlog, 2 writers", drain2, target=f"{'MET' if drain2 >= 0.6 * copy else 'MISSED'}")
    for w, v in live.items():
        tgt = f">= 150,000 -> {'MET' if v >= 150_000 else 'MISSED'}" if w == 1 else ""
        row(f"live end-to-end, {w} writer(s)", v, "readings/s", tgt)
    print(
        f"\nlatency at {lat['rate']:,.0f} readings/s (producer read -> commit): p50 {lat['p50_ms']:.1f} ms, "
        f"p99 {lat['p99_ms']:.1f} ms, max {lat['max_ms']:.1f} ms; simulate producer CPU "
        f"{lat['producer_cpu_pct']:.1f} % of a core"
    )
    print(
        f"critical during a bulk flood: p50 {crit.get('p50_ms', 0):.1f} ms, p99 {crit.get('p99_ms', 0):.1f} ms "
        f"over {crit.get('count', 0)} frames ({crit['bulk_rows_during']:,} bulk rows committed meanwhile, "
        f"bulk stream length at end {crit['bulk_stream_len_at_end']:,}); target p99 <= 50 ms -> "
        f"{'MET' if crit.get('p99_ms', 1e9) <= 50 else 'MISSED'}"
    )
    wall = groups.pop("_wall").cpu
    machine = groups.pop("_machine").cpu
    print(
        f"\nresources during the 1-writer live run ({wall:.1f} s wall; the whole machine was "
        f"{100 * machine:.0f} % busy over its {os.cpu_count()} cores):"
    )
    print("| process | CPU (% of one core) | peak RSS (MiB) |\n|---|---|---|")
    for name, g in groups.items():
        extra = " (target <= 150)" if name == "writer" else ""
        print(f"| {name} ({len(g.pids)} procs) | {100 * g.cpu / wall:.0f} | {g.rss:.0f}{extra} |")
    if imp:
        n, c = imp["normal"], imp["critical"]
        print(
            f"\n1,000,000-row import with live data: {imp['import_rows']:,} rows in {imp['import_s']:.0f} s "
            f"({imp['import_rows'] / max(imp['import_s'], 1e-9):,.0f} rows/s, error: {imp['error']}); live normal "
            f"p50 {n.get('p50_ms', 0):.0f} ms / p99 {n.get('p99_ms', 0):.0f} ms; critical p50 "
            f"{c.get('p50_ms', 0):.0f} ms / p99 {c.get('p99_ms', 0):.0f} ms"
        )
    print(f"\nGPS producer at 10 Hz: {gps}")


if __name__ == "__main__":
    main()
