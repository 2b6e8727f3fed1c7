"""``telemetry-import-worker``: the rq worker of file imports, which runs the import job and nothing else.

The stock ``rq worker`` runs any callable a job names (``Queue.enqueue("os.system", ...)``) and
unpickles job payloads, so anyone holding the importer's Redis password could run code as the
worker's user. This worker differs from it in two ways only:

* job payloads are JSON (``rq.serializers.JSONSerializer``, the same on the enqueue side in
  ``common.queue``): nothing from Redis is ever unpickled;
* before a job starts, its callable's dotted name is checked against ``ALLOWED_JOBS``; any other
  job is refused: logged as an error, marked failed with the reason, never imported or run.

Settings are the usual TELEMETRY_REDIS__* (the importer ACL user; its password from
PASSWORD_FILE, never argv) and TELEMETRY_FILE_IMPORT__QUEUE. Does not import files itself: that
is ``job.import_file``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from rq import Queue, SimpleWorker, Worker
from rq.job import Job
from rq.worker import BaseWorker, WorkerStatus

from common.import_request import IMPORT_JOB
from common.process import settings_or_none
from common.queue import JOB_SERIALIZER, get_queue
from common.redis_client import connect_redis

logger = logging.getLogger(__name__)

ALLOWED_JOBS = frozenset({IMPORT_JOB})
"""Dotted names of the only callables this worker runs."""


def callable_name(job: Job) -> str | None:
    """The job's callable as a dotted name, or None when its payload does not decode (e.g. a pickle)."""
    try:
        name = job.func_name
    except Exception:  # rq raises DeserializationError, ValueError, ... for a foreign payload
        return None
    return name if isinstance(name, str) else None


class _AllowList:
    """Mixin for an rq worker class: refuse every job whose callable is not in ``ALLOWED_JOBS``."""

    refused = 0

    def execute_job(self, job: Job, queue: Queue) -> Any:
        name = callable_name(job)
        if name in ALLOWED_JOBS:
            return super().execute_job(job, queue)  # type: ignore[misc]
        _AllowList.refused += 1
        reason = f"refused: job {job.id} names {name!r}, not one of {sorted(ALLOWED_JOBS)}"
        logger.error("%s (queue %s)", reason, queue.name)
        worker: BaseWorker = self  # type: ignore[assignment]
        execution = worker.prepare_execution(job)
        worker.handle_job_failure(job, queue, exc_string=reason, execution=execution)
        worker.set_state(WorkerStatus.IDLE)
        return None


PUBSUB_POLL_S = 1.0
"""How long the worker's command-channel thread waits per poll. rq's own 60 s made every
shutdown (``--burst`` included) hang up to a minute: redis-py >= 8 joins that thread on stop."""


class _QuickTeardown:
    """Mixin for an rq worker class: rq's ``subscribe`` with a short poll, so teardown is prompt."""

    def subscribe(self) -> None:
        worker: Any = self  # rq's attributes, set up by BaseWorker
        worker.log.info("Worker %s: subscribing to channel %s", worker.name, worker.pubsub_channel_name)
        worker.pubsub = worker.connection.pubsub()
        worker.pubsub.subscribe(**{worker.pubsub_channel_name: worker.handle_payload})
        worker.pubsub_thread = worker.pubsub.run_in_thread(
            sleep_time=PUBSUB_POLL_S, daemon=True, exception_handler=worker._pubsub_exception_handler
        )


class ImportWorker(_QuickTeardown, _AllowList, Worker):
    """The deployed worker: each allowed job runs in a forked work horse, as rq does."""


class InProcessImportWorker(_QuickTeardown, _AllowList, SimpleWorker):
    """The same checks, jobs run in the worker's own process (tests, debugging)."""


def build_worker(queue: Queue, in_process: bool = False) -> BaseWorker:
    """A worker of ``queue`` with the JSON job serializer and the allow-list."""
    cls = InProcessImportWorker if in_process else ImportWorker
    return cls([queue], connection=queue.connection, serializer=JOB_SERIALIZER)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="telemetry-import-worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--burst", action="store_true", help="run the queued jobs, then exit")
    args = parser.parse_args(argv)
    settings = settings_or_none("telemetry-import-worker")
    if settings is None:
        return 2
    worker = build_worker(get_queue(settings, connect_redis(settings.redis)))
    worker.work(burst=args.burst, with_scheduler=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
