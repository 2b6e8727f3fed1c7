"""PostgreSQL connections for the writer and the admin CLI, with timeouts and keepalives.

TCP keepalives and ``tcp_user_timeout`` make a black-holed link (no RST) fail within
seconds instead of hanging, on both ends (the server's keepalives and
``client_connection_check_interval`` are set per session, so the server also notices a
vanished client); ``statement_timeout`` bounds every statement, ``lock_timeout`` every lock
wait, and ``idle_in_transaction_session_timeout`` ends a session that stopped inside its
transaction (a paused replica holding ledger row locks). The writer takes
its connection from a pool (``open_pool``) that checks a connection before handing it out
and reconnects in the background. ``mask_dsn`` is how a DSN may appear in logs and errors.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import psycopg
from psycopg import conninfo
from psycopg_pool import ConnectionPool

from common.clock import Clock, SystemClock
from common.schema import Frame
from common.settings import PostgresSettings, Settings
from writer.partitions import ensure_partitions, has_partition
from writer.pg_copy import BatchResult, Packed, utc_day, write_frames

logger = logging.getLogger(__name__)


def connect_kwargs(settings: PostgresSettings) -> dict[str, Any]:
    """libpq parameters added to the DSN: timeouts, keepalives, search_path, the password."""
    kwargs: dict[str, Any] = {
        "connect_timeout": settings.connect_timeout,
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
        "tcp_user_timeout": 10_000,
        "application_name": "telemetry-writer",
        "options": " ".join(f"-c {k}={v}" for k, v in session_parameters(settings).items()),
    }
    if settings.password is not None:
        kwargs["password"] = settings.password.get_secret_value()
    return kwargs


SERVER_KEEPALIVES = {
    "tcp_keepalives_idle": 5,
    "tcp_keepalives_interval": 2,
    "tcp_keepalives_count": 3,
    "tcp_user_timeout": 10_000,
    "client_connection_check_interval": 2_000,
}
"""Server-side liveness checks of the client socket (PostgreSQL >= 14): a replica whose host
vanished (no FIN, no RST) has its session ended, and its locks released, within ~15 s even
in the middle of a statement."""


def session_parameters(settings: PostgresSettings) -> dict[str, object]:
    """Server settings of every session (``-c`` options): schema, timeouts, keepalives."""
    return {
        "search_path": settings.schema_name,
        "statement_timeout": settings.statement_timeout_ms,
        "lock_timeout": settings.lock_timeout_ms,
        "idle_in_transaction_session_timeout": settings.idle_in_transaction_timeout_ms,
        **SERVER_KEEPALIVES,
    }


def connect_pg(settings: PostgresSettings, autocommit: bool = True) -> psycopg.Connection[Any]:
    """One connection (admin CLI, tests)."""
    return psycopg.connect(settings.dsn, autocommit=autocommit, **connect_kwargs(settings))


def open_pool(settings: PostgresSettings) -> ConnectionPool:
    """A one-connection pool: checked on checkout, reconnected in the background when lost."""
    kwargs = connect_kwargs(settings) | {"autocommit": True}
    pool = ConnectionPool(
        settings.dsn,
        kwargs=kwargs,
        min_size=1,
        max_size=1,
        open=False,
        check=ConnectionPool.check_connection,
        timeout=float(settings.connect_timeout),
        reconnect_timeout=60.0,  # then the pool gives up; the next checkout starts a new attempt
        name="telemetry-writer",
    )
    pool.open(wait=False)
    return pool


def mask_dsn(dsn: str) -> str:
    """The DSN with any password replaced by ``***``."""
    try:
        parts = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparseable dsn>"
    if "password" in parts:
        parts["password"] = "***"
    return conninfo.make_conninfo("", **parts)


class PgLink:
    """One writer lane's PostgreSQL link (its writer/sink.py Sink): a pooled connection held
    until an error.

    Partition upkeep is not done here (writer/upkeep.py runs it in its own thread); the only
    DDL on this path is creating a partition a batch needs when it is missing: today's (and those
    ahead), checked once per connection and day, and that of any day of a batch's frames inside
    the retention window (a frame from a few days ago arriving before upkeep's first pass reached
    that day), checked once per connection and day. A frame outside the window still fails with
    SQLSTATE 23514 and is dead-lettered.
    """

    def __init__(
        self,
        settings: Settings,
        on_state: Callable[[bool], None],
        clock: Callable[[], float] = time.monotonic,
        wall: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.on_state = on_state
        self.clock = clock
        self.wall = wall or SystemClock()
        self.pool: ConnectionPool | None = None
        self.conn: psycopg.Connection[Any] | None = None
        self.known_days: set[date] = set()
        """Days whose partition this connection has seen exist (forgotten with the connection)."""

    def connection(self) -> psycopg.Connection[Any]:
        """The connection to use; raises a transient error (PoolTimeout ...) when PostgreSQL is away."""
        if self.pool is None:
            self.pool = open_pool(self.settings.postgres)
        if self.conn is None:
            self.conn = self.pool.getconn()  # checked by the pool
            self.on_state(True)
            logger.info("connected to postgres %s", mask_dsn(self.settings.postgres.dsn))
            self.known_days = set()
        today = self.wall.now().date()
        if today not in self.known_days:
            ahead = self.settings.writer.partitions_ahead_days
            if not has_partition(self.conn, today):
                ensure_partitions(self.conn, today, today + timedelta(days=ahead), short_lock_timeout=False)
                self.known_days.update(today + timedelta(days=d) for d in range(ahead + 1))
            self.known_days.add(today)
        return self.conn

    def write(
        self,
        conn: psycopg.Connection[Any],
        frames: Sequence[Frame],
        snapshots: Sequence[Frame],
        checkpoint: Callable[[], None],
        state_horizon: datetime | None,
        packed: Sequence[Packed] | None = None,
    ) -> BatchResult:
        """writer/sink.py Sink.write: write_frames on ``conn`` (after ``ensure_days``)."""
        self.ensure_days(conn, frames)
        return write_frames(conn, frames, snapshots, checkpoint, state_horizon, packed)

    def ensure_days(self, conn: psycopg.Connection[Any], frames: Sequence[Frame]) -> None:
        """Create the missing partitions of the frames' days inside [today - RETENTION_DAYS, today + AHEAD]."""
        today = self.wall.now().date()
        w = self.settings.writer
        first, last = today - timedelta(days=w.retention_days), today + timedelta(days=w.partitions_ahead_days)
        days = {utc_day(f.observed_at) for f in frames} - self.known_days
        for day in sorted(d for d in days if first <= d <= last):
            if not has_partition(conn, day):
                ensure_partitions(conn, day, day, short_lock_timeout=False)
            self.known_days.add(day)

    def drop(self) -> None:
        """After an error: close the connection (it may be half-broken) and give it back."""
        self.on_state(False)
        if self.conn is not None:
            with contextlib.suppress(psycopg.Error):
                self.conn.close()
        self.release()

    def release(self) -> None:
        if self.conn is not None and self.pool is not None:
            with contextlib.suppress(Exception):
                self.pool.putconn(self.conn)
        self.conn = None

    def close(self) -> None:
        self.release()
        if self.pool is not None:
            self.pool.close()
