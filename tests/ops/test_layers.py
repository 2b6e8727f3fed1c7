"""The import layers (issue 16.2): ``python -m admin.layers`` passes on this repository and
fails, naming file and line, on a tree that breaks a rule (a nested import, an import_module
string), so the check can fail."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from admin.layers import FORBIDDEN, check_tree
from tests.conftest import REPO


def test_the_repository_keeps_its_layers() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "admin.layers"], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("layers ok: ")
    breaches, modules = check_tree(REPO)
    assert breaches == [] and modules > 80  # it read the whole tree, not an empty folder


def test_a_tree_that_crosses_a_layer_is_refused(tmp_path: Path) -> None:
    for package in FORBIDDEN:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text('"""ok."""\nimport common.schema\n')
    (tmp_path / "producers" / "cli.py").write_text("def f():\n    from admin.cli import main\n    return main\n")
    (tmp_path / "writer" / "loop.py").write_text("import importlib\n\nm = importlib.import_module('producers.obd')\n")
    (tmp_path / "common" / "x.py").write_text("import writer\n")
    (tmp_path / "admin" / "ok.py").write_text("from writer import deadletter\nfrom common import schema\n")
    out = subprocess.run(
        [sys.executable, "-m", "admin.layers", "--root", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 1
    assert sorted(out.stdout.splitlines()) == [
        "common/x.py:1: common -> writer",
        "producers/cli.py:2: producers -> admin.cli",
        "writer/loop.py:3: writer -> producers.obd",
    ]


def test_the_import_job_is_named_once_for_admin_and_worker() -> None:
    """admin enqueues the job by name (it may not import producers); the name must be the job's."""
    from common.import_request import IMPORT_JOB
    from producers.file_import.job import import_file
    from producers.file_import.worker import ALLOWED_JOBS

    assert f"{import_file.__module__}.{import_file.__qualname__}" == IMPORT_JOB
    assert IMPORT_JOB in ALLOWED_JOBS
