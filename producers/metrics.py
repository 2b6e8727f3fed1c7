"""Producer metrics: a collector reading the run loop's live ProducerStats at scrape time.

``ProducerTelemetry`` turns the ``ProducerStats`` the loop and outbox update (frames read and
published by priority, spool, drops, links) into ``telemetry_producer_*`` families at scrape
time, so the hot loop does no metric work beyond a dict increment; the publisher is read only
for its pending frames. Spool and drop counters are ``spooled`` (priority -> n) and
``dropped`` ((reason, priority) -> n). Breaker states come from
the same stats (the loop copies them every turn), not from the breaker objects. A source that
keeps its own counts (``counters()``, producers.base.CountingSource) is read too, as
``telemetry_producer_source_events_total{source,device,event}``. No HTTP here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric

from common.fill import FillEstimator
from common.http import Endpoints, Readiness, readiness
from common.metrics import breaker_family, counter, gauge, new_registry
from common.publish import Publisher
from common.schema import Priority
from producers.base import CountingSource, ProducerStats

PRIORITIES = tuple(p.value for p in Priority)


class ProducerTelemetry:
    """The collector and endpoints of one producer process (one source)."""

    def __init__(
        self,
        source: str,
        stats: ProducerStats,
        publisher: Publisher,
        registry: CollectorRegistry | None = None,
        *,
        events: CountingSource | None = None,
    ) -> None:
        self.source = source
        self.stats = stats
        self.publisher = publisher
        self.events = events
        """The source itself when it keeps its own counts (producers.base.CountingSource)."""
        self.registry = registry or new_registry()
        self.spool_fill = FillEstimator()
        self.registry.register(self)

    def collect(self) -> Iterator[Metric]:
        s, src = self.stats, self.source
        yield self._by_priority("producer_frames_read", "Frames read and validated.", s.read_by_priority)
        yield self._by_priority(
            "producer_frames_published", "Frames XADDed to their priority stream.", s.published_by_priority
        )
        spooled = counter("producer_frames_spooled", "Frames written to the on-disk spool.", ["source", "priority"])
        for prio, n in sorted(dict(s.spooled).items()):
            spooled.add_metric([src, prio], n)
        yield spooled
        dropped = counter(
            "producer_frames_dropped", "Frames dropped, by reason and priority.", ["source", "reason", "priority"]
        )
        for (reason, prio), n in sorted(dict(s.dropped).items()):
            dropped.add_metric([src, reason, prio], n)
        yield dropped
        errors = counter("producer_parse_errors", "Device input that could not be parsed, by kind.", ["source", "kind"])
        for kind, n in sorted(dict(s.parse_errors).items()):
            errors.add_metric([src, kind], n)
        yield errors
        yield from self._link_families()
        yield breaker_family(self.breaker_states())
        if self.events is not None:
            yield self._source_events(self.events)

    def _source_events(self, events: CountingSource) -> Metric:
        fam = counter(
            "producer_source_events",
            "Events a source counts itself (a scale's connects and losses, GPS week rollovers), by device.",
            ["source", "device", "event"],
        )
        for (device, event), n in sorted(events.counters().items()):
            fam.add_metric([self.source, device, event], n)
        return fam

    def _link_families(self) -> Iterator[Metric]:
        s, src = self.stats, self.source
        for name, doc, value in (
            ("producer_connects", "Successful opens of the device.", s.connects),
            ("producer_outages", "Times a connected device was lost.", s.outages),
            ("producer_open_failures", "Failed attempts to open the device.", s.open_failures),
            ("producer_redis_errors", "Failed publishes to Redis (retried).", s.redis_errors),
            (
                "producer_rejections_sent",
                "Rejected input (a bad line or row) sent as a rejection entry for the writer to dead-letter.",
                s.rejections_sent,
            ),
        ):
            fam = counter(name, doc, ["source"])
            fam.add_metric([src], value)
            yield fam
        for name, doc, attr, make in (
            ("producer_frames_replayed", "Spooled frames published once Redis healed.", "frames_replayed", counter),
            (
                "producer_frames_lost_in_crash",
                "Frames a killed run read but never sent.",
                "frames_lost_in_crash",
                counter,
            ),
            ("producer_spool_records", "Frames waiting in the on-disk spool.", "spool_records", gauge),
            ("producer_spool_bytes", "Bytes of the on-disk spool.", "spool_bytes", gauge),
            ("producer_spool_torn_bytes", "Torn spool tail skipped at start.", "spool_torn_bytes", gauge),
            (
                "producer_spool_available",
                "0 when the spool's filesystem refuses writes (read-only): running without spool.",
                "spool_available",
                gauge,
            ),
            (
                "producer_spool_full_writes",
                "Spool writes refused by a full filesystem (ENOSPC, short write).",
                "spool_full_writes",
                counter,
            ),
            (
                "producer_read_blocked",
                "1 while reading waits: Redis down, spool full of critical/high.",
                "read_blocked",
                gauge,
            ),
        ):
            spool_fam: Metric = make(name, doc, ["source"])
            spool_fam.add_metric([src], float(getattr(s, attr)))  # type: ignore[attr-defined]
            yield spool_fam
        connected = gauge("producer_device_connected", "1 while the device is open.", ["source"])
        connected.add_metric([src], 1.0 if s.connected else 0.0)
        yield connected
        yield from spool_fill_families(src, s, self.spool_fill)  # issue 19
        pending = gauge("producer_publish_pending", "Frames read and stamped but not yet in Redis.", ["source"])
        pending.add_metric([src], len(self.publisher.pending))
        yield pending

    def _by_priority(self, name: str, doc: str, values: Counter[str]) -> Metric:
        fam = counter(name, doc, ["source", "priority"])
        snapshot = dict(values)
        for prio in PRIORITIES:
            if prio in snapshot:
                fam.add_metric([self.source, prio], snapshot[prio])
        return fam

    def breaker_states(self) -> dict[str, str]:
        """link -> state, as the run loop last copied it into the stats (every loop turn): the one
        route of breaker states to /metrics and /readyz."""
        return {"device": self.stats.device_breaker.value, "redis": self.stats.redis_breaker.value}

    def ready(self) -> Readiness:
        r = readiness({"device_connected": self.stats.connected}, self.breaker_states)
        r.detail["publish_pending"] = len(self.publisher.pending)
        return r

    def endpoints(self) -> Endpoints:
        return Endpoints(registry=self.registry, live=lambda: True, ready=self.ready)


def spool_fill_families(source: str, stats: ProducerStats, fill: FillEstimator) -> Iterator[Metric]:
    """The spool's limit and the estimated seconds until it is full (families empty without a spool)."""
    limit = gauge(
        "producer_spool_limit_bytes", "Bytes the spool may use now (limit, or the disk's free space).", ["source"]
    )
    full = gauge(
        "producer_spool_full_seconds",
        "Seconds until the spool is full at its growth over the last minute of scrapes (+Inf: not growing).",
        ["source"],
    )
    if stats.spool_limit_bytes:
        fill.add(stats.spool_bytes, stats.spool_limit_bytes)
        limit.add_metric([source], stats.spool_limit_bytes)
        until = fill.seconds_until_full()
        if until is not None:
            full.add_metric([source], until)
    yield from (limit, full)
