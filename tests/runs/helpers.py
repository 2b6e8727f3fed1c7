"""Helpers of the runs tests: telemetry-admin with this test's import queue, and an import worker process."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from redis import Redis

from common.settings import FileImportSettings, Settings
from tests.conftest import REPO, env_for
from tests.helpers import remove_rq_keys


def with_queue(settings: Settings) -> Settings:
    """``settings`` with an import queue of this test's own (rq keys are shared by all tests)."""
    return settings.model_copy(update={"file_import": FileImportSettings(queue=f"imports-{settings.redis.namespace}")})


def env(settings: Settings) -> dict[str, str]:
    return env_for(settings) | {"TELEMETRY_FILE_IMPORT__QUEUE": settings.file_import.queue}


def admin(settings: Settings, *args: str, ok: bool = True) -> str:
    """``telemetry-admin`` as a process; its output (stdout + stderr); asserts success unless ``ok`` is False."""
    proc = subprocess.run([sys.executable, "-m", "admin.cli", *args], env=env(settings), cwd=REPO,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    if ok:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


@contextmanager
def import_worker(settings: Settings, redis: Redis) -> Iterator[subprocess.Popen[bytes]]:
    """``telemetry-import-worker`` serving this test's queue for the block; stopped and its rq keys removed."""
    proc = subprocess.Popen([sys.executable, "-m", "producers.file_import.worker"], env=env(settings), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        remove_rq_keys(redis, settings.file_import.queue)
