"""connect_pg(settings): the writer's PostgreSQL connection, with timeouts and keepalives.

TCP keepalives and ``tcp_user_timeout`` make a black-holed link (no RST) fail within
seconds instead of hanging; ``statement_timeout`` bounds every statement. ``mask_dsn``
is how a DSN may appear in logs and errors.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import conninfo

from common.settings import PostgresSettings


def connect_pg(settings: PostgresSettings, autocommit: bool = True) -> psycopg.Connection[Any]:
    kwargs: dict[str, Any] = {
        "connect_timeout": settings.connect_timeout,
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
        "tcp_user_timeout": 10_000,
        "application_name": "telemetry-writer",
        "options": f"-c search_path={settings.schema_name} -c statement_timeout={settings.statement_timeout_ms}",
    }
    if settings.password is not None:
        kwargs["password"] = settings.password.get_secret_value()
    return psycopg.connect(settings.dsn, autocommit=autocommit, **kwargs)


def mask_dsn(dsn: str) -> str:
    """The DSN with any password replaced by ``***``."""
    try:
        parts = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparseable dsn>"
    if "password" in parts:
        parts["password"] = "***"
    return conninfo.make_conninfo("", **parts)
