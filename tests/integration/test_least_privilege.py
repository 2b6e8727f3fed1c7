"""Least privilege against a stolen credential (issue 13), each credential used as an attacker would.

Redis: the ACL file rendered by deploy/redis/render-acl.sh on a private redis-server (the
``acl_redis`` fixture of test_redis_acl.py). PostgreSQL: roles from deploy/postgres/10-roles.sh
on a private cluster (roles are cluster-wide, so never on the shared server).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import SecretStr
from redis import Redis
from redis.exceptions import NoPermissionError, ResponseError
from rq import Queue
from rq.serializers import JSONSerializer

from admin.imports import enqueue_import
from admin.migrate import migrate
from common.publish import Publisher, new_producer_id
from common.redis_client import connect_redis
from common.schema import Priority
from common.settings import FileImportSettings, Settings
from producers.file_import.mapping import ColumnMapping
from tests.conftest import REPO
from tests.helpers import pg_query, remove_rq_keys, running_writer, wait_for
from tests.integration.pipeline import frame
from tests.integration.test_redis_acl import acl_redis, client
from writer import deadletter
from writer.partitions import ensure_partitions
from writer.pg_copy import write_frames
from writer.stream_ids import ids_ahead, repair
from writer.stream_status import stream_status
from writer.trim import unread_deletions

pytestmark = pytest.mark.integration

__all__ = ["acl_redis"]


def user_env(server: Any, folder: Path, user: str, namespace: str, **extra: str) -> dict[str, str]:
    """The environment of a process using ``user``'s Redis credential (password from its file)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    env.update(
        TELEMETRY_REDIS__URL=server.url,
        TELEMETRY_REDIS__USERNAME=user,
        TELEMETRY_REDIS__PASSWORD_FILE=str(folder / f"redis_{user}_password"),
        TELEMETRY_REDIS__NAMESPACE=namespace,
        **extra,
    )
    return env


def test_stolen_importer_credential_cannot_run_code_on_the_import_worker(
    settings: Settings, acl_redis: Any, tmp_path: Path
) -> None:
    """13.1: ``Queue("imports").enqueue("os.system", ...)`` with the importer password ran as the worker."""
    server, pw, folder = acl_redis
    thief = client(server, "importer", pw["importer"])
    queue = f"imports-{settings.redis.namespace}"
    marker = tmp_path / "owned"
    pickled = Queue(queue, connection=thief).enqueue("os.system", f"id > {marker}")  # rq's default: a pickle
    as_json = Queue(queue, connection=thief, serializer=JSONSerializer).enqueue("os.system", f"id > {marker}")
    # A real import on the same queue still runs, through the importer's ACL.
    csv = tmp_path / "good.csv"
    csv.write_text("Time,rpm\n2026-11-23T10:00:00Z,1000\n2026-11-23T10:00:01Z,1100\n")
    s = settings.model_copy(
        update={
            "redis": settings.redis.model_copy(update={"url": server.url}),
            "file_import": FileImportSettings(queue=queue),
        }
    )
    good = enqueue_import(s, csv, ColumnMapping(device="pump"), connection=thief)
    env = user_env(server, folder, "importer", settings.redis.namespace, TELEMETRY_FILE_IMPORT__QUEUE=queue)
    try:
        run = subprocess.run(
            ["telemetry-import-worker", "--burst"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
        )
        log = run.stdout + run.stderr
        assert run.returncode == 0, log[-3000:]
        assert not marker.exists(), "os.system ran on the worker"
        assert log.count("refused: job") == 2, log[-3000:]
        assert f"refused: job {as_json.id} names 'os.system'" in log
        assert f"refused: job {pickled.id} names None" in log  # a pickle is never even decoded
        admin = client(server, "admin", pw["admin"])
        assert admin.xlen(settings.redis.names.stream(Priority.BULK)) == 2, log[-3000:]  # the real import ran
        for job_id, status in ((pickled.id, b"failed"), (as_json.id, b"failed"), (good, b"finished")):
            assert thief.hget(f"rq:job:{job_id}", "status") == status, job_id
        for command in (
            ("SCRIPT", "FLUSH"),
            ("FUNCTION", "FLUSH"),
            ("FUNCTION", "LOAD", "#!lua name=x\n"),
            ("FCALL", "f", "0"),
        ):
            with pytest.raises(NoPermissionError):
                thief.execute_command(*command)
    finally:
        remove_rq_keys(thief, queue)


MAX_ID = "18446744073709551615-18446744073709551615"


def as_user(settings: Settings, url: str, user: str, password: str) -> Settings:
    redis = settings.redis.model_copy(update={"url": url, "username": user, "password": SecretStr(password)})
    return settings.model_copy(update={"redis": redis})


def test_a_forged_max_id_is_detected_by_the_writer_and_repaired_by_the_admin(
    settings: Settings, acl_redis: Any
) -> None:
    """13.2: one producer XADD with the largest ID stopped that priority for every producer."""
    server, pw, folder = acl_redis
    names = settings.redis.names
    crit = names.stream(Priority.CRITICAL)
    producer = as_user(settings, server.url, "producer", pw["producer"])
    writer = as_user(settings, server.url, "writer", pw["writer"])
    honest = Publisher(connect_redis(producer.redis), names, new_producer_id("honest"))
    frames = [replace(frame("alarm", i, x=float(i)), priority=Priority.CRITICAL) for i in range(6)]
    honest.stamp(frames[:3])
    assert honest.send() == 3
    with running_writer(writer) as live:
        wait_for(lambda: live.frames == 3, 30, what="genuine critical frames")
        thief = client(server, "producer", pw["producer"])
        thief.execute_command("XADD", crit, MAX_ID, "v", "1", "src", "forged")  # Redis cannot refuse it
        with pytest.raises(ResponseError, match="exhausted the last possible ID"):
            thief.xadd(crit, {"v": "1"})
        # Detected with the writer's own credential, within one trim pass.
        now_ms = int(time.time() * 1000)
        assert ids_ahead(connect_redis(writer.redis), names.streams, now_ms) == {crit: MAX_ID}
        # The one-command repair, as the admin user.
        env = user_env(server, folder, "admin", names.namespace)
        fixed = subprocess.run(
            [sys.executable, "-m", "admin.cli", "streams", "repair"],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert fixed.returncode == 0, fixed.stderr
        assert f"{crit}: removed 1 entries" in fixed.stdout, fixed.stdout
        honest.stamp(frames[3:])
        assert honest.send() == 3  # XADD * works again
        wait_for(lambda: live.frames == 6, 30, what="frames published after the repair")
    admin = client(server, "admin", pw["admin"])
    assert ids_ahead(admin, names.streams, int(time.time() * 1000)) == {}
    # The forged entry is kept for inspection: dead-lettered by the repair, or (it is no frame) by
    # the writer if it read it first; either way exactly once.
    dead = deadletter.list_dead(admin, names)
    assert [(d["entry_id"], d["stream"]) for _, d in dead] == [(MAX_ID, crit)], dead
    assert dead[0][1]["error_class"] in ("forged_id", "DecodeError")
    rows = pg_query(settings, "SELECT count(DISTINCT seq) FROM readings WHERE device = 'alarm'")
    assert rows[0][0] == 6


def test_repair_keeps_every_genuine_entry_and_the_group_position(settings: Settings, redis: Redis) -> None:
    """Repair with the writer behind: genuine entries not yet delivered are still delivered after it."""
    names = settings.redis.names
    key = names.stream(Priority.NORMAL)
    first = redis.xadd(key, {"n": "1"})
    redis.xgroup_create(key, names.group, id="0")
    assert redis.xreadgroup(names.group, "w", {key: ">"}, count=1)  # delivered, then acked
    redis.xack(key, names.group, first)
    second = redis.xadd(key, {"n": "2"})  # genuine, not yet delivered
    redis.execute_command("XADD", key, MAX_ID, "n", "forged")
    result = repair(redis, names, key, int(time.time() * 1000))
    assert (result.deleted, result.dead_lettered, result.group_reset) == (1, 1, False)
    third = redis.xadd(key, {"n": "3"})
    got = redis.xreadgroup(names.group, "w", {key: ">"})
    assert [eid for eid, _ in got[0][1]] == [second, third]
    assert unread_deletions(redis, names, [key]) == []
    dead = deadletter.list_dead(redis, names)
    assert [(d["entry_id"], d["error_class"]) for _, d in dead] == [(MAX_ID, "forged_id")]


def test_stolen_writer_credential_cannot_destroy_dead_letters_nor_pin_trimming(
    settings: Settings, acl_redis: Any
) -> None:
    """13.3: the writer could XTRIM the dead letters to 0 and create a group that never reads."""
    server, pw, _ = acl_redis
    names = settings.redis.names
    normal, dead = names.stream(Priority.NORMAL), names.deadletter
    admin = client(server, "admin", pw["admin"])
    admin.xadd(dead, {"stream": normal, "error": "kept"})
    thief = client(server, "writer", pw["writer"])
    forbidden = [
        ("XTRIM", dead, "MAXLEN", "0"),
        ("XGROUP", "CREATE", dead, "audit", "0"),
        ("XGROUP", "CREATE", f"{{{names.namespace}}}:other", "audit", "0", "MKSTREAM"),
        ("XGROUP", "DESTROY", normal, "writer"),
        ("XGROUP", "SETID", normal, "writer", "$"),
        ("XRANGE", dead, "-", "+"),
        ("XDEL", dead, "0-1"),
        ("DEL", dead),
        ("XREADGROUP", "GROUP", "g", "c", "STREAMS", dead, ">"),
    ]
    for command in forbidden:
        with pytest.raises(NoPermissionError):
            thief.execute_command(*command)
    assert admin.xlen(dead) == 1
    # Redis cannot stop a group on a priority stream (the writer creates its own there); trimming
    # ignores it instead of letting it pin the stream, and the writer reports it.
    thief.xgroup_create(normal, "audit", id="0", mkstream=True)
    writer = as_user(settings, server.url, "writer", pw["writer"])
    writer = writer.model_copy(update={"writer": writer.writer.model_copy(update={"trim_interval_s": 0.2})})
    publisher = Publisher(connect_redis(as_user(settings, server.url, "producer", pw["producer"]).redis), names, "p/1")
    publisher.stamp([frame("dev", i, x=float(i)) for i in range(500)])
    publisher.send()
    with running_writer(writer) as live:
        wait_for(lambda: live.frames == 500, 30, what="frames committed")
        wait_for(lambda: admin.xlen(normal) < 500, 30, what="acknowledged entries trimmed despite the foreign group")
    status = {row["stream"]: row for row in stream_status(admin, names)["streams"]}
    assert status[normal]["foreign_groups"] == ["audit"]


def test_a_forged_dead_letter_is_refused_at_replay(settings: Settings, acl_redis: Any, tmp_path: Path) -> None:
    """13.3: dead letters forged with the writer's password were published by `deadletter replay --all`."""
    server, pw, folder = acl_redis
    names = settings.redis.names
    normal = names.stream(Priority.NORMAL)
    keyfile = tmp_path / "deadletter_key"
    keyfile.write_text("k3y-" + "x" * 20)
    writer = as_user(settings, server.url, "writer", pw["writer"])
    writer = writer.model_copy(
        update={"writer": writer.writer.model_copy(update={"deadletter_key": SecretStr(keyfile.read_text())})}
    )
    client(server, "producer", pw["producer"]).xadd(normal, {"hello": "world"})  # poison: dead-lettered, signed
    with running_writer(writer) as live:
        wait_for(lambda: sum(live.dead_letters.values()) == 1, 30, what="the genuine dead letter")
    thief = client(server, "writer", pw["writer"])
    thief.xadd(names.deadletter, {"stream": normal, "entry_id": "1-1", "error_class": "x", "orig.v": "1"})
    admin = client(server, "admin", pw["admin"])
    (_genuine, _), (forged, _) = deadletter.list_dead(admin, names)
    env = user_env(server, folder, "admin", names.namespace, TELEMETRY_WRITER__DEADLETTER_KEY_FILE=str(keyfile))
    run = subprocess.run(
        [sys.executable, "-m", "admin.cli", "deadletter", "replay", "--all"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 1, run.stdout + run.stderr
    assert f"dead letter {forged} is unsigned" in run.stderr and "replayed 1 dead letters; refused 1" in run.stdout
    assert [d for d, _ in deadletter.list_dead(admin, names)] == [forged]  # the forged one stays for inspection
    assert admin.xlen(normal) >= 1  # the genuine one went back to its stream


# ---- PostgreSQL roles from deploy/postgres/10-roles.sh ------------------------------------------
@pytest.fixture
def deployed_roles(pg_server_factory: Any, tmp_path: Path) -> dict[str, Any]:
    """A private cluster checking passwords on TCP, set up by 10-roles.sh and migrated as the owner.

    psql runs through a shim that records its argv, to show no password is on a command line.
    Passwords hold a quote, a backslash and a space, to exercise the script's quoting.
    """
    server = pg_server_factory(host_auth="scram-sha-256")
    shim = tmp_path / "bin"
    shim.mkdir()
    argv_log = tmp_path / "psql-argv.log"
    real = shutil.which("psql")
    assert real is not None
    (shim / "psql").write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {argv_log}\nexec {real} "$@"\n')
    (shim / "psql").chmod(0o755)
    passwords = {"owner": "o'wn\\er " + secrets.token_hex(6), "writer": "wr'it\\er " + secrets.token_hex(6),
                 "runs": "ru'n\\s " + secrets.token_hex(6)}  # fmt: skip
    files = {}
    for role, pw in passwords.items():
        files[role] = tmp_path / f"pg_{role}_password"
        files[role].write_text(pw + "\n")
        files[role].chmod(0o644)  # psql runs as root here; the file is the test's own
    env = {
        **os.environ,
        "PATH": f"{shim}:{os.environ['PATH']}",
        "PGHOST": str(server.root),
        "PGPORT": str(server.port),
        "POSTGRES_USER": "postgres",
        "PG_OWNER_PASSWORD_FILE": str(files["owner"]),
        "PG_WRITER_PASSWORD_FILE": str(files["writer"]),
        "PG_RUNS_PASSWORD_FILE": str(files["runs"]),
    }
    run = subprocess.run(
        ["bash", str(REPO / "deploy" / "postgres" / "10-roles.sh")], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    base = {"host": "127.0.0.1", "port": server.port, "dbname": "telemetry"}
    owner = psycopg.conninfo.make_conninfo(**base, user="telemetry_owner", password=passwords["owner"])
    writer = psycopg.conninfo.make_conninfo(**base, user="telemetry_writer", password=passwords["writer"])
    runs = psycopg.conninfo.make_conninfo(**base, user="telemetry_run_detector", password=passwords["runs"])
    with psycopg.connect(owner, autocommit=True) as conn:
        migrate(conn, "telemetry")
    return {"owner": owner, "writer": writer, "runs": runs, "passwords": passwords, "argv": argv_log.read_text(),
            "files": files}  # fmt: skip


def refused(conn: psycopg.Connection[Any], *statements: str) -> None:
    """Each statement fails for want of a privilege."""
    for statement in statements:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


def test_role_passwords_never_reach_a_command_line(deployed_roles: dict[str, Any]) -> None:
    """13.5: 10-roles.sh passed both passwords in psql's argv (visible in ps while it ran)."""
    argv = deployed_roles["argv"]
    assert argv.count("\n") == 2  # both psql runs were seen
    for pw in deployed_roles["passwords"].values():
        assert pw not in argv and pw.split()[-1] not in argv
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(deployed_roles["writer"].replace("wr", "xx", 1), connect_timeout=5).close()


def test_the_writer_role_cannot_rewrite_loss_accounting(deployed_roles: dict[str, Any]) -> None:
    """13.4: `UPDATE producer_progress SET frames = max_seq` erased every gap with the writer's password."""
    with psycopg.connect(deployed_roles["owner"], autocommit=True) as conn:
        conn.execute("SET search_path TO telemetry")
        conn.execute("INSERT INTO producer_progress (producer, source, frames, max_seq) VALUES ('p/1', 'obd', 7, 10)")
    with psycopg.connect(deployed_roles["writer"], autocommit=True) as conn:
        conn.execute("SET search_path TO telemetry")
        assert conn.execute("SELECT current_user").fetchone() == ("telemetry_writer",)
        refused(
            conn,
            "UPDATE producer_progress SET frames = max_seq",
            "INSERT INTO producer_progress (producer, source, frames, max_seq) VALUES ('p/2', 'obd', 5, 5)",
            "DELETE FROM producer_progress",
            "INSERT INTO progress_calls VALUES (pg_current_xact_id())",
        )
        # The function counts only ledger rows this transaction inserted, once per transaction.
        with conn.transaction():
            assert conn.execute("SELECT record_progress('{p/1}', '{8}', '{obd}')").fetchone() == (0,)
        with conn.transaction():
            conn.execute("INSERT INTO frame_keys (producer, seq, day) VALUES ('p/1', 8, current_date)")
            assert conn.execute("SELECT record_progress('{p/1,p/1}', '{8,9}', '{obd,obd}')").fetchone() == (1,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="once per transaction"):
                conn.execute("SELECT record_progress('{p/1}', '{8}', '{obd}')")
        assert conn.execute("SELECT frames, max_seq FROM producer_progress WHERE producer = 'p/1'").fetchone() == (
            7, 10,
        )  # fmt: skip  # the failed transaction rolled back the +1 with it
        with conn.transaction():
            conn.execute("INSERT INTO frame_keys (producer, seq, day) VALUES ('p/1', 8, current_date)")
            conn.execute("SELECT record_progress('{p/1}', '{8}', '{obd}')")
        row = conn.execute("SELECT frames, max_seq FROM producer_progress WHERE producer = 'p/1'").fetchone()
        assert row == (8, 10)  # one committed frame counted once; the gap of 2 stays visible


def test_the_writer_role_cannot_create_or_drop_partitions_outside_its_retention(
    deployed_roles: dict[str, Any],
) -> None:
    """13.4: ensure_partitions('1900-01-01', ...) made any number of partitions, and
    drop_partitions_before(current_date - 1) dropped a 5-day-old row (floor shipped as 1 day)."""
    with psycopg.connect(deployed_roles["owner"], autocommit=True) as conn:
        conn.execute("SET search_path TO telemetry")
        conn.execute("UPDATE retention_policy SET retention_days = 30")  # what `telemetry-admin migrate` stores
        assert conn.execute("SELECT min_retention_days FROM retention_policy").fetchone() == (7,)
        conn.execute("SELECT ensure_partitions(current_date - 5, current_date - 5)")  # the owner is not bounded
        conn.execute("SELECT ensure_partitions('2010-01-01', '2010-01-01')")
        conn.execute(
            "INSERT INTO readings_packed (observed_at, received_at, seq, device_id, producer_id, series, num_values)"
            " VALUES (now() - interval '5 days', now(), 1, 1, 1, '{1}', '{1.0}')"
        )
    with psycopg.connect(deployed_roles["writer"], autocommit=True) as conn:
        conn.execute("SET search_path TO telemetry")
        for statement in (
            "SELECT ensure_partitions('1900-01-01', '1900-01-02')",
            "SELECT ensure_partitions(current_date - 40, current_date - 40)",
            "SELECT ensure_partitions(current_date + 400, current_date + 401)",
            "SELECT drop_partitions_before(current_date - 1)",
            "SELECT ensure_partitions_unbounded('1900-01-01', '1900-01-02')",
            "SELECT drop_expired_partitions_unbounded(current_date, 1000)",
            "UPDATE retention_policy SET retention_days = 1",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        assert conn.execute("SELECT ensure_partitions(current_date - 10, current_date + 3)").fetchone() is not None
        # A drop asked for "everything older than yesterday" is clamped to the retention (30 days):
        # the 2010 day goes, the 5-day-old row stays.
        (dropped,) = conn.execute("SELECT drop_expired_partitions(current_date - 1, 1000)").fetchone()  # type: ignore[misc]
        assert dropped == ["readings_p20100101"]
    with psycopg.connect(deployed_roles["owner"], autocommit=True) as conn:
        conn.execute("SET search_path TO telemetry")
        assert conn.execute("SELECT count(*) FROM readings_packed").fetchone() == (1,)


def test_a_stolen_writer_credential_cannot_repoint_a_devices_layout(deployed_roles: dict[str, Any]) -> None:
    """Migration 011: a frame stored with series NULL is read through its device's layout, so a
    layout or slot changed afterwards would give every such frame's values to other channels."""
    now = datetime.now(UTC)
    frames = [replace(frame("elm-0", n, now, rpm=900.0, afr=14.7), producer="p/1", seq=n) for n in (1, 2)]
    with psycopg.connect(deployed_roles["writer"], autocommit=True) as conn:
        conn.execute("SET search_path TO telemetry")
        ensure_partitions(conn, now.date(), now.date())
        write_frames(conn, frames)  # the writer's own path sets the device's layout
    with psycopg.connect(deployed_roles["owner"], autocommit=True) as conn:
        (dev, layout) = conn.execute("SELECT id, layout FROM telemetry.devices").fetchone()  # type: ignore[misc]
        assert len(layout) == 2
    with psycopg.connect(deployed_roles["writer"], autocommit=True) as conn:
        conn.execute("SET search_path TO telemetry")
        refused(
            conn,
            "UPDATE devices SET layout = ARRAY[layout[2], layout[1]]",
            "UPDATE series SET slot = 3 - slot",
            "DELETE FROM series",
            "INSERT INTO series (device_id, source, device, channel, unit, slot) VALUES (1, 'obd', 'e', 'x', '', 1)",
        )
        again = conn.execute("SELECT * FROM device_layouts(%s, %s)", [[dev, dev], layout[::-1]]).fetchall()
        assert again == [(dev, layout)]  # a layout once set is never replaced
    with psycopg.connect(deployed_roles["owner"], autocommit=True) as conn:
        conn.execute("SET search_path TO telemetry")
        rows = conn.execute("SELECT seq, channel, value FROM readings ORDER BY seq, channel").fetchall()
        assert rows == [(1, "afr", 14.7), (1, "rpm", 900.0), (2, "afr", 14.7), (2, "rpm", 900.0)]
        assert conn.execute("SELECT count(*) FROM readings_packed WHERE series IS NULL").fetchone() == (2,)
