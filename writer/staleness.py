"""Staleness: the rules table from the settings, and the stale channels read back. Small I/O only.

``rule_rows`` turns TELEMETRY_STALENESS__RULES into rows of ``staleness_rules`` (migration 008;
shell patterns become LIKE patterns, pure); ``store_rules`` replaces the table's rows (run by
``telemetry-admin migrate``, as the owner). ``stale_by_device`` and ``stale_channels`` read the
``current_state_status`` view (the writer role may); ``families`` makes the
``telemetry_stale_channels{source,device}`` gauge. Deciding what is stale is the view's job.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
from prometheus_client.core import GaugeMetricFamily, Metric

from common.metrics import gauge
from common.settings import StalenessSettings

Row = tuple[int, str, str, float | None, float | None, float]


def like_pattern(glob: str) -> str:
    """A shell pattern (``*``, ``?``) as a LIKE pattern; LIKE's own ``%``, ``_`` and ``\\`` escaped."""
    out = []
    for ch in glob:
        if ch in "\\%_":
            out.append("\\" + ch)
        else:
            out.append({"*": "%", "?": "_"}.get(ch, ch))
    return "".join(out)


def rule_rows(st: StalenessSettings) -> list[Row]:
    rows: list[Row] = []
    for position, rule in enumerate(st.rules, start=1):
        timeout = rule.timeout
        fixed = float(timeout) if not isinstance(timeout, str) else None
        factor = st.auto_factor if timeout == "auto" else None
        rows.append((position, like_pattern(rule.source), like_pattern(rule.channel), fixed, factor, st.auto_min_s))
    return rows


def store_rules(conn: psycopg.Connection[Any], st: StalenessSettings) -> int:
    """Replace the stored rules with the settings' (one transaction); return how many."""
    rows = rule_rows(st)
    with conn.transaction():
        conn.execute("DELETE FROM staleness_rules")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO staleness_rules (position, source_like, channel_like, timeout_s, auto_factor, auto_min_s)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                rows,
            )
    return len(rows)


def stale_by_device(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT source, device, count(*) FILTER (WHERE stale), count(*) FROM current_state_status"
        " GROUP BY source, device ORDER BY source, device"
    ).fetchall()
    return [{"source": s, "device": d, "stale": int(n), "channels": int(total)} for s, d, n, total in rows]


def stale_channels(conn: psycopg.Connection[Any], limit: int = 10) -> list[dict[str, Any]]:
    """The stale channels longest silent first: when each last arrived and last had a good value."""
    rows = conn.execute(
        "SELECT source, device, channel, extract(epoch FROM now() - last_seen_at)::float8, last_seen_at,"
        " last_good_at, stale_after_s FROM current_state_status WHERE stale ORDER BY last_seen_at LIMIT %s",
        [limit],
    ).fetchall()
    keys = ("source", "device", "channel", "silent_s", "last_seen_at", "last_good_at", "stale_after_s")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def families(conn: psycopg.Connection[Any]) -> Iterator[Metric]:
    """``telemetry_stale_channels{source,device}`` (raises psycopg.Error for the caller to count)."""
    fam: GaugeMetricFamily = gauge(
        "stale_channels", "Channels of a device that have not arrived within their timeout.", ["source", "device"]
    )
    for row in stale_by_device(conn):
        fam.add_metric([row["source"], row["device"]], row["stale"])
    yield fam
