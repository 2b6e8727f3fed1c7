"""Circuit breaker transitions with an injected clock (no sleeping)."""

from __future__ import annotations

import pytest

from common.breaker import Breaker, BreakerState


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_opens_after_n_consecutive_failures_only() -> None:
    b = Breaker(failures=3, open_s=5, successes=2, clock=FakeClock())
    b.failure()
    b.failure()
    b.success()  # resets the run of failures
    b.failure()
    b.failure()
    assert b.state is BreakerState.CLOSED and b.allow()
    b.failure()
    assert b.state is BreakerState.OPEN and not b.allow() and b.opened == 1


def test_half_open_after_t_then_closed_after_m_successes() -> None:
    clock = FakeClock()
    b = Breaker(failures=1, open_s=5, successes=2, clock=clock)
    b.failure()
    clock.t += 4.9
    assert b.state is BreakerState.OPEN and b.retry_in() == pytest.approx(0.1)
    clock.t += 0.1
    assert b.state is BreakerState.HALF_OPEN and b.allow() and b.retry_in() == 0
    b.success()
    assert b.state is BreakerState.HALF_OPEN
    b.success()
    assert b.state is BreakerState.CLOSED


def test_a_failure_in_half_open_reopens_for_a_full_period() -> None:
    clock = FakeClock()
    b = Breaker(failures=2, open_s=5, successes=3, clock=clock)
    b.failure()
    b.failure()
    clock.t += 5
    b.success()
    b.failure()
    assert b.state is BreakerState.OPEN and b.opened == 2
    clock.t += 4
    assert not b.allow()
    clock.t += 1
    assert b.state is BreakerState.HALF_OPEN


def test_state_is_a_string_for_metrics() -> None:
    assert str(Breaker().state) == "closed" and BreakerState.HALF_OPEN == "half_open"


def test_rejects_nonsense_parameters() -> None:
    with pytest.raises(ValueError):
        Breaker(failures=0)
