"""Forgetting consumers of the writer group that are gone, so ``XINFO CONSUMERS`` and
``telemetry-admin streams`` list only live replicas.

A replica that stops cleanly removes its own consumer from each stream its lane reads once
nothing of it is pending (its name, ``<hostname>-<pid>``, is never used again). A replica
that died leaves its consumer behind; its pending entries are claimed by a live replica
(``read.reclaim``), and once it has nothing pending and has been idle longer than
``TELEMETRY_WRITER__CONSUMER_FORGET_IDLE_S`` it is deleted here. A consumer with pending entries
is never deleted (XGROUP DELCONSUMER would drop them from the pending list). Does not claim
or read anything.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from redis import Redis
from redis.exceptions import ResponseError

from common.streams import StreamNames, reply_text

logger = logging.getLogger(__name__)


def forget_idle_consumers(
    redis: Redis, names: StreamNames, keys: Sequence[str], idle_ms: int, keep: str
) -> list[tuple[str, str]]:
    """Delete consumers (other than ``keep``) with nothing pending, idle longer than ``idle_ms``.

    Returns the (stream, consumer) pairs deleted. A consumer that took entries between the look
    and the delete (only possible for one idle past ``idle_ms`` that resumes at that instant) is
    logged as an error with the count, which XGROUP DELCONSUMER reports.
    """
    gone: list[tuple[str, str]] = []
    for key in keys:
        try:
            consumers = redis.xinfo_consumers(key, names.group)
        except ResponseError:  # no stream or group yet (NOGROUP, no such key): nothing to forget
            continue
        for c in consumers:
            name = reply_text(c.get("name", b""))
            if name == keep or int(c.get("pending", 0)) != 0 or int(c.get("idle", 0)) < idle_ms:
                continue
            lost = int(redis.xgroup_delconsumer(key, names.group, name))
            gone.append((key, name))
            if lost:
                logger.error("consumer %s of %s took %d entries while being forgotten", name, key, lost)
    if gone:
        logger.info("forgot %d idle consumers with nothing pending: %s", len(gone), sorted({n for _, n in gone}))
    return gone


def forget_self(redis: Redis, names: StreamNames, keys: Sequence[str], consumer: str) -> int:
    """At a clean stop: remove ``consumer`` from each stream where it has nothing pending."""
    removed = 0
    for key in keys:
        try:
            pending = redis.xpending_range(key, names.group, "-", "+", 1, consumername=consumer)
        except ResponseError:  # stream or group gone; nothing to remove
            continue
        if not pending:
            redis.xgroup_delconsumer(key, names.group, consumer)
            removed += 1
    return removed
