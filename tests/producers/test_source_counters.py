"""A source's own counters reach the producer's /metrics (a real OpsServer, a real TCP scale).

One scale behind a TCP serial server (``socket://``) connects, sends one record and hangs up;
the scale's ``connects`` and ``losses`` must then be on ``/metrics`` as
``telemetry_producer_source_events_total{source="scales",device="tcp-1",event=...}``, read from
the very object the source updates (no copy, no holder).
"""

from __future__ import annotations

import datetime as dt
import io
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fakeredis
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from admin.source_events import scrape
from admin.status import render
from common.errors import ParseError
from common.http import OpsServer
from common.publish import Publisher
from common.schema import Frame
from common.streams import StreamNames
from producers.base import CountingSource, ProducerStats
from producers.gps_nmea import GpsNmeaSource
from producers.metrics import ProducerTelemetry
from producers.scales import ScalesSource, parse_config
from tests.producers.gps_captures import MIN_DATE, replay_bytes

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


STATUS: dict[str, Any] = {
    "namespace": "t",
    "priorities": [],
    "writers": [],
    "producers": {"missing_total": 0, "recent": [], "gaps": []},
    "deadletter": None,
}
"""The rest of a status snapshot (admin.status.sample), empty."""


def _events(url: str) -> dict[tuple[str, str], float]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = resp.read().decode()
    return {
        (s.labels["device"], s.labels["event"]): s.value
        for fam in text_string_to_metric_families(body)
        for s in fam.samples
        if s.name == "telemetry_producer_source_events_total" and s.labels["source"] == "scales"
    }


def _read_until(source: ScalesSource, done: Callable[[], object], got: list[Frame | ParseError]) -> None:
    deadline = time.monotonic() + 5
    while not done():
        assert time.monotonic() < deadline, f"only {got}"
        got.extend(source.read(0.05))


def test_a_lost_scale_is_counted_on_metrics() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    cfg = parse_config(
        f'{{"scales": [{{"device": "tcp-1", "url": "socket://127.0.0.1:{server.getsockname()[1]}", '
        '"format": "nhb"}]}'.encode()
    )
    source = ScalesSource(cfg, open_workers=1)
    assert isinstance(source, CountingSource)  # what telemetry-produce checks to export them
    telemetry = ProducerTelemetry(
        "scales", ProducerStats(), Publisher(fakeredis.FakeRedis(), StreamNames("u"), "p/1"), events=source
    )
    http = OpsServer("127.0.0.1", 0, telemetry.endpoints()).start()
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True).start()
    got: list[Frame | ParseError] = []
    try:
        source.open()
        url = f"http://127.0.0.1:{http.port}/metrics"
        _read_until(source, lambda: accepted and any(isinstance(g, Frame) for g in got), got)
        assert _events(url)[("tcp-1", "connects")] == 1
        assert ("tcp-1", "losses") not in _events(url)
        accepted[0].sendall(b"US,GS   106.2g  \r\n")
        accepted[0].close()  # the serial server hangs up

        def lost() -> bool:
            return any(
                isinstance(g, Frame) and g.channels[0].name == "connected" and g.channels[0].value == 0 for g in got
            )

        _read_until(source, lost, got)
        events = _events(url)
        assert events[("tcp-1", "losses")] == 1 and events[("tcp-1", "connects")] == 1
        assert source.stats["losses"] == 1  # the summed view reads the same counts
        # telemetry-admin status --producer <endpoint> shows the same counts
        closed = socket.create_server(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        closed.close()  # nothing listens there: one error row, not a failed view
        rows = scrape([f"http://127.0.0.1:{http.port}", dead_url])
        assert {"endpoint": f"http://127.0.0.1:{http.port}", "source": "scales", "device": "tcp-1", "event": "losses",
                "count": 1} in rows  # fmt: skip
        assert [r["endpoint"] for r in rows if "error" in r] == [dead_url]
        console = Console(record=True, width=200, file=io.StringIO())
        console.print(render({**STATUS, "source_events": rows}))
        shown = [[c.strip() for c in line.split("│") if c.strip()] for line in console.export_text().splitlines()]
        assert any(line[-4:] == ["scales", "tcp-1", "losses", "1"] for line in shown), shown
    finally:
        source.close()
        http.close()
        server.close()


def test_gps_week_rollovers_reach_metrics(shared_data: Path) -> None:
    """gp-320fw reboots into 1999 (a GPS week rollover, real capture): the count is exported."""
    source = GpsNmeaSource("/dev/null", 4800, "gp320", min_date=MIN_DATE)
    source.decoder.feed(replay_bytes(shared_data, "gp-320fw-2019-04-07-coldboot"), T0, 0)
    source.decoder.flush()
    telemetry = ProducerTelemetry(
        "gps_nmea", ProducerStats(), Publisher(fakeredis.FakeRedis(), StreamNames("u"), "p/1"), events=source
    )
    got = {
        (s.labels["device"], s.labels["event"]): s.value
        for fam in telemetry.registry.collect()
        for s in fam.samples
        if s.name == "telemetry_producer_source_events_total"
    }
    assert got[("gp320", "week_rollovers")] == source.rollovers == 9
