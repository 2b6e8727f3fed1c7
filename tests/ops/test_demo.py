"""deploy/demo.sh as a new user runs it: the pipeline starts, and every hint it prints works when
typed into a second shell (issue 10.6: the hints lacked the demo's DSN there).

The demo runs with a namespace and schema of this test's own (the demo keeps TELEMETRY_*
variables that are already set) and its env file in the test's folder; ``telemetry-admin
status`` is run as ``status --json`` (the live view never ends by itself).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from redis import Redis

from tests.conftest import REPO
from tests.helpers import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_hints_work_in_a_second_shell(
    tmp_path: Path, redis_url: str, pg_dsn: str, namespace: str, redis: Redis
) -> None:
    envfile = tmp_path / "demo.env"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    env.update(
        TELEMETRY_REDIS__URL=redis_url,
        TELEMETRY_REDIS__NAMESPACE=namespace,
        TELEMETRY_POSTGRES__DSN=pg_dsn,
        TELEMETRY_POSTGRES__SCHEMA_NAME=namespace,
        DEMO_ENV_FILE=str(envfile),
    )
    out = tmp_path / "demo.out"
    with out.open("wb") as sink:
        demo = subprocess.Popen(
            ["bash", "deploy/demo.sh"], cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:

        def hints_printed() -> bool:
            assert demo.poll() is None, f"demo exited with {demo.returncode}:\n{out.read_text()[-3000:]}"
            return "in another shell:" in out.read_text(errors="replace")

        wait_for(hints_printed, 90, interval=0.2, what="the hints")
        text = out.read_text()
        hints = [line.split("   #")[0].strip() for line in text.split("in another shell:")[1].splitlines()]
        hints = [h for h in hints if h]
        assert hints[0] == f"source {envfile}", hints
        assert any("status" in h for h in hints) and any("psql" in h for h in hints), hints
        # A second shell: nothing of the demo's environment but what the hint sources.
        shell_env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}

        def second_shell(command: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["bash", "-c", f"set -euo pipefail; {hints[0]}; {command}"],
                env=shell_env, capture_output=True, text=True, timeout=60, cwd=tmp_path,
            )  # fmt: skip

        def current_state_rows() -> bool:
            psql = next(h for h in hints if h.startswith("psql"))
            return bool(re.search(r"\(\d+ rows?\)", second_shell(psql).stdout))

        wait_for(current_state_rows, 60, interval=0.5, what="readings in current_state through the psql hint")
        for hint in hints[1:]:
            command = re.sub(r"telemetry-admin status$", "telemetry-admin status --json", hint)
            done = second_shell(command)
            assert done.returncode == 0, f"{hint!r} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
            assert "Traceback" not in done.stderr and "does not exist" not in done.stderr, done.stderr
            assert done.stdout.strip(), f"{hint!r} printed nothing"
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGTERM)
        try:
            demo.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(10)
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(namespace)))
