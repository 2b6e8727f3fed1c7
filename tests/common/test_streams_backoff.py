"""Redis names and the backoff object."""

from __future__ import annotations

import random

import pytest

from common.backoff import Backoff
from common.schema import Priority
from common.streams import StreamNames


def test_all_keys_share_one_hash_tag_in_priority_order() -> None:
    names = StreamNames("plant7")
    assert names.streams == (
        "{plant7}:critical", "{plant7}:high", "{plant7}:normal", "{plant7}:low", "{plant7}:bulk",
    )  # fmt: skip
    assert names.deadletter == "{plant7}:deadletter"
    assert all(k.startswith("{plant7}:") for k in (*names.streams, names.deadletter))


def test_priority_of_key_round_trips_and_refuses_foreign_keys() -> None:
    names = StreamNames()
    for p in Priority:
        assert names.priority_of(names.stream(p).encode()) is p
    for bad in ["{other}:critical", "{telemetry}:deadletter", "telemetry:critical"]:
        with pytest.raises(ValueError):
            names.priority_of(bad)


@pytest.mark.parametrize("ns", ["", "a}b", "a b", "x" * 65, "{x}"])
def test_hostile_namespaces_are_refused(ns: str) -> None:
    with pytest.raises(ValueError, match="invalid Redis namespace"):
        StreamNames(ns)


def test_backoff_grows_to_the_cap_with_jitter_and_resets() -> None:
    b = Backoff(base=0.1, cap=2.0, jitter=0.25, rng=random.Random(1))
    delays = [b.next_delay() for _ in range(8)]
    assert 0.075 <= delays[0] <= 0.1
    assert all(d <= 2.0 for d in delays) and delays[-1] >= 1.5
    b.reset()
    assert b.next_delay() <= 0.1


@pytest.mark.parametrize("factor", [2.0, 1.5, 10.0])
def test_backoff_never_overflows_in_a_day_long_outage(factor: float) -> None:
    """Issue 11.3 / 12: ``factor ** attempts`` raised OverflowError at attempt 1,024 (hours into an outage)."""
    b = Backoff(base=0.05, cap=5.0, factor=factor, jitter=0.0)
    delays = [b.next_delay() for _ in range(200_000)]
    assert delays[-1] == 5.0 and max(delays) == 5.0 and b.attempts == 200_000
