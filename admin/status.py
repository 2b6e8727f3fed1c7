"""``telemetry-admin status``: what flows, what is stuck and why, in one live terminal view.

``sample()`` gathers one snapshot as plain data (Redis: streams, consumers, dead letters;
PostgreSQL: producer progress and gaps; the producer endpoints given with ``--producer``: their
sources' own counters, admin/source_events.py); ``add_rates()`` turns two snapshots into rates
(pure); ``render()`` draws a snapshot with rich (pure). ``watch()`` refreshes the view until
Ctrl-C; ``--json`` prints one snapshot with rates measured over ``--sample-s``. Read-only.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from redis import Redis
from redis.exceptions import RedisError
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from admin.source_events import scrape
from common.streams import StreamNames, reply_text
from writer import freshness, staleness
from writer.progress_status import progress_by_source, recent_producers, top_gaps
from writer.stream_status import stream_status


def _dead_letters(redis: Redis, names: StreamNames, recent: int) -> dict[str, Any]:
    rows = []
    entries: list[tuple[bytes, dict[bytes, bytes]]] = redis.xrevrange(names.deadletter, count=recent)  # type: ignore[assignment]
    for eid, fields in entries:
        f = {reply_text(k): reply_text(v) for k, v in fields.items() if not k.startswith(b"orig.")}
        rows.append(
            {
                "id": reply_text(eid),
                "stream": f.get("stream"),
                "reason": f.get("error_class"),
                "error": f.get("error", "")[:120],
            }
        )
    return {"length": int(redis.xlen(names.deadletter)), "recent": rows}


def _writers(streams: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consumers of the writer group across the priority streams: total pending, least idle."""
    out: dict[str, dict[str, Any]] = {}
    for row in streams:
        for c in row["consumers"]:
            w = out.setdefault(c["name"], {"name": c["name"], "pending": 0, "idle_ms": c["idle_ms"]})
            w["pending"] += c["pending"]
            w["idle_ms"] = min(w["idle_ms"], c["idle_ms"])
    return sorted(out.values(), key=lambda w: w["idle_ms"])


class LazyPg:
    """A connection factory that connects on first use and again after the connection broke."""

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]]) -> None:
        self.connect = connect
        self.conn: psycopg.Connection[Any] | None = None

    def __call__(self) -> psycopg.Connection[Any]:
        if self.conn is None or self.conn.closed or self.conn.broken:
            self.conn = self.connect()
        return self.conn


def _producers(pg: Callable[[], psycopg.Connection[Any]], top: int) -> dict[str, Any]:
    try:
        conn = pg()
        by_source = progress_by_source(conn)
        return {
            "missing_total": sum(r["missing"] for r in by_source),
            "by_source": by_source,
            "recent": recent_producers(conn, top),
            "gaps": top_gaps(conn, top),
            "stale": _stale(conn, top),
        }
    except (psycopg.Error, OSError) as exc:
        return {"error": f"{type(exc).__name__}: {str(exc).strip()[:200]}"}


def _stale(conn: psycopg.Connection[Any], top: int) -> list[dict[str, Any]] | None:
    """Stale channels (migration 008), None on a schema without them."""
    try:
        with conn.transaction():
            return staleness.stale_channels(conn, top)
    except psycopg.errors.UndefinedTable:
        return None


def sample(
    redis: Redis,
    names: StreamNames,
    pg: Callable[[], psycopg.Connection[Any]],
    top: int = 10,
    producer_urls: Sequence[str] = (),
    latency: Callable[[], dict[str, dict[str, float]] | None] = lambda: None,
) -> dict[str, Any]:
    """One snapshot of the pipeline as plain (JSON-ready) data; ``latency``: a writer's e2e latency."""
    at = time.time()
    e2e = latency() or {}
    try:
        status = stream_status(redis, names)
        priorities = [
            {"priority": names.priority_of(r["stream"]).value, **{k: v for k, v in r.items() if k != "consumers"}}
            for r in status["streams"]
        ]
        ages = freshness.oldest_unacked(redis, names)
        for p in priorities:
            p["oldest_unacked_s"] = ages.get(p["priority"])
            p["e2e_p50_ms"] = e2e.get(p["priority"], {}).get("p50_ms")
            p["e2e_p99_ms"] = e2e.get(p["priority"], {}).get("p99_ms")
        redis_part: dict[str, Any] = {
            "priorities": priorities,
            "redis_memory": _memory(redis),
            "writers": _writers(status["streams"]),
            "deadletter": _dead_letters(redis, names, 5),
        }
    except (RedisError, OSError) as exc:
        redis_part = {
            "priorities": [],
            "writers": [],
            "deadletter": None,
            "redis_error": f"{type(exc).__name__}: {exc}",
        }
    producers = _producers(pg, top)
    return {
        "at": at,
        "namespace": names.namespace,
        **redis_part,
        "producers": producers,
        "source_events": scrape(producer_urls),
    }


def _memory(redis: Redis) -> dict[str, int] | None:
    try:
        used, limit = freshness.redis_memory(redis)
    except RedisError:  # an ACL user without +info
        return None
    return {"used": used, "max": limit}


def _rate(new: int | None, old: int | None, dt: float) -> float | None:
    return None if new is None or old is None or dt <= 0 else round(max(0, new - old) / dt, 2)


def add_rates(prev: dict[str, Any] | None, cur: dict[str, Any]) -> dict[str, Any]:
    """Set ``rate`` (per second, from the previous snapshot) on priorities and recent producers."""
    dt = cur["at"] - prev["at"] if prev else 0.0
    old_prio = {p["priority"]: p.get("entries_added") for p in (prev or {}).get("priorities", [])}
    for p in cur["priorities"]:
        p["rate"] = _rate(p.get("entries_added"), old_prio.get(p["priority"]), dt)
    cur["redis_memory_line"] = freshness.memory_view(prev, cur)
    old_prod = {r["producer"]: r["frames"] for r in (prev or {}).get("producers", {}).get("recent", [])}
    for r in cur["producers"].get("recent", []):
        r["rate"] = _rate(r["frames"], old_prod.get(r["producer"]), dt)
    return cur


def _fmt(v: Any) -> Text:
    """A cell as plain text: names from the network (producer ids, dead-letter reasons) are never
    read as Rich markup (``[link=…]``, ``[/x]``), and control characters are shown escaped."""
    text = "-" if v is None else f"{v:,}" if isinstance(v, int) else f"{v:,.1f}" if isinstance(v, float) else str(v)
    return Text(safereply_text(text))


def safereply_text(text: str) -> str:
    """``text`` with non-printable characters (ANSI escapes, NUL, newlines) as ``\\xNN``."""
    return text if text.isprintable() else "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    table = Table(title=title, title_justify="left", expand=False)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(_fmt(v) for v in row))
    return table


def render(data: dict[str, Any]) -> RenderableType:
    """The status view of one snapshot (rates where ``add_rates`` set them)."""
    parts: list[RenderableType] = [
        Text(f"telemetry status  namespace {data['namespace']}  {time.strftime('%H:%M:%S')}")
    ]
    if "redis_error" in data:
        parts.append(Text(safereply_text(f"redis: {data['redis_error']}"), style="bold red"))
    cols = ["priority", "length", "lag", "pending", "rate/s", "oldest unacked s", "e2e p50 ms", "e2e p99 ms"]
    keys = ["length", "lag", "pending", "rate", "oldest_unacked_s", "e2e_p50_ms", "e2e_p99_ms"]
    rows = [[p["priority"], *(p.get(k) for k in keys)] for p in data["priorities"]]
    parts.append(_table("streams", cols, rows))
    if data.get("redis_memory_line"):
        parts.append(Text(data["redis_memory_line"]))
    rows = [[w["name"], w["pending"], w["idle_ms"] / 1000] for w in data["writers"]]
    parts.append(_table("writers", ["consumer", "pending", "idle s"], rows))
    prod = data["producers"]
    if "error" in prod:
        parts.append(Text(safereply_text(f"postgres: {prod['error']}"), style="bold red"))
    else:
        cols = ["producer", "source", "last seen s", "frames", "rate/s", "missing"]
        rows = [
            [r["producer"], r["source"], r["age_s"], r["frames"], r.get("rate"), r["missing"]] for r in prod["recent"]
        ]
        parts.append(_table(f"producers (missing frames in all: {prod['missing_total']:,})", cols, rows))
        if prod["gaps"]:
            rows = [[r["producer"], r["source"], r["missing"], r["max_seq"]] for r in prod["gaps"]]
            parts.append(_table("sequence gaps (top)", ["producer", "source", "missing", "max seq"], rows))
        if prod.get("stale"):
            cols = ["STALE channel", "source", "device", "silent s", "timeout s", "last good value at"]
            rows = [
                [r["channel"], r["source"], r["device"], r["silent_s"], r["stale_after_s"], r["last_good_at"]]
                for r in prod["stale"]
            ]
            parts.append(_table("stale channels (not arrived within their timeout)", cols, rows))
    events = data.get("source_events") or []
    if events:
        rows = [
            [e["endpoint"], e.get("source"), e.get("device"), e.get("event"), e.get("count", e.get("error"))]
            for e in events
        ]
        parts.append(
            _table("source events (producer endpoints)", ["endpoint", "source", "device", "event", "count"], rows)
        )
    dead = data["deadletter"]
    if dead is not None:
        rows = [[d["id"], d["reason"], d["stream"], d["error"]] for d in dead["recent"]]
        parts.append(_table(f"dead letters: {dead['length']:,}", ["id", "reason", "stream", "error"], rows))
    return Group(*parts)


def watch(
    redis: Redis,
    names: StreamNames,
    pg: Callable[[], psycopg.Connection[Any]],
    interval: float,
    top: int = 10,
    console: Console | None = None,
    frames: int | None = None,
    producer_urls: Sequence[str] = (),
    latency: Callable[[], dict[str, dict[str, float]] | None] = lambda: None,
) -> None:
    """Redraw the view every ``interval`` seconds until Ctrl-C (or ``frames`` redraws)."""
    prev: dict[str, Any] | None = None
    drawn = 0
    with contextlib.suppress(KeyboardInterrupt), Live(console=console, auto_refresh=False, screen=False) as live:
        while frames is None or drawn < frames:
            cur = add_rates(prev, sample(redis, names, pg, top, producer_urls, latency))
            live.update(render(cur), refresh=True)
            prev, drawn = cur, drawn + 1
            if frames is None or drawn < frames:
                time.sleep(interval)


def snapshot(
    redis: Redis,
    names: StreamNames,
    pg: Callable[[], psycopg.Connection[Any]],
    sample_s: float,
    top: int = 10,
    producer_urls: Sequence[str] = (),
    latency: Callable[[], dict[str, dict[str, float]] | None] = lambda: None,
) -> dict[str, Any]:
    """One snapshot for scripts, with rates measured over ``sample_s`` seconds (0 = no rates)."""
    first = sample(redis, names, pg, top, producer_urls, latency) if sample_s > 0 else None
    if first is not None:
        time.sleep(sample_s)
    return add_rates(first, sample(redis, names, pg, top, producer_urls, latency))
