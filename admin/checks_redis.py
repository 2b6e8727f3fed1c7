"""Redis checks of ``telemetry-admin validate``: reachable, and the ACL rights each role needs.

Nothing is written. Two non-mutating probes:

* XADD (producer, importer): ``XADD <stream> NOMKSTREAM 0-0 validate 1``. Redis checks the ACL
  first (NOPERM when the user may not XADD to that key), then refuses ID 0-0 before it looks the
  key up ("must be greater than 0-0"): that error means the right is there and nothing changed.
  It needs no right beyond XADD itself, so it works for the producer user (+xadd +ping only).
* MULTI (writer, admin): on one connection, MULTI, then each command the role runs, then DISCARD.
  Redis checks the ACL of a command when it is queued (NOPERM at once) and runs nothing before
  EXEC, which is never sent. Needs +multi +discard, which those users have (deploy/redis/users.acl).
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from redis import Redis
from redis.exceptions import NoPermissionError, RedisError, ResponseError

from admin.checks import Check, fail, ok, skip
from common.redis_client import connect_redis
from common.schema import Priority
from common.settings import Settings
from common.streams import StreamNames

PROBE_CONSUMER = "validate-probe"


def _where(s: Settings) -> str:
    parts = urlsplit(s.redis.url)
    host = parts.hostname or parts.path or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port} as {s.redis.username or 'default'}"


def reachable(s: Settings) -> Check:
    try:
        connect_redis(s.redis).ping()
    except RedisError as exc:
        return fail("redis", f"cannot reach {_where(s)} (TELEMETRY_REDIS__URL, __USERNAME, __PASSWORD_FILE): {exc}")
    return ok("redis", f"PING {_where(s)}")


def xadd_allowed(redis: Redis, key: str) -> bool:
    """Whether this user may XADD to ``key``; writes nothing (see the module docstring)."""
    try:
        redis.execute_command("XADD", key, "NOMKSTREAM", "0-0", "validate", "1")  # type: ignore[no-untyped-call]
    except NoPermissionError:
        return False
    except ResponseError as exc:
        if "greater than 0-0" in str(exc):
            return True
        raise
    raise RuntimeError(f"XADD {key} 0-0 was accepted: not a Redis stream server?")


def producer_rights(s: Settings, priorities: Sequence[Priority] = tuple(Priority), role: str = "producer") -> Check:
    redis, names = connect_redis(s.redis), s.redis.names
    refused = [p.value for p in priorities if not xadd_allowed(redis, names.stream(p))]
    if refused:
        return fail(f"redis {role}", f"XADD refused on {', '.join(refused)} (NOPERM): see deploy/redis/users.acl")
    return ok(f"redis {role}", f"XADD allowed on {', '.join(p.value for p in priorities)} (probe with ID 0-0)")


def queued_refusals(redis: Redis, commands: Sequence[Sequence[str]]) -> list[str]:
    """The commands (as text) Redis refuses to queue in a MULTI for this user; DISCARDed, nothing runs."""
    conn = redis.connection_pool.get_connection()
    refused: list[str] = []
    try:
        conn.send_command("MULTI")  # type: ignore[no-untyped-call]
        conn.read_response()
        for cmd in commands:
            conn.send_command(*cmd)  # type: ignore[no-untyped-call]
            try:
                conn.read_response()
            except NoPermissionError:
                refused.append(" ".join(cmd[:2]))
        conn.send_command("DISCARD")  # type: ignore[no-untyped-call]
        conn.read_response()
    except BaseException:
        conn.disconnect()  # type: ignore[no-untyped-call]  # a half-open MULTI must never go back to the pool
        raise
    finally:
        redis.connection_pool.release(conn)
    return refused


def writer_commands(names: StreamNames) -> list[list[str]]:
    g, c = names.group, PROBE_CONSUMER
    cmds: list[list[str]] = []
    for k in names.streams:
        cmds += [
            ["XGROUP", "CREATE", k, g, "$", "MKSTREAM"],
            ["XREADGROUP", "GROUP", g, c, "COUNT", "1", "STREAMS", k, ">"],
            ["XACK", k, g, "0-1"],
            ["XAUTOCLAIM", k, g, c, "1", "0-0", "COUNT", "1"],
            ["XTRIM", k, "MINID", "0"],
            ["XINFO", "GROUPS", k],
        ]
    dl, index = names.deadletter, names.deadletter_index
    cmds += [["XADD", dl, "*", "validate", "1"], ["ZADD", index, "0", "validate"], ["ZSCORE", index, "validate"]]
    cmds.append(["EVAL", "return 0", "3", names.stream(Priority.BULK), dl, index])
    return cmds


def admin_commands(names: StreamNames) -> list[list[str]]:
    dl = names.deadletter
    return [["XINFO", "STREAM", k] for k in names.streams] + [
        ["XRANGE", dl, "-", "+", "COUNT", "1"],
        ["XADD", names.stream(Priority.BULK), "*", "validate", "1"],
        ["XDEL", dl, "0-1"],
        ["DEL", dl],
    ]


def multi_rights(s: Settings, role: str) -> Check:
    if s.redis.cluster:
        return skip(f"redis {role}", "not checked on Redis Cluster (the MULTI probe needs one connection)")
    names = s.redis.names
    commands = writer_commands(names) if role == "writer" else admin_commands(names)
    try:
        refused = queued_refusals(connect_redis(s.redis), commands)
    except NoPermissionError as exc:
        return fail(f"redis {role}", f"MULTI refused ({exc}): cannot check; the {role} user needs +multi +discard")
    if refused:
        shown = sorted(set(refused))
        return fail(f"redis {role}", f"refused (NOPERM): {', '.join(shown)}: see deploy/redis/users.acl")
    return ok(f"redis {role}", f"all {len(commands)} commands the {role} runs allowed (queued in MULTI, DISCARDed)")


def rq_queue(s: Settings) -> Check:
    from rq import Queue

    redis = connect_redis(s.redis)
    queue = Queue(s.file_import.queue, connection=redis)
    try:
        waiting = queue.count
    except NoPermissionError as exc:
        return fail("rq queue", f"queue {queue.name!r}: {exc}")
    return ok("rq queue", f"queue {queue.name!r} reachable ({waiting} jobs waiting)")
