"""The package as a user installs it: a wheel built in isolation, installed into a fresh venv.

Runs the Dockerfile's own build steps (its build-stage ``COPY`` lines, then ``deploy/wheels.sh
build`` and ``install``) into a new virtual environment, checks the wheel lists every migration
exactly once, then runs ``telemetry-admin migrate`` and a short simulate -> writer -> PostgreSQL
pipeline with the venv's console scripts only, from a folder outside the checkout, so nothing
is imported from the source tree. Needs the package index (or pip's cache) for the dependencies.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import venv
import zipfile
from collections import Counter
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from redis import Redis

from tests.conftest import REPO
from tests.helpers import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FRAMES = 120


def dockerfile_build_copies() -> list[str]:
    """The source paths the Dockerfile's build stage copies (``COPY src dst`` before the first ``RUN``)."""
    text = (REPO / "deploy" / "Dockerfile").read_text()
    build_stage = text.split("FROM ")[1]
    return [m.group(1) for m in re.finditer(r"^COPY (?!--from)(\S+(?: \S+)*?) \S+$", build_stage, re.M)]


def test_dockerfile_build_stage_copies_what_the_wheel_needs() -> None:
    copies = " ".join(dockerfile_build_copies()).split()
    assert {"pyproject.toml", "README.md", "common", "producers", "writer", "runs", "admin", "deploy/wheels.sh"} <= set(
        copies
    )


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def test_wheel_installs_into_a_fresh_venv_and_runs_the_pipeline(
    tmp_path: Path, redis_url: str, pg_dsn: str, namespace: str, redis: Redis
) -> None:
    src, wheels, home, work = tmp_path / "src", tmp_path / "wheels", tmp_path / "venv", tmp_path / "run"
    src.mkdir()
    work.mkdir()
    for path in " ".join(dockerfile_build_copies()).split():
        if (REPO / path).is_dir():
            shutil.copytree(REPO / path, src / path, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (src / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / path, src / path)
    venv.create(home, with_pip=True)
    py = home / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEMETRY_", "PYTHON", "VIRTUAL_ENV"))}
    env["PYTHON"] = str(py)
    run(["bash", "deploy/wheels.sh", "build", str(wheels)], cwd=src, env=env)

    ours = list(wheels.glob("edge_telemetry-*.whl"))
    assert len(ours) == 1, sorted(p.name for p in wheels.iterdir())
    names = zipfile.ZipFile(ours[0]).namelist()
    assert [n for n, c in Counter(names).items() if c > 1] == []
    migrations = sorted(n for n in names if n.startswith("writer/migrations/"))
    shipped = REPO / "writer" / "migrations"  # the numbered files and roles/<role>.sql
    assert migrations == sorted(f"writer/migrations/{p.relative_to(shipped)}" for p in shipped.rglob("*.sql"))

    run(["bash", str(src / "deploy" / "wheels.sh"), "install", str(wheels)], cwd=work, env=env)
    where = run(
        [str(py), "-c", "import writer, producers, common, admin.cli; print(writer.__file__)"], cwd=work, env=env
    )
    assert where.strip().startswith(str(home)), where
    assert not list((home / "lib").rglob("__editable__*")), "installed editable"

    schema = namespace
    env.update(
        TELEMETRY_REDIS__URL=redis_url,
        TELEMETRY_REDIS__NAMESPACE=namespace,
        TELEMETRY_POSTGRES__DSN=pg_dsn,
        TELEMETRY_POSTGRES__SCHEMA_NAME=schema,
        TELEMETRY_HTTP__ENABLED="false",
        TELEMETRY_SIMULATE__COUNT=str(FRAMES),
        TELEMETRY_SIMULATE__DEVICES="2",
        TELEMETRY_SIMULATE__CHANNELS="3",
        TELEMETRY_SIMULATE__RATE_HZ="0",
    )
    bindir = home / "bin"
    try:
        out = run([str(bindir / "telemetry-admin"), "migrate"], cwd=work, env=env, timeout=120)
        versions = sorted(int(p.name[:3]) for p in (REPO / "writer" / "migrations").glob("*.sql"))
        assert f"applied {versions}" in out, out
        run([str(bindir / "telemetry-produce"), "simulate"], cwd=work, env=env, timeout=120)
        writer = subprocess.Popen(
            [str(bindir / "telemetry-write")], cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:

            def committed() -> int:
                with psycopg.connect(pg_dsn) as conn:
                    q = sql.SQL("SELECT count(*) FROM {}.frame_keys").format(sql.Identifier(schema))
                    row = conn.execute(q).fetchone()
                return int(row[0]) if row else 0

            wait_for(lambda: committed() >= FRAMES, 60, what=f"{FRAMES} frames committed by the installed writer")
            time.sleep(0.3)
            assert committed() == FRAMES
            with psycopg.connect(pg_dsn) as conn:
                q = sql.SQL("SELECT count(*) FROM {}.readings").format(sql.Identifier(schema))
                row = conn.execute(q).fetchone()
            assert row is not None and row[0] == FRAMES * 3
        finally:
            writer.terminate()
            writer.communicate(timeout=30)
        assert writer.returncode == 0
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
