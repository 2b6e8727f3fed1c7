"""Sort errors into transient (retry with backoff) and permanent (dead-letter). Pure.

One decision drives retry vs dead-letter (Telegraf's isTempError). Infrastructure errors
are transient whatever an entry's delivery count says; only data errors dead-letter.
"""

from __future__ import annotations

import psycopg
from redis.exceptions import RedisError

TRANSIENT_CLASSES = frozenset(
    {
        "08",  # connection exception
        "40",  # transaction rollback: 40001 serialization_failure, 40P01 deadlock_detected
        "53",  # insufficient resources (disk full, out of memory, too many connections)
        "54",  # program limit exceeded (statement too complex): retry smaller? treated as transient
        "55",  # object not in prerequisite state (lock not available)
        "57",  # operator intervention: 57P01 admin_shutdown, 57014 query_canceled (timeout)
        "58",  # system error (I/O error)
        "42",  # syntax/undefined table: a migration not applied yet; wait, never dead-letter good data
        "3D",  # invalid catalog name: the database is not there yet
        "XX",  # internal error
    }
)
PERMANENT_CLASSES = frozenset(
    {
        "22",  # data exception: bad value, NUL byte (22021), out of range
        "23",  # integrity constraint violation, incl. 23514 (no partition for the row)
    }
)


def is_transient(exc: BaseException) -> bool:
    """True if retrying the same batch later may succeed; False if the data itself is bad.

    Unknown errors count as permanent so that one odd frame cannot stall ingest forever;
    bisection confines them to the frames that really fail (as Telegraf does).
    """
    if isinstance(exc, RedisError | OSError | TimeoutError):
        return True
    if isinstance(exc, psycopg.Error):
        state = exc.sqlstate
        if state is None:
            # No SQLSTATE: the connection broke (OperationalError) or was closed (InterfaceError).
            return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
        if state[:2] in PERMANENT_CLASSES:
            return False
        return state[:2] in TRANSIENT_CLASSES
    # UnicodeEncodeError (lone surrogates) and anything else raised while formatting rows.
    return False


def describe(exc: BaseException) -> tuple[str, str]:
    """(error class, message) for a dead-letter entry: ``sqlstate:22021`` or the exception name."""
    if isinstance(exc, psycopg.Error) and exc.sqlstate:
        return f"sqlstate:{exc.sqlstate}", str(exc).strip().splitlines()[0][:500]
    return type(exc).__name__, str(exc)[:500]
