"""The on-disk spool: order, keys, bounds and drop policy, torn tails, crash and restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import producers.spool.store as spool_mod
from common.errors import ConfigError
from common.schema import Priority
from producers.spool import Append, Spool, pack_fields, unpack_fields

P = Priority


def entry(seq: int, size: int = 0) -> dict[str, str | bytes]:
    return {"v": "1", "prod": "p/1", "seq": str(seq), "ch": b'[["x",1.0,"","good"]]' + b" " * size}


def open_spool(path: Path, max_bytes: int = 1 << 20, segment: int = 4096, drops: Counter | None = None) -> Spool:
    hook = (lambda r, p, n: drops.update({(r, p.value): n})) if drops is not None else None
    return Spool(path, max_bytes, segment, fsync_interval_s=0, on_drop=hook)


def drain(s: Spool) -> list[tuple[str, int]]:
    out = []
    while batch := s.peek(7):
        out += [(r.priority.value, int(r.fields[b"seq"])) for r in batch]
        s.consume(batch)
    return out


def test_fields_round_trip_byte_exact() -> None:
    fields = {"k": "é\t\n\\N", "b": b"\x00\xff", "": ""}
    assert unpack_fields(pack_fields(fields)) == {
        k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in fields.items()
    }


def test_replays_in_order_highest_priority_first_and_survives_reopen(tmp_path: Path) -> None:
    s = open_spool(tmp_path)
    for i in range(1, 301):
        assert s.append(P.NORMAL if i % 3 else P.CRITICAL, entry(i)) is Append.STORED
    first = s.peek(50)
    s.consume(first[:20])
    s.close()
    s = open_spool(tmp_path)
    assert s.records == 280
    got = drain(s)
    crit = [n for p, n in got if p == "critical"]
    norm = [n for p, n in got if p == "normal"]
    assert got[: len(crit)] == [("critical", n) for n in crit]  # all critical before any normal
    assert crit == [i for i in range(1, 301) if i % 3 == 0][20:]
    assert norm == [i for i in range(1, 301) if i % 3]
    assert s.empty and s.bytes == 0 and not list(tmp_path.glob("*/*.seg"))
    s.close()


def test_normal_drops_oldest_segments_and_counts_every_frame(tmp_path: Path) -> None:
    drops: Counter = Counter()
    s = open_spool(tmp_path, max_bytes=20_000, segment=2_000, drops=drops)
    for i in range(1, 1001):
        assert s.append(P.NORMAL, entry(i, 50)) is Append.STORED
    kept = [n for _, n in drain(s)]
    assert s.bytes <= 20_000
    assert drops[("spool_full", "normal")] == 1000 - len(kept) > 0
    assert kept == list(range(1001 - len(kept), 1001))  # the newest survive, in order


def test_critical_evicts_bulk_then_low_then_normal_then_blocks(tmp_path: Path) -> None:
    drops: Counter = Counter()
    s = open_spool(tmp_path, max_bytes=6_000, segment=1_000, drops=drops)
    seq = 0
    for p in (P.NORMAL, P.LOW, P.BULK):
        for _ in range(10):
            seq += 1
            assert s.append(p, entry(seq, 100)) is Append.STORED
    while (result := s.append(P.CRITICAL, entry(seq := seq + 1, 100))) is Append.STORED:
        pass
    assert result is Append.BLOCKED
    assert {k[0] for k in drops} == {"evicted"}
    assert drops[("evicted", "bulk")] == drops[("evicted", "low")] == drops[("evicted", "normal")] == 10
    assert s.append(P.BULK, entry(0, 100)) is Append.DROPPED  # nothing lower to evict: the new bulk frame goes
    assert drops[("spool_full", "bulk")] == 1
    assert {r.priority for r in s.peek(1000)} == {P.CRITICAL}


def test_torn_tail_is_cut_reported_and_appends_continue(tmp_path: Path) -> None:
    s = open_spool(tmp_path, segment=1 << 20)
    for i in range(1, 11):
        s.append(P.HIGH, entry(i))
    s.close()
    seg = next((tmp_path / "high").glob("*.seg"))
    data = seg.read_bytes()
    seg.write_bytes(data[:-5])  # the last record torn in the middle
    s = open_spool(tmp_path)
    assert s.torn_bytes > 0 and s.records == 9
    s.append(P.HIGH, entry(11))
    s.close()
    s = open_spool(tmp_path)
    assert s.torn_bytes == 0
    assert [n for _, n in drain(s)] == [*range(1, 10), 11]


def test_garbage_segment_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "normal").mkdir(parents=True)
    (tmp_path / "normal" / "000000000001.seg").write_bytes(b"not a spool")
    s = open_spool(tmp_path)
    assert s.empty and s.torn_bytes == 11


def test_second_process_cannot_open_the_same_spool(tmp_path: Path) -> None:
    s = open_spool(tmp_path)
    with pytest.raises(ConfigError, match="in use"):
        open_spool(tmp_path)
    s.close()


def test_identity_continues_after_clean_stop(tmp_path: Path) -> None:
    s = open_spool(tmp_path)
    assert s.resume("sim/a") == ("sim/a", 1, 0)
    s.save_seq(42, 42)
    s.close()
    s = open_spool(tmp_path)
    assert s.resume("sim/b") == ("sim/a", 42, 0)
    s.close()


_CRASH = """
import os, signal, sys
from pathlib import Path
from common.schema import Priority
from producers.spool import Spool
s = Spool(Path(sys.argv[1]), 1 << 20, 4096, fsync_interval_s=60)
s.resume("sim/a")
for i in range(1, 101):
    s.save_seq(i + 1, i)          # frame i read and stamped, not yet spooled
    s.append(Priority.NORMAL, {"seq": str(i)})
    s.save_seq(i + 1, i + 1)      # spooled
s.save_seq(104, 101)              # three more frames read, then killed before spooling them
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_kill_9_loses_nothing_spooled_and_counts_the_frames_in_flight(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", _CRASH, str(tmp_path)], cwd=Path(__file__).parents[2], timeout=30)
    assert proc.returncode == -signal.SIGKILL
    s = open_spool(tmp_path)
    assert s.resume("sim/new") == ("sim/a", 104, 3)  # same producer, next unused seq, 3 lost (gaps 101-103)
    assert [n for _, n in drain(s)] == list(range(1, 101))
    s.close()


def test_after_a_reboot_an_unclean_spool_starts_a_new_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = open_spool(tmp_path)
    s.resume("sim/a")
    s.append(P.NORMAL, entry(1))
    s.save_seq(5, 2)
    s.sync(force=True)
    os.close(s._lock_fd)  # "power loss": no orderly close
    monkeypatch.setattr(spool_mod, "boot_id", lambda: "another-boot")
    s = open_spool(tmp_path)
    assert s.resume("sim/b") == ("sim/b", 1, 0)  # state may be stale: never reuse sim/a's numbers
    assert [n for _, n in drain(s)] == [1]  # but its spooled frames are still replayed, keys unchanged
    s.close()
