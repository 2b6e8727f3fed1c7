"""Pure retention planning (writer/retention.py): what a pass may drop under clock jumps."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from writer.retention import plan_retention

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def test_cutoff_is_the_clock_minus_retention_when_data_is_current() -> None:
    plan = plan_retention(NOW, NOW - timedelta(minutes=10), NOW - timedelta(seconds=1), 30)
    assert plan.cutoff == date(2026, 5, 16) and plan.refusal is None


def test_newest_data_older_than_the_clock_bounds_the_cutoff() -> None:
    # The clock says mid-June, but the newest stored data is from April: keep 30 days before April.
    plan = plan_retention(NOW, None, datetime(2026, 4, 10, tzinfo=UTC), 30)
    assert plan.cutoff == date(2026, 3, 11)


def test_a_clock_step_of_more_than_a_day_since_the_last_pass_refuses() -> None:
    for step in (timedelta(days=40), timedelta(days=-2), timedelta(days=1, minutes=1)):
        plan = plan_retention(NOW + step, NOW, NOW, 30)
        assert plan.cutoff is None and plan.refusal is not None and "accept-clock" in plan.refusal
    assert plan_retention(NOW + timedelta(hours=23), NOW, NOW, 30).refusal is None


def test_no_data_drops_nothing() -> None:
    assert plan_retention(NOW, None, None, 30).cutoff is None
