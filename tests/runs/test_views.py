"""run compare / plot / export on real runs (WinPEP 8 files of shared/data/dyno imported as runs), and an
export -> re-import round trip into another schema giving the same readings."""

from __future__ import annotations

import json
import struct
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from redis import Redis

from common.schema import Channel, Frame, Quality
from common.settings import Settings
from tests.conftest import settings_for
from tests.helpers import count_readings, pg_query, running_writer, wait_for
from tests.integration.pipeline import publish
from tests.runs import winpep_reference as ref
from tests.runs.helpers import admin, import_worker, with_queue

pytestmark = pytest.mark.integration
START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


def _import(settings: Settings, redis: Redis, shared_data: Path, *numbers: int) -> None:
    with running_writer(settings), import_worker(settings, redis):
        for i, n in enumerate(numbers):
            at = (START + timedelta(minutes=5 * i)).isoformat()
            admin(settings, "run", "import", str(shared_data / "dyno" / f"winpep8_wrl_RunFile_{n}.csv"),
                  "--start", at, "--name", f"RunFile_{n}")  # fmt: skip


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def test_compare_and_plot_two_real_runs(settings: Settings, redis: Redis, shared_data: Path, tmp_path: Path) -> None:
    settings = with_queue(settings)
    _import(settings, redis, shared_data, 86, 96)
    out = json.loads(admin(settings, "run", "compare", "RunFile_86", "RunFile_96", "--json"))
    c86 = ref.columns(shared_data / "dyno" / "winpep8_wrl_RunFile_86.csv")
    c96 = ref.columns(shared_data / "dyno" / "winpep8_wrl_RunFile_96.csv")
    p86, p96 = ref.peak(c86, "(DWRT CPU) Power (uncorrected)")[1], ref.peak(c96, "(DWRT CPU) Power (uncorrected)")[1]
    power = out["peaks"]["peak_power"]
    assert (power["a"], power["b"], power["unit"]) == (p86, p96, "hp")
    assert power["delta"] == pytest.approx(p96 - p86)
    assert out["bins"] and all(r["rpm_to"] - r["rpm_from"] == 250 for r in out["bins"])
    text = admin(settings, "run", "compare", "RunFile_86", "RunFile_96")
    assert "peak power" in text and "largest gain" in text
    png = tmp_path / "cmp.png"
    assert "bytes" in admin(settings, "run", "plot", "RunFile_86", "RunFile_96", "--out", str(png))
    assert png_size(png) == (1200, 700) and png.stat().st_size > 20_000
    chans = tmp_path / "chans.png"
    admin(settings, "run", "plot", "RunFile_86", "--channel", "Speed", "--channel", "AFR", "--out", str(chans))
    assert png_size(chans) == (1200, 700)
    # a non-dyno run cannot be compared: a clear error
    admin(settings, "run", "start", "--name", "empty", "--device", "nothing", "--at", START.isoformat())
    admin(settings, "run", "stop", "empty", "--at", (START + timedelta(seconds=1)).isoformat())
    assert "has no dyno summary" in admin(settings, "run", "compare", "empty", "RunFile_86", ok=False)


@pytest.fixture
def other(redis_url: str, pg_dsn: str) -> Iterator[Settings]:
    """A second deployment (Redis namespace and PostgreSQL schema) to re-import into."""
    from admin.migrate import migrate

    ns = "t" + uuid.uuid4().hex[:10]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        migrate(conn, ns)
    yield with_queue(settings_for(redis_url, pg_dsn, ns, ns))
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(psycopg.sql.Identifier(ns)))
    client = Redis.from_url(redis_url)
    keys = list(client.scan_iter(match="{" + ns + "}*", count=1000))
    if keys:
        client.delete(*keys)


GOOD = "SELECT observed_at, device, channel, unit, value, text_value FROM readings WHERE quality = 'good'"


def test_export_reimport_round_trip(settings: Settings, redis: Redis, other: Settings, tmp_path: Path) -> None:
    t0 = START
    frames = []
    for i in range(20):
        at = t0 + timedelta(milliseconds=50 * i + 3)
        afr = Channel("AFR", None, "afr", Quality.ERROR) if i == 5 else Channel("AFR", 12.5 + i / 100, "afr")
        chans = [Channel("Engine RPM", 2000.0 + 123.456789 * i, "rpm"), Channel("Torque", 1 / (i + 3), "N*m"),
                 Channel("gear", f"G{i // 7 + 1}", ""), afr]  # fmt: skip
        # (text that looks like a number, "1", would come back as a number: a limit of the CSV import)
        frames.append(Frame("simulate", "car" if i % 2 else "car-b", at, at, i, tuple(chans)))
    with running_writer(settings):
        publish(settings, redis, frames)
        wait_for(lambda: count_readings(settings) == 80, 30)
    admin(settings, "run", "start", "--name", "rt", "--device", "car", "--device", "car-b", "--at", t0.isoformat())
    admin(settings, "run", "stop", "rt", "--at", (t0 + timedelta(seconds=2)).isoformat())
    csv_file = tmp_path / "rt.csv"
    assert "20 rows x 7 columns" in admin(settings, "run", "export", "rt", "--out", str(csv_file))
    header = csv_file.read_text().splitlines()[0]
    assert header == "time_utc,elapsed_s,device,AFR [afr],Engine RPM [rpm],Torque [N*m],gear"  # channels by name
    side = json.loads((tmp_path / "rt.csv.run.json").read_text())
    assert side["name"] == "rt" and side["summary"]["frames"] == 20
    first = csv_file.read_text().splitlines()[1].split(",")
    assert first[:3] == [(t0 + timedelta(milliseconds=3)).isoformat().replace("+00:00", "Z"), "0.003", "car-b"]
    # jsonl and parquet carry the same rows and the run
    jl = tmp_path / "rt.jsonl"
    admin(settings, "run", "export", "rt", "--format", "jsonl", "--out", str(jl))
    lines = [json.loads(line) for line in jl.read_text().splitlines()]
    assert lines[0]["run"]["summary"]["readings"] == 80 and len(lines) == 21
    assert lines[6]["AFR [afr]"] is None and lines[6]["Torque [N*m]"] == 1 / 8
    pq = tmp_path / "rt.parquet"
    admin(settings, "run", "export", "rt", "--format", "parquet", "--out", str(pq))
    import pyarrow.parquet as pqm

    table = pqm.read_table(pq)
    assert table.num_rows == 20 and json.loads(table.schema.metadata[b"run"])["name"] == "rt"
    assert table.column("Engine RPM [rpm]").to_pylist()[3] == 2000.0 + 123.456789 * 3
    # re-import the CSV into the other deployment: the same good readings, as a run of its own
    with running_writer(other), import_worker(other, redis):
        out = admin(other, "run", "import", str(csv_file), "--name", "rt", "--kind", "run")
    assert "20 frames" in out
    assert sorted(pg_query(other, GOOD)) == sorted(pg_query(settings, GOOD)) and len(pg_query(other, GOOD)) == 79
    back = json.loads(admin(other, "run", "show", "rt", "--json"))
    assert back["devices"] == ["car", "car-b"] and back["summary"]["frames"] == 20
