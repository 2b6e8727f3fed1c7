"""Sort errors into transient (retry with backoff) and permanent (dead-letter). Pure.

One decision drives retry vs dead-letter (Telegraf's isTempError). Infrastructure errors
are transient whatever an entry's delivery count says; only data errors dead-letter.
"""

from __future__ import annotations

import psycopg
from redis.exceptions import RedisError

PERMANENT_CLASSES = frozenset(
    {
        "22",  # data exception: bad value, NUL byte (22021), out of range
        "23",  # integrity constraint violation, incl. 23514 (no partition for the row)
    }
)
"""The only SQLSTATE classes that say the data is bad. Every other server error (08 connection,
25006 read-only transaction on a standby or with default_transaction_read_only, 40 rollback,
42 a migration not applied yet, 53 resources, 55P03 lock_timeout, 57 shutdown or timeout, XX
internal ...) is about the server, so the batch is retried and good data never dead-letters
(issue 11, point 6). A reused idempotency key is found by the ledger (writer/pg_copy.py), not
by a SQLSTATE."""


def is_transient(exc: BaseException) -> bool:
    """True if retrying the same batch later may succeed; False if the data itself is bad.

    With a server SQLSTATE only classes 22 and 23 are data errors. Without one, a broken or
    closed connection is transient; anything else raised while formatting rows (a lone
    surrogate's UnicodeEncodeError, a value psycopg cannot dump) is permanent, and bisection
    confines it to the frames that really fail (as Telegraf does).
    """
    if isinstance(exc, RedisError | OSError | TimeoutError):
        return True
    if isinstance(exc, psycopg.Error):
        state = exc.sqlstate
        if state is None:
            # No SQLSTATE: the connection broke (OperationalError) or was closed (InterfaceError).
            return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
        return state[:2] not in PERMANENT_CLASSES
    return False


def describe(exc: BaseException) -> tuple[str, str]:
    """(error class, message) for a dead-letter entry: ``sqlstate:22021`` or the exception name."""
    if isinstance(exc, psycopg.Error) and exc.sqlstate:
        return f"sqlstate:{exc.sqlstate}", str(exc).strip().splitlines()[0][:500]
    return type(exc).__name__, str(exc)[:500]
