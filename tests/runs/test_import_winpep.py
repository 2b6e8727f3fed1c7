"""Real Dynojet WinPEP 8 runs (shared/data/dyno, see its README) imported as runs: the summaries equal
what tests/runs/winpep_reference.py computes from the files themselves, and our SAE J1349 figures
(from the files' ATMO channels) agree with the dyno's own corrected power."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis import Redis

from common.settings import Settings
from runs.sae import Ambient, correction_factor
from tests.helpers import running_writer
from tests.runs import winpep_reference as ref
from tests.runs.helpers import admin, import_worker, with_queue

pytestmark = pytest.mark.integration
FILES = ("winpep8_wrl_RunFile_40.csv", "winpep8_wrl_RunFile_86.csv", "winpep8_wrl_RunFile_96.csv")
CPU, ATMO = "(DWRT CPU) ", "(DWRT ATMO) "


def import_all(settings: Settings, redis: Redis, shared_data: Path) -> list[dict[str, object]]:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    shown = []
    with running_writer(settings), import_worker(settings, redis):
        for i, name in enumerate(FILES):
            at = (start + timedelta(minutes=5 * i)).isoformat()
            out = admin(settings, "run", "import", str(shared_data / "dyno" / name), "--start", at,
                        "--name", "wrl", "--meta", "vehicle=WRL car (unnamed)")  # fmt: skip
            assert "frames from" in out and "(0 bad rows)" in out
            shown.append(json.loads(admin(settings, "run", "show", str(i + 1), "--json")))
    return shown


def test_winpep_runs_imported_with_independent_summaries(settings: Settings, redis: Redis, shared_data: Path) -> None:
    settings = with_queue(settings)
    runs = import_all(settings, redis, shared_data)
    assert [r["name"] for r in runs] == ["wrl", "wrl 2", "wrl 3"]
    for run, name in zip(runs, FILES, strict=True):
        cols = ref.columns(shared_data / "dyno" / name)
        summary, dyno = run["summary"], run["summary"]["dyno"]  # type: ignore[index]
        assert run["origin"] == "import" and run["status"] == "closed" and run["kind"] == "dyno"
        times = [t for t in cols["Time"] if t is not None]
        assert summary["duration_s"] == pytest.approx(times[-1] - times[0] + 0.001)  # type: ignore[index]
        assert summary["frames"] == len(times)  # type: ignore[index]
        # measured (uncorrected) peaks and the RPM (thousands in the file) of the same row
        i, power = ref.peak(cols, CPU + "Power (uncorrected)")
        assert dyno["peak_power"]["value"] == power and dyno["peak_power"]["unit"] == "hp"
        assert dyno["peak_power"]["rpm"] == pytest.approx(cols[CPU + "Engine RPM"][i] * 1000)  # type: ignore[operator]
        assert dyno["peak_power"]["elapsed_s"] == pytest.approx(cols["Time"][i])
        j, torque = ref.peak(cols, CPU + "Torque (uncorrected)")
        assert dyno["peak_torque"]["value"] == torque
        assert dyno["peak_torque"]["rpm"] == pytest.approx(cols[CPU + "Engine RPM"][j] * 1000)  # type: ignore[operator]
        # per-channel figures
        rpm = next(c for c in summary["channels"] if c["channel"] == "Engine RPM")  # type: ignore[index]
        values = [v for v in cols[CPU + "Engine RPM"] if v is not None]
        assert (rpm["min"], rpm["max"], rpm["count"]) == (min(values), max(values), len(values))
        assert rpm["mean"] == pytest.approx(sum(values) / len(values)) and rpm["good_share"] == 1.0
        # SAE J1349 from the run's mean ATMO readings, checked against the formula and the dyno's own figures
        sae = dyno["sae_j1349"]
        p_kpa = ref.mean(cols, ATMO + "Pressure") * 3.386389
        t_c = (ref.mean(cols, ATMO + "Temperature 1") - 32) * 5 / 9
        rh = ref.mean(cols, ATMO + "Humidity")
        assert sae["ambient_from"] == "channels"
        assert (sae["pressure_kpa"], sae["temperature_c"], sae["humidity_pct"]) == pytest.approx((p_kpa, t_c, rh))
        assert sae["correction_factor"] == pytest.approx(correction_factor(Ambient(p_kpa, t_c, rh)))
        cf_file = cols[CPU + "Correction Factor"][i]
        assert cf_file is not None and math.isclose(sae["correction_factor"], cf_file, abs_tol=0.003)
        corrected_file = cols[CPU + "Power"][i]
        assert corrected_file is not None and sae["peak_power"] == pytest.approx(corrected_file, rel=0.003)


def test_sql_summary_equals_the_in_memory_one(settings: Settings, redis: Redis, shared_data: Path) -> None:
    """The stored summary (per-channel figures computed by PostgreSQL) equals runs/summary.py's pure
    computation over all the run's readings."""
    from runs import store
    from runs.summary import summarise
    from writer.pg import connect_pg

    settings = with_queue(settings)
    with running_writer(settings), import_worker(settings, redis):
        admin(settings, "run", "import", str(shared_data / "dyno" / FILES[0]), "--start",
              (datetime.now(UTC) - timedelta(hours=1)).isoformat())  # fmt: skip
    with connect_pg(settings.postgres) as conn:
        run = store.get_run(conn, 1)
        assert run.ended_at is not None and run.summary is not None
        pure = summarise(store.readings_of(conn, run), run.started_at, run.ended_at, run.metadata)
    stored = json.loads(json.dumps(run.summary))
    pure = json.loads(json.dumps(pure))
    assert len(stored["channels"]) == len(pure["channels"]) == 16
    for a, b in zip(stored["channels"], pure["channels"], strict=True):
        assert a.pop("mean", None) == pytest.approx(b.pop("mean", None), rel=1e-12)
        assert a == b
    stored.pop("channels")
    pure.pop("channels")
    assert stored == pure
