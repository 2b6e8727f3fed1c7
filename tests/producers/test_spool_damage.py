"""Spool damage (issue 12, finding 5): one flipped byte loses exactly the damaged record.

The spool resynchronises on the next intact record instead of truncating; only the newest
segment of a queue can have a torn tail; records lost in an older segment are counted exactly
(reason ``corrupt``), once, also when the damage is met during a replay.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from common.schema import Priority
from producers.spool import Spool
from producers.spool.records import HEADER, MAGIC

P = Priority


def entry(seq: int) -> dict[str, str | bytes]:
    return {"v": "1", "prod": "p/1", "seq": str(seq), "ch": b'[["x",1.0,"","good"]]' + b" " * (seq % 7)}


def open_spool(path: Path, drops: Counter[tuple[str, str]], segment: int = 8192) -> Spool:
    return Spool(path, 1 << 24, segment, fsync_interval_s=0, on_drop=lambda r, p, n: drops.update({(r, p.value): n}))


def fill(path: Path, n: int, priority: Priority = P.NORMAL) -> list[Path]:
    s = open_spool(path, Counter())
    for i in range(1, n + 1):
        s.append(priority, entry(i))
    s.close()
    return sorted((path / priority.value).glob("*.seg"))


def drain(s: Spool) -> list[int]:
    out = []
    while batch := s.peek(13):
        out += [int(r.fields[b"seq"]) for r in batch]
        s.consume(batch)
    return out


def record_offsets(seg: Path) -> list[int]:
    data, pos, out = seg.read_bytes(), len(MAGIC), []
    while pos < len(data):
        out.append(pos)
        pos += HEADER.size + HEADER.unpack_from(data, pos)[0]
    return out


def flip(seg: Path, offset: int) -> None:
    data = bytearray(seg.read_bytes())
    data[offset] ^= 0x5A
    seg.write_bytes(bytes(data))


@pytest.mark.parametrize("where", ["payload", "length", "crc", "recno"])
def test_one_flipped_byte_mid_segment_loses_exactly_that_record(tmp_path: Path, where: str) -> None:
    segments = fill(tmp_path, 300)
    assert len(segments) > 3
    seg = segments[1]  # an older segment, in the middle of the spool
    offsets = record_offsets(seg)
    victim = offsets[len(offsets) // 2]
    shift = {"length": 1, "crc": 5, "recno": 9, "payload": HEADER.size + 3}[where]
    flip(seg, victim + shift)
    drops: Counter[tuple[str, str]] = Counter()
    s = open_spool(tmp_path, drops)
    got = drain(s)
    s.close()
    assert len(got) == 299 and got == sorted(got)
    assert drops == {("corrupt", "normal"): 1} and s.torn_bytes == 0
    again: Counter[tuple[str, str]] = Counter()
    open_spool(tmp_path, again).close()  # everything replayed: nothing left, nothing counted twice
    assert again == {}


def test_damage_is_counted_once_across_restarts(tmp_path: Path) -> None:
    segments = fill(tmp_path, 100)
    flip(segments[0], record_offsets(segments[0])[3] + HEADER.size + 2)
    drops: Counter[tuple[str, str]] = Counter()
    open_spool(tmp_path, drops).close()
    open_spool(tmp_path, drops).close()
    s = open_spool(tmp_path, drops)
    assert len(drain(s)) == 99 and drops == {("corrupt", "normal"): 1}
    s.close()


def test_a_damaged_range_of_an_older_segment_is_counted_exactly(tmp_path: Path) -> None:
    segments = fill(tmp_path, 200)
    seg = segments[0]
    offsets = record_offsets(seg)
    data = bytearray(seg.read_bytes())
    data[offsets[2] : offsets[6]] = b"\x00" * (offsets[6] - offsets[2])  # records 3-6 zeroed
    data = data[: offsets[-2] + 5]  # and the end of the segment torn off (its last 2 records)
    seg.write_bytes(bytes(data))
    drops: Counter[tuple[str, str]] = Counter()
    s = open_spool(tmp_path, drops)
    got = drain(s)
    assert drops == {("corrupt", "normal"): 6} and len(got) == 194 and s.torn_bytes == 0
    s.close()


def test_only_the_newest_segment_has_a_torn_tail(tmp_path: Path) -> None:
    segments = fill(tmp_path, 200)
    newest = segments[-1]
    newest.write_bytes(newest.read_bytes()[:-3])
    drops: Counter[tuple[str, str]] = Counter()
    s = open_spool(tmp_path, drops)
    assert s.torn_bytes > 0 and drops == {} and len(drain(s)) == 199
    s.close()


def test_damage_met_during_a_replay_is_counted_exactly(tmp_path: Path) -> None:
    fill(tmp_path, 120)
    drops: Counter[tuple[str, str]] = Counter()
    s = open_spool(tmp_path, drops)
    first = s.peek(5)
    s.consume(first)
    seg = sorted((tmp_path / "normal").glob("*.seg"))[0]
    flip(seg, record_offsets(seg)[8] + HEADER.size + 1)  # bit rot while running
    rest = drain(s)
    assert len(first) + len(rest) == 119 and drops == {("corrupt", "normal"): 1}
    s.close()


def test_a_damaged_segment_header_loses_no_record(tmp_path: Path) -> None:
    segments = fill(tmp_path, 100)
    flip(segments[1], 2)
    drops: Counter[tuple[str, str]] = Counter()
    s = open_spool(tmp_path, drops)
    assert len(drain(s)) == 100 and drops == {}
    s.close()


def test_segments_of_the_first_format_are_still_replayed(tmp_path: Path) -> None:
    import struct
    import zlib

    from producers.spool.records import MAGIC_V1, pack_fields

    folder = tmp_path / "high"
    folder.mkdir()
    payloads = [pack_fields(entry(i)) for i in (1, 2, 3)]
    records = b"".join(struct.pack("<II", len(p), zlib.crc32(p)) + p for p in payloads)
    (folder / "000000000001.seg").write_bytes(MAGIC_V1 + records)
    drops: Counter[tuple[str, str]] = Counter()
    s = open_spool(tmp_path, drops)
    s.append(P.HIGH, entry(4))  # new records go to a segment of the current format
    assert drain(s) == [1, 2, 3, 4] and drops == {}
    s.close()


def test_a_short_write_is_cut_back_and_counted_as_full_never_a_torn_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    import producers.spool.store as store

    real_write, calls = os.write, [0]

    def short_write(fd: int, data: bytes) -> int:
        calls[0] += 1
        if calls[0] == 40:  # the filesystem took only part of one record (a full disk)
            return real_write(fd, data[: len(data) // 2])
        return real_write(fd, data)

    drops: Counter[tuple[str, str]] = Counter()
    s = open_spool(tmp_path, drops)
    monkeypatch.setattr(store.os, "write", short_write)
    results = [s.append(P.NORMAL, entry(i)) for i in range(1, 101)]
    monkeypatch.undo()
    assert s.full_writes == 1
    kept = s.records
    s.close()
    again: Counter[tuple[str, str]] = Counter()
    s = open_spool(tmp_path, again)
    got = drain(s)
    assert s.torn_bytes == 0 and again == {}  # nothing torn was left mid-segment
    assert len(got) == kept == 100 - sum(drops.values()) and got == sorted(got)
    assert results.count(store.Append.STORED) == 100 and set(drops) == {("spool_full", "normal")}
    s.close()
