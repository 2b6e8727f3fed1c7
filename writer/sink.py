"""The PostgreSQL seam of a writer lane: the Sink protocol a lane commits batches through.

A replica builds one sink per lane (writer/pg.py PgLink: a pooled connection plus
writer/pg_copy.py write_frames) and passes it in, as it passes Redis; unit tests pass a fake
that records or refuses batches, so bisection, "transient never dead-letters" and "stop
during an outage leaves entries pending" run without a server. No SQL here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from common.schema import Frame
from writer.pg_copy import BatchResult, Packed


class Sink(Protocol):
    """Where a lane commits its batches. Errors are raised as they come; the lane classifies
    them with writer/retry.py is_transient (transient: retry; otherwise bisect, dead-letter)."""

    def connection(self) -> Any:
        """A handle to write through; raises a transient error while the database is away."""
        ...

    def write(
        self,
        conn: Any,
        frames: Sequence[Frame],
        snapshots: Sequence[Frame],
        checkpoint: Callable[[], None],
        state_horizon: datetime | None,
        packed: Sequence[Packed] | None = None,
    ) -> BatchResult:
        """Commit ``frames`` exactly once per key, in one transaction (writer/pg_copy.py);
        ``packed``: theirs (``pack``), made from the frames when None."""
        ...

    def drop(self) -> None:
        """After a transient error: forget the handle (the next ``connection()`` makes a new one)."""
        ...

    def close(self) -> None: ...
