"""``telemetry-admin``: migrations, partitions, stream status, dead letters, imports.

The operator's command line (package ``admin``); it may import ``writer`` and ``common``, never
``producers`` (``python -m admin.layers`` checks). The write path's own modules it drives
(``writer.deadletter``, ``writer.partitions``, ``writer.stream_ids``, ``writer.stream_status``)
stay in ``writer/`` because the writer uses them at run time.

telemetry-admin migrate
telemetry-admin partitions create FIRST_DAY [LAST_DAY]
telemetry-admin retention accept-clock         # after checking the clock: let retention run again
telemetry-admin archive list                 # the cold tier's files (ARCHIVE__DIR): day, readings, bytes
telemetry-admin archive export DAY | --due   # a day (or every day past ARCHIVE__HOT_DAYS) to Parquet, then drop it
telemetry-admin archive restore DAY          # an archived day back into PostgreSQL
telemetry-admin streams                      # length, lag, pending per consumer
telemetry-admin streams repair               # remove entry IDs from the future (forged XADD IDs)
telemetry-admin status [--json]              # live view: streams, writers, producers, gaps, dead letters
telemetry-admin deadletter list [--count N]
telemetry-admin deadletter show ID
telemetry-admin deadletter replay ID... | --all
telemetry-admin deadletter purge ID... | --all
telemetry-admin validate [--role writer|producer|importer|admin|all] [--source S]   # exit 0/2/3
telemetry-admin tap [--priority P] [--source S] [--device D] [--channel C]   # frames live, no group
telemetry-admin run start|stop|mark|list|show|summarise|import|compare|plot|export   # runs (admin/run_cli.py)
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, date, datetime
from typing import Any

import psycopg
from redis.exceptions import RedisError

from admin.run_cli import add_parser as add_run_parser
from common.errors import ConfigError
from common.redis_client import connect_redis
from common.settings import Settings, load_settings
from writer import deadletter
from writer.stream_status import stream_status


def _migrate(s: Settings, _args: argparse.Namespace) -> int:
    from admin.migrate import migrate
    from writer.partitions import maintain
    from writer.pg import connect_pg

    with connect_pg(s.postgres) as conn:
        applied = migrate(conn, s.postgres.schema_name)
        # The retention the writer role may act within (migration 006: partitions it may create
        # or drop); telemetry-admin migrate runs as the owner, the writer cannot change it.
        conn.execute("UPDATE retention_policy SET retention_days = %s", [s.writer.retention_days])
        from writer.staleness import store_rules  # issue 19: TELEMETRY_STALENESS__RULES

        store_rules(conn, s.staleness)
        made = maintain(conn, datetime.now(UTC).date(), s.writer.retention_days, s.writer.partitions_ahead_days)
    print(f"schema {s.postgres.schema_name}: applied {applied or 'nothing (up to date)'}; {made} new partitions")
    return 0


def _partitions(s: Settings, args: argparse.Namespace) -> int:
    from writer.partitions import PARTITIONED, ensure_partitions
    from writer.pg import connect_pg

    first = date.fromisoformat(args.first)
    last = date.fromisoformat(args.last or args.first)
    if last < first or (last - first).days > 3660:
        print("telemetry-admin: LAST_DAY must be on or after FIRST_DAY, at most 10 years later", file=sys.stderr)
        return 2
    with connect_pg(s.postgres) as conn:
        made = ensure_partitions(conn, first, last)
    days = (last - first).days + 1
    span = str(first) if first == last else f"{first}..{last}"
    print(f"{span} ({days} day{'s' if days > 1 else ''}): {made} new partitions ({', '.join(PARTITIONED)} per day)")
    return 0


def _retention(s: Settings, args: argparse.Namespace) -> int:
    from writer.pg import connect_pg
    from writer.retention import accept_clock

    with connect_pg(s.postgres) as conn:
        row = conn.execute("SELECT refusal FROM retention_state").fetchone()
        accept_clock(conn)
    print(f"retention will trust the clock from its next pass (last refusal: {row[0] if row else None})")
    return 0


def _archive(s: Settings, args: argparse.Namespace) -> int:
    if s.archive.dir is None:
        print("telemetry-admin: set TELEMETRY_ARCHIVE__DIR to the archive directory", file=sys.stderr)
        return 2
    try:
        from admin import archive
    except ImportError as exc:
        print(
            f"telemetry-admin: the archive needs pyarrow: pip install 'edge-telemetry[archive]' ({exc})",
            file=sys.stderr,
        )
        return 2
    from writer.pg import connect_pg

    directory = s.archive.dir
    if args.op == "list":
        for day, path, rows, size in archive.list_archive(directory):
            print(f"{day}  {rows:>12,} readings  {size:>14,} bytes  {size / max(rows, 1):6.2f} B/reading  {path}")
        return 0
    if (args.day is not None) == (args.op == "export" and args.due):  # one DAY, or --due
        print(f"telemetry-admin: archive {args.op} takes one DAY (YYYY-MM-DD){' or --due' * (args.op == 'export')}",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        with connect_pg(s.postgres) as conn:
            if args.op == "restore":
                day = date.fromisoformat(args.day)
                n = archive.restore_day(conn, day, directory)
                print(f"{day}: restored {n:,} readings from {archive.archive_path(directory, day)}")
                return 0
            if args.day:
                days = [date.fromisoformat(args.day)]
            else:
                days = archive.due_days(conn, datetime.now(UTC).date(), s.archive.hot_days)
                days = days[: s.archive.max_days_per_pass]
            for day in days:
                path, n = archive.export_day(conn, day, directory)
                print(f"{day}: {n:,} readings in {path} ({path.stat().st_size:,} bytes); partition dropped")
    except archive.ArchiveError as exc:
        print(f"telemetry-admin: archive: {exc}", file=sys.stderr)
        return 1
    return 0


def _streams(s: Settings, args: argparse.Namespace) -> int:
    if args.action == "repair":
        return _repair_ids(s, args)
    status = stream_status(connect_redis(s.redis), s.redis.names)
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(f"{'stream':<28} {'length':>9} {'lag':>9} {'pending':>9}  consumers (pending, idle ms)")
    for row in status["streams"]:
        consumers = ", ".join(f"{c['name']}({c['pending']}, {c['idle_ms']})" for c in row["consumers"]) or "-"
        print(f"{row['stream']:<28} {row['length']:>9} {row['lag']!s:>9} {row['pending']:>9}  {consumers}")
    print(f"{s.redis.names.deadletter:<28} {status['deadletter']:>9}")
    return 0


def _repair_ids(s: Settings, args: argparse.Namespace) -> int:
    import time

    from writer.stream_ids import ids_ahead, repair

    redis, names = connect_redis(s.redis), s.redis.names
    now_ms, tolerance = int(time.time() * 1000), int(args.tolerance_hours * 3_600_000)
    ahead = ids_ahead(redis, names.streams, now_ms, tolerance)
    if not ahead:
        print("no stream has entry IDs from the future: nothing to repair")
        return 0
    for key in ahead:
        secret = s.writer.deadletter_key
        r = repair(redis, names, key, now_ms, tolerance, secret.get_secret_value().encode() if secret else None)
        print(
            f"{key}: removed {r.deleted} entries with IDs ahead of the clock ({r.dead_lettered} to the dead-letter"
            f" stream, replay them after checking); last ID now {r.last_id}"
            + ("; writer group position reset" if r.group_reset else "")
        )
    return 0


def _status(s: Settings, args: argparse.Namespace) -> int:
    from admin.status import LazyPg, snapshot, watch
    from writer.freshness import writer_latency
    from writer.pg import connect_pg

    redis, pg = connect_redis(s.redis), LazyPg(lambda: connect_pg(s.postgres))
    url = args.writer_url or f"http://{s.http.host}:{s.http.port or 9108}"
    latency = (lambda: writer_latency(url)) if url != "none" else (lambda: None)
    if args.json:
        data = snapshot(redis, s.redis.names, pg, args.sample_s, args.top, args.producer, latency)
        print(json.dumps(data, indent=2, default=str))
    else:
        watch(redis, s.redis.names, pg, max(0.2, args.interval), args.top, producer_urls=args.producer, latency=latency)
    return 0


def _dead(s: Settings, args: argparse.Namespace) -> int:
    r = connect_redis(s.redis)
    names = s.redis.names
    if args.action == "list":
        for did, summary in deadletter.list_dead(r, names, args.count):
            print(f"{did}  {summary.get('stream')}  {summary.get('error_class')}: {summary.get('error')}")
        return 0
    if args.action == "show":
        if len(args.ids) != 1:
            print("telemetry-admin: show takes one ID", file=sys.stderr)
            return 2
        fields = deadletter.show_dead(r, names, args.ids[0])
        if fields is None:
            print(f"telemetry-admin: no dead letter {args.ids[0]}", file=sys.stderr)
            return 1
        print(json.dumps({k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()}, indent=2))
        return 0
    ids: list[str] | None = args.ids
    if args.all:
        ids = [did for did, _ in deadletter.list_dead(r, names, count=1_000_000)] if args.action == "replay" else None
    elif not ids:
        print(f"telemetry-admin: {args.action} needs IDs or --all", file=sys.stderr)
        return 2
    if args.action == "replay":
        secret = s.writer.deadletter_key
        key = secret.get_secret_value().encode() if secret is not None else None
        done, refused = [], 0
        for did in ids or []:
            try:
                done += deadletter.replay(r, names, [did], key, unverified=args.unverified)
            except deadletter.UnverifiedDeadLetter as exc:
                print(f"telemetry-admin: {exc}", file=sys.stderr)
                refused += 1
        print(f"replayed {len(done)} dead letters" + (f"; refused {refused} unverified" if refused else ""))
        return 1 if refused else 0
    else:
        print(f"purged {deadletter.purge(r, names, ids)} dead letters")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="telemetry-admin", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply database migrations (idempotent)").set_defaults(fn=_migrate)
    p = sub.add_parser("partitions", help="create daily partitions for a date range")
    p.add_argument("op", choices=["create"])
    p.add_argument("first", help="YYYY-MM-DD")
    p.add_argument("last", nargs="?", help="YYYY-MM-DD (default: FIRST)")
    p.set_defaults(fn=_partitions)
    p = sub.add_parser("retention", help="accept-clock: let retention run after it refused a clock step")
    p.add_argument("op", choices=["accept-clock"])
    p.set_defaults(fn=_retention)
    p = sub.add_parser("archive", help="cold tier: list, export (then drop) or restore days as Parquet files")
    p.add_argument("op", choices=["list", "export", "restore"])
    p.add_argument("day", nargs="?", help="YYYY-MM-DD (UTC day)")
    p.add_argument("--due", action="store_true", help="export: every day past TELEMETRY_ARCHIVE__HOT_DAYS")
    p.set_defaults(fn=_archive)
    p = sub.add_parser("streams", help="length, lag and pending per priority stream; or repair entry IDs")
    p.add_argument(
        "action",
        nargs="?",
        default="status",
        choices=["status", "repair"],
        help="repair: remove entries whose IDs are ahead of the clock (an XADD with an explicit ID)",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--tolerance-hours", type=float, default=24.0, help="repair: how far ahead an ID may be")
    p.set_defaults(fn=_streams)
    p = sub.add_parser("status", help="live view: streams, writers, producers, gaps, dead letters")
    p.add_argument("--json", action="store_true", help="print one snapshot as JSON and exit")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes (default 2)")
    p.add_argument("--sample-s", type=float, default=1.0, help="--json: seconds over which rates are measured")
    p.add_argument("--top", type=int, default=10, help="producers listed (most recent, and most gaps)")
    p.add_argument(
        "--producer",
        action="append",
        default=[],
        metavar="URL",
        help="a producer's ops endpoint (http://host:9109), repeatable: show its source's own counters",
    )
    p.add_argument("--writer-url", help="a writer's endpoint for e2e latency (default this host's :9108; none)")
    p.set_defaults(fn=_status)
    p = sub.add_parser("deadletter", help="list, show, replay or purge dead letters")
    p.add_argument("action", choices=["list", "show", "replay", "purge"])
    p.add_argument("ids", nargs="*")
    p.add_argument("--all", action="store_true")
    p.add_argument("--count", type=int, default=50)
    p.add_argument("--unverified", action="store_true", help="replay: also dead letters without a valid signature")
    p.set_defaults(fn=_dead)
    _add_import(sub)
    from admin.verbs import add_verbs  # issue 19: tap, validate

    add_verbs(sub)
    add_run_parser(sub)  # telemetry-admin run ... (issue 17)
    return parser


def _add_import(sub: Any) -> None:
    from admin.imports import admin_import, admin_import_watch

    p = sub.add_parser("import", help="import a CSV, JSONL or ECU log (.msl, .mlg) file into the bulk stream (rq job)")
    p.add_argument("file", help="CSV, JSONL, .msl or .mlg file; must be readable by the rq worker at the same path")
    p.add_argument("--mapping", help="JSON file with a column mapping (common/import_request.py ColumnMapping)")
    p.add_argument("--profile", choices=["auto", "generic", "powervision", "winpep8", "jsonl", "mlg", "msl"])
    p.add_argument("--device", help="fixed device name (default: the file name without extension)")
    p.add_argument("--device-column", dest="device_column")
    p.add_argument("--time-column", dest="time_column")
    p.add_argument(
        "--time-format", dest="time_format", help="iso|epoch_s|epoch_ms|elapsed_s|elapsed_ms|strptime pattern"
    )
    p.add_argument("--session")
    p.add_argument("--no-watch", action="store_true", help="print the job id and return without a progress bar")
    p.set_defaults(fn=admin_import)
    p = sub.add_parser("import-status", help="progress bar of an import job until it ends")
    p.add_argument("job_id")
    p.set_defaults(fn=admin_import_watch)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"telemetry-admin: {exc}", file=sys.stderr)
        return 2
    try:
        result: Any = args.fn(settings, args)
        return int(result)
    except KeyError as exc:  # raised with a complete sentence ("no dead letter 1-0")
        print(f"telemetry-admin: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 1
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"telemetry-admin: PostgreSQL: {first} (TELEMETRY_POSTGRES__DSN)", file=sys.stderr)
        return 1
    except RedisError as exc:
        print(f"telemetry-admin: Redis: {exc} (TELEMETRY_REDIS__URL)", file=sys.stderr)
        return 1
    except (OSError, ValueError, ConfigError) as exc:
        print(f"telemetry-admin: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
