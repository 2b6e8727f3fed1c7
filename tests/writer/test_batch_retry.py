"""Pure writer logic: batching by size and age, strict priority, and the error classifier."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import psycopg.errors as pgerr
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from common.schema import Channel, Frame, Priority
from common.streams import StreamNames
from writer.batch import Batcher
from writer.read import Entry, _entries
from writer.retry import describe, is_transient

T = datetime(2026, 1, 1, tzinfo=UTC)


def item(priority: Priority, channels: int = 2) -> tuple[Entry, Frame]:
    f = Frame("simulate", "d", T, T, 0, tuple(Channel(f"c{i}", 1.0) for i in range(channels)), priority=priority)
    return Entry("{t}:" + priority.value, b"1-0", {}, priority), f


def test_batch_is_due_by_size() -> None:
    b = Batcher(max_rows=10, max_age_s=60)
    for _ in range(4):
        b.add(*item(Priority.NORMAL, 2), now=0.0)
    assert not b.is_due(0.0)
    b.add(*item(Priority.NORMAL, 2), now=0.0)
    assert b.is_due(0.0)
    assert len(b.take_normal()) == 5 and b.rows == 0 and not b.is_due(100.0)


def test_batch_is_due_by_age_of_its_oldest_entry() -> None:
    b = Batcher(max_rows=1000, max_age_s=0.25)
    b.add(*item(Priority.BULK), now=10.0)
    b.add(*item(Priority.LOW), now=10.2)
    assert not b.is_due(10.24)
    assert b.is_due(10.25)
    assert b.wait_s(10.1, default=1.0) == pytest.approx(0.15)


def test_critical_and_high_never_wait_for_the_batch() -> None:
    b = Batcher(max_rows=1000, max_age_s=10)
    b.add(*item(Priority.BULK), now=0.0)
    b.add(*item(Priority.CRITICAL), now=0.0)
    b.add(*item(Priority.HIGH), now=0.0)
    assert b.wait_s(0.0, default=1.0) == 0.0
    urgent = b.take_urgent()
    assert [f.priority for _, f in urgent] == [Priority.CRITICAL, Priority.HIGH]
    assert len(b.normal) == 1 and b.rows == 2


def test_read_reply_is_sorted_critical_first() -> None:
    names = StreamNames("t")
    reply = [
        [b"{t}:bulk", [(b"1-0", {b"a": b"1"})]],
        [b"{t}:critical", [(b"2-0", {b"a": b"2"})]],
        [b"{t}:normal", [(b"3-0", {b"a": b"3"}), (b"4-0", None)]],  # None: deleted while pending
    ]
    entries = _entries(names, reply)
    assert [e.priority for e in entries] == [Priority.CRITICAL, Priority.NORMAL, Priority.BULK]


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (psycopg.OperationalError("server closed the connection unexpectedly"), True),
        (pgerr.AdminShutdown("terminating connection due to administrator command"), True),
        (pgerr.QueryCanceled("canceling statement due to statement timeout"), True),
        (pgerr.DeadlockDetected("deadlock"), True),
        (pgerr.SerializationFailure("could not serialize"), True),
        (pgerr.DiskFull("no space"), True),
        (pgerr.TooManyConnections("too many"), True),
        (pgerr.UndefinedTable("relation readings does not exist"), True),
        (psycopg.InterfaceError("the connection is closed"), True),
        (RedisConnectionError("Connection refused"), True),
        # Issue 11, point 6: with a SQLSTATE, only classes 22 and 23 are data errors.
        (pgerr.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction"), True),
        (pgerr.LockNotAvailable("canceling statement due to lock timeout"), True),
        (pgerr.IdleInTransactionSessionTimeout("terminating connection due to idle-in-transaction timeout"), True),
        (pgerr.InsufficientPrivilege("permission denied for table readings"), True),
        (pgerr.FeatureNotSupported("not supported"), True),
        (pgerr.RaiseException("raised by a function"), True),
        (pgerr.ProgramLimitExceeded("row is too big"), True),
        (pgerr.CharacterNotInRepertoire("invalid byte sequence for encoding UTF8: 0x00"), False),
        (pgerr.NumericValueOutOfRange("out of range"), False),
        (pgerr.CheckViolation("no partition of relation found for row"), False),
        (pgerr.StringDataRightTruncation("value too long"), False),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), False),
    ],
)
def test_error_classifier(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


def test_describe_names_the_sqlstate() -> None:
    assert describe(pgerr.CheckViolation("no partition\nDETAIL: x"))[0] == "sqlstate:23514"
    assert describe(pgerr.CheckViolation("no partition\nDETAIL: x"))[1] == "no partition"
    assert describe(ValueError("boom")) == ("ValueError", "boom")


def test_sort_keys_writes_a_key_once_and_reports_reuse() -> None:
    from dataclasses import replace

    from writer.pg_copy import frame_digest, sort_keys

    a = Frame("simulate", "d", T, T, 0, (Channel("x", 1.0),), producer="p", seq=1)
    other = replace(a, observed_at=T.replace(hour=1))  # same key, other content
    legacy = replace(a, seq=2)
    frames = [a, other, a, legacy]
    digests = [frame_digest(f) for f in frames]
    assert digests[0] != digests[1] and frame_digest(replace(a, received_at=T.replace(hour=2))) == digests[0]
    fresh, reused = sort_keys(frames, digests, {("p", 1)}, {("p", 1): digests[0], ("p", 2): None})
    assert fresh == [a] and reused == [1]  # the second a is a duplicate; legacy (NULL digest) too
