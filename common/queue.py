"""The rq queue of background jobs (file imports): the only place rq objects are built.

Workers are ``telemetry-import-worker`` (producers/file_import/worker.py), which runs the import
job and refuses any other callable. Payloads are JSON (``JOB_SERIALIZER``), never pickles. Jobs
get everything they need in their arguments (never secrets) and publish through the worker's own
connection.
"""

from __future__ import annotations

from redis import Redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from common.redis_client import connect_redis
from common.settings import Settings

JOB_SERIALIZER = JSONSerializer
"""Job payloads are JSON on both sides: a worker never unpickles what is in Redis."""


def get_queue(settings: Settings, connection: Redis | None = None) -> Queue:
    """The import queue (``settings.file_import.queue``) on the pipeline's Redis."""
    return Queue(
        settings.file_import.queue, connection=connection or connect_redis(settings.redis), serializer=JOB_SERIALIZER
    )


def fetch_job(settings: Settings, job_id: str, connection: Redis | None = None) -> Job:
    """A job by id; raises rq.exceptions.NoSuchJobError if it expired or never existed."""
    return Job.fetch(job_id, connection=connection or connect_redis(settings.redis), serializer=JOB_SERIALIZER)
