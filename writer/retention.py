"""Retention that one clock reading cannot fool: decide what may be dropped, then drop it.

``plan_retention`` (pure) allows dropping only days before both ``clock - RETENTION_DAYS`` and
``newest stored data - RETENTION_DAYS``, and refuses outright when the clock moved more than
CLOCK_STEP_LIMIT since the last accepted pass (persisted in ``retention_state``). A clock
that jumped 40 days ahead therefore drops nothing and says so (error log, the metric
``telemetry_writer_retention_refusals_total``), until the clock is back or an operator runs
``telemetry-admin retention accept-clock``. ``run_retention`` does one pass on a connection:
at most ``max_days`` partitions (writer/partitions.py does the SQL). Creating partitions is
not done here (writer/upkeep.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from writer.partitions import drop_expired_partitions, partition_days, prune_ledger

logger = logging.getLogger(__name__)

CLOCK_STEP_LIMIT = timedelta(days=1)
"""A pass refuses to drop anything when the clock moved more than this since the last pass."""
PRUNE_MAX_ROWS = 1_000_000
"""Ledger rows deleted per pass at most (in chunks of writer/partitions.py PRUNE_CHUNK_ROWS)."""
_PASS_LOCK = 0x7E1E_0003
"""Session advisory lock (with the schema's hash): one replica's pass at a time per schema; the
others skip theirs."""


@dataclass(frozen=True)
class RetentionPlan:
    cutoff: date | None
    """Partitions (and ledger rows) of days before this may go; None = drop nothing."""
    refusal: str | None = None
    """Why this pass refuses to drop anything (a clock step), for the log and the operator."""


def plan_retention(
    now: datetime, last_pass_at: datetime | None, newest_data: datetime | None, retention_days: int
) -> RetentionPlan:
    """What one pass may drop, from the writer's clock, the previous pass and the newest data."""
    if last_pass_at is not None and abs(now - last_pass_at) > CLOCK_STEP_LIMIT:
        return RetentionPlan(
            None,
            f"the clock moved {now - last_pass_at} since the last retention pass"
            f" ({last_pass_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC, now {now.astimezone(UTC):%Y-%m-%d %H:%M} UTC);"
            " nothing dropped. Check the clock; if it is right, run `telemetry-admin retention accept-clock`",
        )
    if newest_data is None:
        return RetentionPlan(None)  # no data: nothing worth deleting
    keep = timedelta(days=retention_days)
    newest = min(now, newest_data).astimezone(UTC).date()
    return RetentionPlan(newest - keep)


@dataclass
class RetentionReport:
    ran: bool = False
    """False when another replica held the pass lock (this pass skipped)."""
    plan: RetentionPlan | None = None
    dropped: list[str] = field(default_factory=list)
    pruned: int = 0


def run_retention(conn: psycopg.Connection[Any], now: datetime, retention_days: int, max_days: int) -> RetentionReport:
    """One retention pass: plan, then drop at most ``max_days`` partitions and prune the ledger.

    ``conn`` is in autocommit mode; every step is its own short transaction.
    """
    report = RetentionReport()
    row = conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(current_schema()))", [_PASS_LOCK]).fetchone()
    if not (row and row[0]):
        return report
    try:
        report.ran = True
        state = conn.execute("SELECT last_pass_at FROM retention_state").fetchone()
        newest = conn.execute("SELECT max(observed_at) FROM current_state").fetchone()
        plan = plan_retention(now, state[0] if state else None, newest[0] if newest else None, retention_days)
        report.plan = plan
        if plan.refusal is not None:
            logger.error("retention refused: %s", plan.refusal)
            conn.execute("UPDATE retention_state SET refused_at = %s, refusal = %s", [now, plan.refusal])
            return report
        if plan.cutoff is not None:
            report.dropped = drop_expired_partitions(conn, plan.cutoff, max_days)
            days = partition_days(conn)
            # Ledger rows go with their day's readings: never past the oldest partition kept.
            prune_cutoff = min(plan.cutoff, days[0]) if days else plan.cutoff
            report.pruned = prune_ledger(conn, prune_cutoff, PRUNE_MAX_ROWS)
        conn.execute("UPDATE retention_state SET last_pass_at = %s, refused_at = NULL, refusal = NULL", [now])
        return report
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s, hashtext(current_schema()))", [_PASS_LOCK])


def accept_clock(conn: psycopg.Connection[Any]) -> None:
    """Forget the last pass, so the next one trusts the clock as it is (an operator's call)."""
    conn.execute("UPDATE retention_state SET last_pass_at = NULL, refused_at = NULL, refusal = NULL")
