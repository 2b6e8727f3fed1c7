"""The run detector: reads the priority streams with its own consumer group (``runs``), applies
the rules of TELEMETRY_RUNS__RULES (runs/rules.py) and opens and closes runs in PostgreSQL.

Exactly once per boundary, across restarts and crashes: for each batch, the runs it opens or
closes, the state of every (rule, device) it touched and the last entry ID applied per stream
are written in ONE transaction; the entries are XACKed only after it commits. A crash before
the commit leaves the entries pending: they are read again (``0``) and applied to the state as
it was committed. A crash after the commit but before the XACK gives back entries at or below
the stored position: they are skipped and acked. Boundaries also carry their entry ID
(runs.start_key / end_key, unique), a second guard. One detector per schema (a PostgreSQL
advisory lock; a second one waits), which is what lets it claim every pending entry of the
group at start. A closed run is summarised once the writer group has acknowledged the frame
that closed it (so its readings are in PostgreSQL). The writer's trimming waits for this group
(writer/trim.py). Frames that do not decode are counted and acked (the writer dead-letters them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import replace
from typing import Any

import psycopg
from redis import Redis
from redis.exceptions import RedisError, ResponseError

from common.backoff import Backoff
from common.errors import DecodeError
from common.schema import Priority, decode
from common.settings import RunRule, Settings
from common.streams import RUNS_GROUP, StreamNames, consumer_name, parse_entry_id, reply_text
from runs import store
from runs.rules import Boundary, State, applies, step, value_of
from writer.trim import safe_trim_point

logger = logging.getLogger(__name__)
_LOCK = 0x7E1E_0018
STATS_LOG_S = 60.0
"""How often the counters (frames, runs started/ended/summarised, undecodable, out_of_order) are logged."""
Raw = tuple[str, bytes, dict[bytes, bytes] | None]


class Detector:
    def __init__(self, redis: Redis, conn: store.Conn, names: StreamNames, settings: Settings, consumer: str) -> None:
        self.redis, self.conn, self.names, self.consumer = redis, conn, names, consumer
        self.rules: list[RunRule] = list(settings.runs.rules)
        self.keys = [names.stream(Priority(p)) for p in settings.runs.priorities]
        self.batch, self.block_ms = settings.runs.batch, settings.runs.block_ms
        self.states: dict[tuple[str, str], State] = {}
        self.positions: dict[str, tuple[int, int]] = {}
        self.stats: Counter[str] = Counter()

    # ---- start --------------------------------------------------------------------------------
    def prepare(self, stop: threading.Event) -> bool:
        """Take the one-detector lock (waiting), create the group, claim its pending entries, load state."""
        lock = "SELECT pg_try_advisory_lock(%s, hashtext(current_schema()))"
        while not self.conn.execute(lock, [_LOCK]).fetchone()[0]:  # type: ignore[index]
            logger.info("another run detector holds the lock on this schema; waiting")
            if stop.wait(1.0):
                return False
        self.ensure_group()
        for key in self.keys:  # a dead predecessor's pending entries become ours (we are the only detector)
            start = "0-0"
            while True:
                next_start, claimed = self.redis.xautoclaim(key, RUNS_GROUP, self.consumer, 0, start, count=1000)[:2]
                self.stats["claimed"] += len(claimed)
                if reply_text(next_start) == "0-0":
                    break
                start = next_start
        self.load()
        return True

    def ensure_group(self) -> None:
        for key in self.keys:
            try:
                self.redis.xgroup_create(key, RUNS_GROUP, id="0", mkstream=True)
                logger.info("created consumer group %s on %s at 0", RUNS_GROUP, key)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def load(self) -> None:
        rows = self.conn.execute(
            "SELECT rule, device, state, since, since_entry, run_id, last_at, since_value FROM run_detector_state"
        ).fetchall()
        self.states = {(r[0], r[1]): State(*r[2:]) for r in rows}
        rows = self.conn.execute("SELECT stream, last_ms, last_seq FROM run_detector_position").fetchall()
        self.positions = {r[0]: (r[1], r[2]) for r in rows}

    # ---- one pass -----------------------------------------------------------------------------
    def once(self) -> int:
        """Read (own pending entries first), apply, commit, ack; summarise runs the writer has caught up with."""
        entries = self.read(pending=True) or self.read(pending=False)
        if entries:
            try:
                self.apply(entries)
            except BaseException:
                self.load()  # what was committed, not what this pass had in memory
                raise
            self.ack(entries)
        self.summarise_ready()
        return len(entries)

    def read(self, pending: bool) -> list[Raw]:
        streams: dict[Any, Any] = dict.fromkeys(self.keys, "0" if pending else ">")
        try:
            reply = self.redis.xreadgroup(
                RUNS_GROUP, self.consumer, streams, count=self.batch, block=None if pending else self.block_ms
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            logger.warning("consumer group %s vanished (Redis restarted without its data?): recreating", RUNS_GROUP)
            self.ensure_group()
            return []
        out: list[Raw] = []
        items: Any = reply.items() if isinstance(reply, dict) else reply or []
        for key, messages in items:
            if isinstance(messages, list) and messages and isinstance(messages[0], list):
                messages = messages[0]  # RESP3 shape
            out += [(reply_text(key), eid, fields) for eid, fields in messages]
        return out

    def apply(self, entries: list[Raw]) -> None:
        """Apply ``entries`` to the rules; one transaction for boundaries, states and positions."""
        touched: set[tuple[str, str]] = set()
        moved: set[str] = set()
        with self.conn.transaction():
            for stream, eid, fields in entries:
                position = parse_entry_id(eid)
                if position <= self.positions.get(stream, (0, 0)):
                    self.stats["skipped_seen"] += 1
                    continue
                self.positions[stream] = position
                moved.add(stream)
                if fields is None:
                    continue
                try:
                    frame = decode(fields, self.names.priority_of(stream))
                except (DecodeError, ValueError):
                    self.stats["undecodable"] += 1
                    continue
                self.stats["frames"] += 1
                for rule in self.rules:
                    value = value_of(rule, frame) if applies(rule, frame.device) else None
                    if value is None:
                        continue
                    key = (rule.name, frame.device)
                    old = self.states.get(key, State())
                    if old.last_at is not None and frame.observed_at <= old.last_at:
                        self.stats["out_of_order"] += 1  # older than a frame already applied: ignored
                    new, boundary = step(rule, frame.device, old, value, frame.observed_at, reply_text(eid))
                    if boundary is not None:
                        new = self.boundary(boundary, old, new, f"{stream}|{reply_text(eid)}")
                    if new != old:
                        self.states[key] = new
                        touched.add(key)
            for rule_name, device in touched:
                s = self.states[(rule_name, device)]
                self.conn.execute(
                    "INSERT INTO run_detector_state"
                    " (rule, device, state, since, since_entry, run_id, last_at, since_value)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (rule, device) DO UPDATE SET"
                    " state = excluded.state, since = excluded.since, since_entry = excluded.since_entry,"
                    " run_id = excluded.run_id, last_at = excluded.last_at, since_value = excluded.since_value",
                    [rule_name, device, s.state, s.since, s.since_entry, s.run_id, s.last_at, s.since_value],
                )
            for stream in moved:
                ms, seq = self.positions[stream]
                self.conn.execute(
                    "INSERT INTO run_detector_position (stream, last_ms, last_seq) VALUES (%s, %s, %s)"
                    " ON CONFLICT (stream) DO UPDATE SET last_ms = excluded.last_ms, last_seq = excluded.last_seq",
                    [stream, ms, seq],
                )

    def boundary(self, b: Boundary, old: State, new: State, entry: str) -> State:
        """Open or close the run of ``b`` (inside apply's transaction); the new state with its run id."""
        if b.kind == "start":
            meta = {"rule": b.rule.name, "channel": b.rule.channel, "start_above": b.rule.start_above,
                    "stop_below": b.rule.stop_below}  # fmt: skip
            run = store.create_run(self.conn, b.rule.name, [b.device], b.at, b.rule.kind, meta, "detector",
                                   start_key=b.key)  # fmt: skip
            self.stats["runs_started"] += 1
            logger.info("run %d %r started at %s (%s)", run.id, run.name, b.at.isoformat(), b.key)
            return replace(new, run_id=run.id)
        if old.run_id is None:
            logger.error("end boundary %s without an open run: ignored", b.key)
            return new
        try:
            run = store.stop_run(self.conn, store.get_run(self.conn, old.run_id), b.at, b.key, entry)
        except store.RunError as exc:  # stopped by hand meanwhile, or deleted
            logger.warning("run %d not closed by the detector: %s", old.run_id, exc)
            return new
        self.stats["runs_ended"] += 1
        logger.info("run %d %r ended at %s (%s)", run.id, run.name, b.at.isoformat(), b.key)
        return new

    def ack(self, entries: list[Raw]) -> None:
        by_stream: dict[str, list[bytes]] = {}
        for stream, eid, _ in entries:
            by_stream.setdefault(stream, []).append(eid)
        pipe = self.redis.pipeline(transaction=False)
        for stream, ids in by_stream.items():
            pipe.xack(stream, RUNS_GROUP, *ids)
        pipe.execute()

    def summarise_ready(self) -> int:
        """Summarise the detector's closed runs whose closing frame the writer group has acknowledged."""
        done = 0
        rows = self.conn.execute(
            "SELECT id, end_entry FROM runs WHERE status = 'closed' AND summary IS NULL AND end_entry IS NOT NULL"
            " ORDER BY id LIMIT 20"
        ).fetchall()
        for run_id, end_entry in rows:
            stream, _, eid = str(end_entry).partition("|")
            point = safe_trim_point(self.redis, stream, self.names.group)
            if point is None or parse_entry_id(eid) >= parse_entry_id(point):
                continue  # the writer has not committed that far yet
            store.summarise_run(self.conn, store.get_run(self.conn, run_id))
            self.stats["runs_summarised"] += 1
            done += 1
        return done


def run_detector(settings: Settings, stop: threading.Event, consumer: str | None = None) -> Counter[str]:
    """Run until ``stop``; reconnects after Redis or PostgreSQL errors. Returns the counters."""
    from common.redis_client import connect_redis
    from writer.pg import connect_pg

    total: Counter[str] = Counter()
    backoff = Backoff(base=0.2, cap=10.0)
    if not settings.runs.rules:
        logger.warning("TELEMETRY_RUNS__RULES is empty: no run will ever start automatically")
    while not stop.is_set():
        detector = None
        try:
            with connect_pg(settings.postgres) as conn:
                redis = connect_redis(settings.redis)
                detector = Detector(redis, conn, settings.redis.names, settings, consumer or consumer_name())
                if not detector.prepare(stop):
                    break
                logger.info("run detector ready: %d rules on %s", len(detector.rules), ", ".join(detector.keys))
                next_log = time.monotonic() + STATS_LOG_S
                while not stop.is_set():
                    detector.once()
                    backoff.reset()
                    if time.monotonic() >= next_log:
                        next_log = time.monotonic() + STATS_LOG_S
                        logger.info("run detector: %s", dict(detector.stats))
        except (RedisError, psycopg.OperationalError) as exc:
            delay = backoff.next_delay()
            logger.warning("run detector: %s: %s; retrying in %.1fs", type(exc).__name__, exc, delay)
            stop.wait(delay)
        finally:
            if detector is not None:
                total.update(detector.stats)
    logger.info("run detector stopped: %s", dict(total))
    return total
