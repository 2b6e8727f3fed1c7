"""Test tiers and fixtures.

Servers come from TELEMETRY_TEST_REDIS_URL (default redis://127.0.0.1:6379/0) and
TELEMETRY_TEST_PG_DSN (default postgresql://postgres@127.0.0.1:5432/telemetry_test, created
if missing). Outside CI a missing server skips its tests with a message; under CI (CI=true)
it is a failure: `.ci/run` starts the servers. Each test gets its own Redis namespace and
PostgreSQL schema, so tests (and several developers) can share one server. No test stops,
restarts or reconfigures these servers: outage tests start private ones (tests/integration/servers.py).
No test may leave a process running: the guard in tests/processes.py kills any it finds after
the test and fails that test.
Real captures come from TELEMETRY_TEST_SHARED_DATA (default ../shared/data beside the repo).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from redis import Redis

from common.settings import Settings
from tests import processes
from tests.pgdb import ensure_database

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REDIS_URL = os.environ.get("TELEMETRY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_DSN = os.environ.get("TELEMETRY_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/telemetry_test")
SHARED_DATA = Path(os.environ.get("TELEMETRY_TEST_SHARED_DATA", REPO.parent / "shared" / "data"))


def pytest_configure(config: pytest.Config) -> None:
    processes.become_subreaper()


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """Fail (at teardown) a test that leaves a process running, after killing it."""
    yield
    leaked = processes.kill_leftovers()
    if leaked:
        pytest.fail("the test left processes running (killed now): " + "; ".join(leaked), pytrace=False)


def unavailable(reason: str) -> None:
    """Skip outside CI, fail under CI: no test is skipped for a missing service in CI."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: services must be running; see .ci/run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real device captures (../shared/data)."""
    if not SHARED_DATA.is_dir():
        unavailable(
            f"real captures not found at {SHARED_DATA}; set TELEMETRY_TEST_SHARED_DATA to the "
            "project's shared/data folder"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:
        unavailable(f"Redis at {REDIS_URL} unreachable: {exc}")
    return REDIS_URL


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    try:
        ensure_database(PG_DSN)
        psycopg.connect(PG_DSN, connect_timeout=3).close()
    except Exception as exc:
        unavailable(f"PostgreSQL at {PG_DSN} unreachable: {exc}")
    return PG_DSN


@pytest.fixture
def namespace() -> str:
    """A Redis namespace (hash tag) unique to this test."""
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def redis(redis_url: str, namespace: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    keys = list(client.scan_iter(match="{" + namespace + "}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def pg_schema(pg_dsn: str, namespace: str) -> Iterator[str]:
    """A fresh PostgreSQL schema with the migrations applied; dropped afterwards."""
    from admin.migrate import migrate

    schema = namespace
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        migrate(conn, schema)
    yield schema
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(psycopg.sql.Identifier(schema)))


@pytest.fixture
def settings(redis_url: str, pg_dsn: str, namespace: str, pg_schema: str) -> Settings:
    """Settings pointing at this test's Redis namespace and PostgreSQL schema (migrated)."""
    return settings_for(redis_url, pg_dsn, namespace, pg_schema)


def settings_for(redis_url: str, pg_dsn: str, namespace: str, schema: str, **writer: object) -> Settings:
    return Settings(
        redis={"url": redis_url, "namespace": namespace},
        postgres={"dsn": pg_dsn, "schema_name": schema},
        writer={"batch_max_age_ms": 50, "claim_idle_ms": 2000, "reclaim_interval_s": 0.5, **writer},
        _env_file=None,  # type: ignore[call-arg]
    )


def env_for(settings: Settings) -> dict[str, str]:
    """Environment for a subprocess (telemetry-write / telemetry-produce) using ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    env.update(
        TELEMETRY_REDIS__URL=settings.redis.url,
        TELEMETRY_REDIS__NAMESPACE=settings.redis.namespace,
        TELEMETRY_POSTGRES__DSN=settings.postgres.dsn,
        TELEMETRY_POSTGRES__SCHEMA_NAME=settings.postgres.schema_name,
        TELEMETRY_WRITER__BATCH_MAX_AGE_MS=str(settings.writer.batch_max_age_ms),
        TELEMETRY_WRITER__CLAIM_IDLE_MS=str(settings.writer.claim_idle_ms),
        TELEMETRY_WRITER__RECLAIM_INTERVAL_S=str(settings.writer.reclaim_interval_s),
    )
    return env
