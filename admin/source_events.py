"""Source events for the status view: each producer's own counters, read from its /metrics.

A producer exports what its source counts itself (a scale's connects and losses, GPS week
rollovers: ``telemetry_producer_source_events_total{source,device,event}``, see
producers.base.CountingSource). Those counts live in the producer process only, so
``telemetry-admin status --producer URL`` scrapes the endpoints it is given (operator-chosen
URLs, never addresses read from Redis), with a short timeout; an endpoint that does not answer
is one error row, never a failed view. ``parse`` is pure; ``scrape`` does the HTTP GET.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Sequence
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

SAMPLE = "telemetry_producer_source_events_total"


def parse(text: str) -> list[dict[str, Any]]:
    """The source-event samples of one Prometheus text page, as rows (source, device, event, count)."""
    rows = [
        {
            "source": s.labels.get("source", ""),
            "device": s.labels.get("device", ""),
            "event": s.labels.get("event", ""),
            "count": int(s.value),
        }
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == SAMPLE
    ]
    return sorted(rows, key=lambda r: (r["source"], r["device"], r["event"]))


def scrape(urls: Sequence[str], timeout_s: float = 2.0) -> list[dict[str, Any]]:
    """Rows of every endpoint in ``urls`` (``http://host:9109``, /metrics added), each with its
    ``endpoint``; an endpoint that fails gives one row with ``error``."""
    out: list[dict[str, Any]] = []
    for url in urls:
        target = url if url.rstrip("/").endswith("/metrics") else url.rstrip("/") + "/metrics"
        try:
            with urllib.request.urlopen(target, timeout=timeout_s) as resp:
                text = resp.read(8 << 20).decode("utf-8", "replace")
            out.extend({"endpoint": url, **row} for row in parse(text))
        except (OSError, ValueError) as exc:
            out.append({"endpoint": url, "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
    return out
