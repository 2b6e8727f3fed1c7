"""The rq queue of background jobs (file imports): the only place rq objects are built.

Workers run the stock CLI against the same Redis as the pipeline::

    rq worker --url redis://127.0.0.1:6379/0 imports     # queue name: TELEMETRY_FILE_IMPORT__QUEUE

Jobs get everything they need in their arguments (never secrets) and publish through the worker's
own connection, so a worker needs no TELEMETRY_* settings.
"""

from __future__ import annotations

from redis import Redis
from rq import Queue
from rq.job import Job

from common.redis_client import connect_redis
from common.settings import Settings


def get_queue(settings: Settings, connection: Redis | None = None) -> Queue:
    """The import queue (``settings.file_import.queue``) on the pipeline's Redis."""
    return Queue(settings.file_import.queue, connection=connection or connect_redis(settings.redis))


def fetch_job(settings: Settings, job_id: str, connection: Redis | None = None) -> Job:
    """A job by id; raises rq.exceptions.NoSuchJobError if it expired or never existed."""
    return Job.fetch(job_id, connection=connection or connect_redis(settings.redis))
