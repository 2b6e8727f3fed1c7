"""Small shared pieces of the issue-11 benches: a writer process from any checkout, RSS, /summary.

Not a test helper: benches print figures and assert nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parent.parent


def start_writer(env: dict[str, str], repo: Path, log: Path) -> subprocess.Popen[bytes]:
    """``python -m writer`` run from ``repo`` (this checkout, or an older one to compare)."""
    env = {**env, "PYTHONPATH": str(repo)}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "writer", "--consumer", "bench"], env=env, cwd=repo, stdout=out, stderr=out
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident (``VmRSS``) or peak resident (``VmHWM``) memory of ``pid`` in MiB; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def summary(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/summary", timeout=5) as resp:
        return dict(json.loads(resp.read()))


def frames_committed(dsn: str, schema: str) -> int:
    with psycopg.connect(dsn, autocommit=True, options=f"-c search_path={schema}") as conn:
        row = conn.execute("SELECT count(*) FROM frame_keys").fetchone()
    return int(row[0]) if row else 0


def env_without_telemetry() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
