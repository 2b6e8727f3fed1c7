"""``telemetry-admin validate [--role R] [--source S]``: check the environment a process will meet.

The settings were loaded before this runs (a bad setting already exited 2). Each role has its
checks; ``all`` runs every one once. One line per check (``ok``, ``FAIL`` or ``skip``, a name, what
was found) on stdout. Exit code: 0 all good; 2 a configuration error (an invalid scales file,
a malformed device URL); 3 an environment error (a server unreachable, a right missing, a
folder or device absent). Nothing is written to Redis or PostgreSQL (see admin.checks_redis and
admin.checks_pg for how rights are probed); the spool check creates and removes one temp file.
"""

from __future__ import annotations

from functools import partial

from admin import checks_host, checks_pg, checks_redis
from admin.checks import Check, CheckFn, exit_code, run_check
from common.schema import Priority
from common.settings import Settings

ROLES = ("writer", "producer", "importer", "admin", "all")
PG_AFTER_CONNECT = ("schema", "postgres writer")
"""Checks left out once PostgreSQL is unreachable or the schema unmigrated (one line says so)."""


def plan(role: str, source: str | None) -> list[tuple[str, CheckFn]]:
    """The (name, check) pairs of ``role``, in order; ``all`` = every role's, each once."""
    roles = ROLES[:-1] if role == "all" else (role,)
    steps: dict[str, CheckFn] = {"redis": checks_redis.reachable}
    for r in roles:
        if r in ("writer", "admin"):
            steps["postgres"] = checks_pg.reachable
            steps["schema"] = checks_pg.migrated
        if r == "writer":
            steps["redis writer"] = partial(checks_redis.multi_rights, role="writer")
            steps["postgres writer"] = checks_pg.writer_rights
        if r == "admin":
            steps["redis admin"] = partial(checks_redis.multi_rights, role="admin")
        if r == "producer":
            steps["redis producer"] = checks_redis.producer_rights
            steps["spool"] = checks_host.spool
            steps["device"] = partial(checks_host.device, source=source)
            if source is not None and source != "scales":
                steps["source config"] = partial(checks_host.source_config, source=source)
            steps["scales config"] = checks_host.scales  # skip when TELEMETRY_SCALES__CONFIG is unset
        if r == "importer":
            steps["redis importer"] = partial(
                checks_redis.producer_rights, priorities=(Priority.BULK,), role="importer"
            )
            steps["rq queue"] = checks_redis.rq_queue
    return list(steps.items())


def validate(settings: Settings, role: str, source: str | None) -> list[Check]:
    results: list[Check] = []
    redis_down = postgres_down = False
    for name, fn in plan(role, source):
        if (redis_down and name.startswith(("redis ", "rq"))) or (postgres_down and name in PG_AFTER_CONNECT):
            continue  # the server is unreachable: one line says so
        got = run_check(name, fn, settings)
        redis_down |= name == "redis" and got[0].status.value == "FAIL"
        # An unmigrated schema (or no server) fails one line, not one per missing table.
        postgres_down |= name in ("postgres", "schema") and got[0].status.value == "FAIL"
        results += got
    return results


def command(settings: Settings, role: str, source: str | None) -> int:
    results = validate(settings, role, source)
    for r in results:
        print(r.line(), flush=True)
    code = exit_code(results)
    failed = sum(r.status.value == "FAIL" for r in results)
    print(f"{len(results)} checks, {failed} failed (role {role}): exit {code}")
    return code
