"""PostgreSQL down for 60 s under load: back off, open and close the breaker, lose nothing.

The outage is of a private PostgreSQL cluster started for the test (never the machine's own).
"""

from __future__ import annotations

import threading

import pytest
from redis import Redis

from tests.helpers import pg_query, running_writer, wait_for
from tests.integration.conftest import PrivatePg
from tests.integration.pipeline import produce_simulated

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_postgres_down_60s(private_pg: PrivatePg, redis: Redis) -> None:
    settings = private_pg.settings
    stop = threading.Event()
    done: list[int] = []

    def produce() -> None:  # keeps publishing through the outage: 30 rounds of 200 frames
        for i in range(30):
            if stop.is_set():
                return
            produce_simulated(settings, redis, 200, 2, 3, f"o{i}")
            done.append(200)
            stop.wait(2.5)

    seen_states: set[str] = set()
    with running_writer(settings) as live:
        t = threading.Thread(target=produce)
        t.start()
        wait_for(lambda: live.frames >= 400, 60, what="writer running before the outage")
        before = live.frames
        private_pg.outage(60, during=lambda: seen_states.add(live.pg_breaker))
        t.join(120)
        wait_for(lambda: live.frames >= 6000, 120, what="everything committed after the outage")
        seen_states.add(live.pg_breaker)
        assert live.pg_errors > 0 and live.frames > before
        assert "open" in seen_states, f"breaker never opened: {seen_states}"
        assert live.pg_breaker == "closed", "breaker did not close again"
        assert sum(live.dead_letters.values()) == 0
    total, distinct = pg_query(settings, "SELECT count(*), count(DISTINCT (producer, seq, channel)) FROM readings")[0]
    assert total == distinct == 6000 * 3
    assert redis.xlen(settings.redis.names.deadletter) == 0
