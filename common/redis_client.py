"""connect_redis(settings): the only place a Redis client is constructed.

Responses stay bytes (entries may hold arbitrary bytes; decoding is the schema's job). The
protocol is RESP2: redis-py 8 speaks RESP3 by default and turns stream replies back into the
RESP2 shape in Python, which made XREADGROUP of a writer's batch 1.75x slower (issue 15).
With ``cluster`` set it returns a RedisCluster: every key shares the ``{namespace}`` hash
tag, so multi-key XREADGROUP and MULTI pipelines stay on one node.
"""

from __future__ import annotations

from typing import cast

from redis import Redis
from redis.cluster import RedisCluster

from common.settings import RedisSettings


def connect_redis(settings: RedisSettings) -> Redis:
    """A client for ``settings.url`` with timeouts and keepalive; no command is sent yet."""
    password = settings.password.get_secret_value() if settings.password else None
    kwargs: dict[str, object] = {
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.connect_timeout,
        "health_check_interval": 30,
        "retry_on_timeout": False,
        "protocol": 2,
    }
    if not settings.url.startswith("unix://"):
        kwargs["socket_keepalive"] = True
    if settings.username:
        kwargs["username"] = settings.username
    if password is not None:
        kwargs["password"] = password
    if settings.cluster:
        # RedisCluster offers every command the project uses with the same signatures; typed
        # as Redis so the rest of the code has one client type.
        return cast(Redis, RedisCluster.from_url(settings.url, **kwargs))
    return Redis.from_url(settings.url, **kwargs)
