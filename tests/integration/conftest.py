"""Fixtures of the integration tier shared by several files (private servers).

``private_pg`` is a throwaway PostgreSQL cluster with this test's schema migrated, and settings
pointing at it (Redis stays the shared test server): outage and restart tests stop and start
that cluster, never the machine's own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import psycopg
import pytest

from common.settings import Settings
from tests.integration.servers import PgServer, pg_server_factory, redis_server_factory

__all__ = ["PrivatePg", "pg_server_factory", "private_pg", "redis_server_factory"]


@dataclass
class PrivatePg:
    server: PgServer
    settings: Settings

    def outage(self, seconds: float, during: Callable[[], object] | None = None) -> None:
        """Stop the private cluster for ``seconds`` (calling ``during`` every 0.5 s), then start it."""
        import time

        self.server.stop()
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                if during is not None:
                    during()
                time.sleep(0.5)
        finally:
            self.server.start()

    def restart(self) -> None:
        self.server.restart()


@pytest.fixture
def private_pg(settings: Settings, pg_server_factory: Callable[..., PgServer]) -> PrivatePg:
    from admin.migrate import migrate

    server = pg_server_factory()
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        migrate(conn, settings.postgres.schema_name)
    private = settings.model_copy(update={"postgres": settings.postgres.model_copy(update={"dsn": server.dsn})})
    return PrivatePg(server, private)
