"""file_import end to end: enqueue (rq, real Redis) -> the import worker -> bulk stream -> writer -> PostgreSQL.

The CSV is SYNTHETIC (no public real PowerVision / WinPEP 8 export exists). Each test uses its own
rq queue name (the test's namespace), so parallel runs do not take each other's jobs.
"""

from __future__ import annotations

import io
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis import Redis

from admin.imports import enqueue_import, watch_import
from common.queue import fetch_job, get_queue
from common.schema import Priority
from common.settings import FileImportSettings, Settings
from producers.file_import.mapping import ColumnMapping
from producers.file_import.worker import build_worker
from tests.conftest import REPO
from tests.helpers import count_readings, pg_query, remove_rq_keys, running_writer, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def isettings(settings: Settings, redis: Redis) -> Iterator[Settings]:
    """Settings with a queue of this test's own; its rq keys are removed afterwards."""
    s = settings.model_copy(
        update={"file_import": FileImportSettings(queue=f"imports-{settings.redis.namespace}", chunk_rows=50)}
    )
    yield s
    remove_rq_keys(redis, s.file_import.queue)
    assert not list(redis.scan_iter(match=f"rq:*{s.file_import.queue}*")), "rq keys left behind"


def make_csv(path: Path, rows: int, bad_every: int = 0) -> Path:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    lines = ["Time,device,Engine Speed (RPM),Coolant (C)"]
    for i in range(rows):
        ts = (start + timedelta(milliseconds=10 * i)).isoformat()
        rpm = "n/a" if bad_every and i % bad_every == bad_every - 1 else str(1000 + i)
        lines.append(f"{ts},bench-{i % 2},{rpm},{80 + i % 5}")
    path.write_text("\n".join(lines) + "\n")
    return path


def drained(redis: Redis, s: Settings) -> bool:
    """Every bulk entry read and acknowledged by the writer group."""
    groups = redis.xinfo_groups(s.redis.names.stream(Priority.BULK))
    return bool(groups) and all(g["lag"] == 0 and g["pending"] == 0 for g in groups)


def work(s: Settings, redis: Redis) -> None:
    build_worker(get_queue(s, redis), in_process=True).work(burst=True)


def test_import_twice_creates_no_duplicates(isettings: Settings, redis: Redis, tmp_path: Path) -> None:
    path = make_csv(tmp_path / "pull.csv", 300, bad_every=100)
    mapping = ColumnMapping(device_column="device")
    with running_writer(isettings):
        first = enqueue_import(isettings, path, mapping, connection=redis)
        work(isettings, redis)
        wait_for(lambda: count_readings(isettings) == 297 * 2, 30, what="first import in PostgreSQL")
        second = enqueue_import(isettings, path, mapping, connection=redis)
        work(isettings, redis)
        job = fetch_job(isettings, second, redis)
        assert job.get_status() == "finished"
        # the second run's 297 frames reach the writer and are dropped by the idempotency ledger
        wait_for(lambda: drained(redis, isettings), 30, what="writer caught up with the second import")
        assert count_readings(isettings) == 297 * 2
        assert pg_query(isettings, "SELECT frames, max_seq FROM producer_progress") == [(297, 297)]
    result = fetch_job(isettings, first, redis).return_value()
    assert result["frames"] == 297 and result["bad_rows"] == 3 and result["rows"] == 300
    assert [line for line, _ in result["bad_row_samples"]] == [101, 201, 301]  # header is line 1
    assert "'n/a' is not a number" in result["bad_row_samples"][0][1]
    meta = fetch_job(isettings, first, redis).get_meta(refresh=True)
    assert meta["percent"] == 100.0 and meta["rows"] == 300 and meta["state"] == "done"
    units = pg_query(isettings, "SELECT DISTINCT channel, unit, source FROM readings ORDER BY 1")
    assert units == [("Coolant", "degC", "file_import"), ("rpm", "rpm", "file_import")]
    out = io.StringIO()
    assert watch_import(isettings, first, out=out, interval=0.05, connection=redis) == 0
    text = out.getvalue()
    assert "100.0%" in text and "300 rows" in text and "bad row, line 101" in text


def test_worker_teardown_is_prompt(isettings: Settings, redis: Redis) -> None:
    """rq polls its command channel every 60 s and redis-py >= 8 joins that thread on stop: a
    ``--burst`` worker then took up to a minute to exit after its last job."""
    worker = build_worker(get_queue(isettings, redis))
    worker.subscribe()  # type: ignore[no-untyped-call]
    assert worker.pubsub_thread is not None and worker.pubsub_thread.sleep_time <= 1.0
    started = time.monotonic()
    worker.unsubscribe()  # type: ignore[no-untyped-call]
    assert not worker.pubsub_thread.is_alive()
    assert time.monotonic() - started < 15, "teardown waited for rq's 60 s poll"


def test_import_waits_for_the_writer_backlog(isettings: Settings, redis: Redis, tmp_path: Path) -> None:
    s = isettings.model_copy(
        update={"file_import": FileImportSettings(queue=isettings.file_import.queue, chunk_rows=20, max_backlog=40)}
    )
    path = make_csv(tmp_path / "slow.csv", 400)
    job_id = enqueue_import(s, path, ColumnMapping(device_column="device"), connection=redis)
    # the stock CLI, as deployed; no TELEMETRY_* variables: the job carries what it needs
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    cmd = ["telemetry-import-worker", "--burst"]
    env.update(
        TELEMETRY_REDIS__URL=s.redis.url,
        TELEMETRY_REDIS__NAMESPACE=s.redis.namespace,
        TELEMETRY_FILE_IMPORT__QUEUE=s.file_import.queue,
    )
    worker = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    job = fetch_job(s, job_id, redis)
    # no writer yet: the job stops after about max_backlog entries and says why
    wait_for(lambda: "waiting" in str(job.get_meta(refresh=True).get("state")), 15, what="back-pressure")
    assert redis.xlen(s.redis.names.stream(Priority.BULK)) <= 40 + 20
    with running_writer(s):
        try:
            _, err = worker.communicate(timeout=30)
        finally:
            worker.kill()
            worker.wait()
        assert worker.returncode == 0, err.decode()[-2000:]
        wait_for(lambda: count_readings(s) == 400 * 2, 30, what="all rows after the writer started")
    assert job.get_status(refresh=True) == "finished"
