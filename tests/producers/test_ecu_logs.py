"""Unit tests of the ECU log parsers (producers/file_import/mlg.py, msl.py, ecu_logs.py) on the real
logs of shared/data/dyno: every record and field of each ``.mlg`` against mlg-converter's parse
(the ``.mlg-converter.json`` files), and the README's reference rows of the ``.msl``. The MLVLG v2
file and the damaged files are SYNTHETIC (no real v2 log is shared): built from the real v1 bytes.
"""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from common.errors import ConfigError, ParseError
from common.schema import Frame
from producers.file_import.job import ImportStats, iter_items
from producers.file_import.mapping import ColumnMapping
from producers.file_import.mlg import Marker, MlgField, Record, parse_blocks, parse_header
from producers.file_import.msl import MslHeader, MslRow, parse_msl

NAMES = ("short", "markers", "blank")


def load(shared_data: Path, name: str) -> tuple[bytes, dict]:  # type: ignore[type-arg]
    d = shared_data / "dyno"
    return (d / f"speeduino_{name}.mlg").read_bytes(), json.loads(
        (d / f"speeduino_{name}.mlg-converter.json").read_text()
    )


@pytest.mark.parametrize("name", NAMES)
def test_mlg_equals_mlg_converter(shared_data: Path, name: str) -> None:
    data, ref = load(shared_data, name)
    header = parse_header(data)
    assert header.version == ref["formatVersion"] == 1
    assert header.timestamp == datetime.fromisoformat(ref["timestamp"].replace("Z", "+00:00"))
    assert header.info == ref["info"]
    assert [(f.name, f.units, f.scale, f.transform, f.digits) for f in header.fields] == [
        (f["name"], f["units"], f["scale"], f["transform"], f["digits"]) for f in ref["fields"]
    ]
    blocks = list(parse_blocks(data, header))
    assert not [b for b in blocks if isinstance(b, ParseError)]
    records = [b for b in blocks if isinstance(b, Record)]
    markers = [b for b in blocks if isinstance(b, Marker)]
    ref_records = [r for r in ref["records"] if r["type"] == "field"]
    assert [m.timestamp for m in markers] == [r["timestamp"] for r in ref["records"] if r["type"] == "marker"]
    assert len(records) == len(ref_records)
    for rec, want in zip(records, ref_records, strict=True):
        assert rec.timestamp == want["timestamp"]
        assert dict(zip((f.name for f in header.fields), rec.raw, strict=True)) == {
            k: v for k, v in want.items() if k not in ("type", "timestamp")
        }


def test_mlg_readme_values_with_scale(shared_data: Path) -> None:
    counts = {}
    for name in NAMES:
        data, _ = load(shared_data, name)
        header = parse_header(data)
        records = [b for b in parse_blocks(data, header) if isinstance(b, Record)]
        counts[name] = (len(header.fields), len(records))
        if name == "short":
            fields = {f.name: (i, f) for i, f in enumerate(header.fields)}

            def value(rec: Record, field: str, fields: dict[str, tuple[int, MlgField]] = fields) -> float:
                i, f = fields[field]
                return f.value(rec.raw[i])

            first, last = records[0], records[-1]
            assert first.timestamp == 15749
            got = [value(first, f) for f in ("Time", "RPM", "MAP", "CLT", "AFR", "Battery V", "Advance")]
            assert got == [0.0, 431.0, 10.0, 66.0, 11.4, 7.7, 24.0]  # AFR raw 114 x 0.1, Battery V 77 x 0.1
            assert (value(last, "Time"), value(last, "RPM"), value(last, "CLT")) == (2.2880001068115234, 431.0, 66.0)
    assert counts == {"short": (71, 66), "markers": (69, 43), "blank": (71, 0)}


def test_mlg_value_transform_and_bitfields() -> None:
    assert MlgField("x", "", 2, 0.10000000149011612, 0.0).value(77) == 7.7
    assert MlgField("x", "", 2, 0.5, -40.0).value(100) == 30.0  # (raw + transform) * scale
    assert MlgField("x", "", 7, 0.10000000149011612).value(1.5) == pytest.approx(0.15)
    assert MlgField("b", "", 10, 0.0).value(5) == 5.0  # bit field: raw


def v2_from_v1(data: bytes) -> bytes:
    """SYNTHETIC: the same log re-encoded as MLVLG v2 (int32 info start, 89-byte fields with a category)."""
    (_, ts, info_start, begin, record_length, count) = struct.unpack_from(">hiHiHH", data, 6)
    fields = b"".join(data[22 + i * 55 : 22 + (i + 1) * 55] + b"Engine".ljust(34, b"\x00") for i in range(count))
    extra = 2 + 34 * count
    head = b"MLVLG\x00" + struct.pack(">hiiiHH", 2, ts, info_start + extra, begin + extra, record_length, count)
    return head + fields + data[22 + 55 * count :]


def test_mlg_v2_synthetic(shared_data: Path) -> None:
    data, ref = load(shared_data, "markers")
    v2 = v2_from_v1(data)
    header = parse_header(v2)
    assert header.version == 2 and header.info == ref["info"] and len(header.fields) == 69
    blocks = list(parse_blocks(v2, header))
    v1 = list(parse_blocks(data, parse_header(data)))
    assert [(type(b), getattr(b, "raw", None)) for b in blocks] == [(type(b), getattr(b, "raw", None)) for b in v1]


def test_mlg_damage_is_a_bad_record_not_a_crash(shared_data: Path) -> None:
    data, _ = load(shared_data, "short")
    header = parse_header(data)
    damaged = bytearray(data)
    damaged[header.data_begin + 10] ^= 0xFF  # a value byte of record 0: its CRC fails
    blocks = list(parse_blocks(bytes(damaged[:-20]), header))  # and the last record cut short
    errors = [b for b in blocks if isinstance(b, ParseError)]
    assert [e.kind for e in errors] == ["crc", "truncated"] and errors[0].raw
    assert len([b for b in blocks if isinstance(b, Record)]) == 64
    with pytest.raises(ParseError, match="not an MLVLG"):
        parse_header(b"MLVLX\x00" + data[6:])
    with pytest.raises(ParseError, match="version 3"):
        parse_header(data[:6] + b"\x00\x03" + data[8:])
    bad_type = bytearray(data)
    bad_type[header.data_begin] = 7
    assert [b.kind for b in parse_blocks(bytes(bad_type), header) if isinstance(b, ParseError)] == ["block"]


def test_msl_readme_rows(shared_data: Path) -> None:
    path = shared_data / "dyno" / "megasquirt_ms1_bg20_ms_test.msl"
    with path.open(encoding="latin-1") as fh:
        items = list(parse_msl((n, line.rstrip("\n")) for n, line in enumerate(fh, 1)))
    header = items[0]
    assert isinstance(header, MslHeader) and len(header.names) == len(header.units) == 27
    assert header.info == ("20: Bowling & Grippo MS1 Base Code 20", "Capture Date: Sat Dec 26 19:53:12 EST 2015")
    assert header.units[header.names.index("CLT")] == "" and header.units[header.names.index("MAP")] == "kpa"
    rows = [i for i in items[1:] if isinstance(i, MslRow)]
    assert len(rows) == len(items) - 1 == 7_977 and rows[0].line == 5
    cols = [header.names.index(c) for c in ("Time", "RPM", "MAP", "TPS", "CLT", "PW", "Ignition Advance", "Battery V")]
    for index, want in (
        (0, [26853.346, 909, 46, 0, 51, 3.2, 15, 14.1]),
        (4000, [27123.021, 3289, 22, 0, 83, 3.0, 29, 14.2]),
        (6253, [27276.729, 5611, 88, 37, 101, 6.4, 28, 14.0]),
        (7976, [27392.920, 0, 66, 0, 88, 0.0, 10, 12.4]),
    ):
        assert [rows[index].values[c] for c in cols] == want
    rpm = header.names.index("RPM")
    assert max(range(len(rows)), key=lambda i: rows[i].values[rpm] or 0) == 6253


def test_msl_bad_rows_and_markers() -> None:
    """SYNTHETIC lines in the real layout."""
    lines = ['"sig"', "Time\tRPM", "s\trpm", "1.0\t900", "MARK 001", "2.0\tabc", "3.0", "4.0\t", "5.0\tnan"]
    items = list(parse_msl(enumerate(lines, 1)))
    kinds = [type(i).__name__ if not isinstance(i, ParseError) else i.kind for i in items]
    assert kinds == ["MslHeader", "MslRow", "MslMarker", "value", "columns", "MslRow", "value"]
    assert items[5].values == (4.0, None)  # type: ignore[union-attr]
    assert [i.line for i in items if isinstance(i, ParseError)] == [6, 7, 9]


def test_import_needs_a_time_origin_for_msl(shared_data: Path) -> None:
    path = shared_data / "dyno" / "megasquirt_ms1_bg20_ms_test.msl"
    with pytest.raises(ConfigError, match="start_time"):
        list(iter_items(path, ColumnMapping(), ImportStats(1, "p")))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    frames = [f for f in iter_items(path, ColumnMapping(start_time=start), ImportStats(1, "p")) if isinstance(f, Frame)]
    assert frames[0].observed_at == start and frames[0].device == "megasquirt_ms1_bg20_ms_test"
    assert {(c.name, c.unit) for c in frames[0].channels} >= {("MAP", "kPa"), ("SecL", "s"), ("CLT", "")}


def test_mlg_import_uses_the_header_time(shared_data: Path) -> None:
    path = shared_data / "dyno" / "speeduino_short.mlg"
    frames = [f for f in iter_items(path, ColumnMapping(), ImportStats(1, "p")) if isinstance(f, Frame)]
    assert len(frames) == 66 and frames[0].observed_at == datetime(2020, 12, 27, 17, 11, 15, tzinfo=UTC)
    values = {c.name: (c.value, c.unit) for c in frames[0].channels}
    assert values["Battery V"] == (7.7, "V") and values["AFR"] == (11.4, "O2") and "Time" not in values


def test_hostile_mlg_files_are_config_errors_not_crashes(tmp_path: Path, shared_data: Path) -> None:
    """SYNTHETIC damage: garbage, a cut header, absurd field counts: one clear error for the import."""
    data, _ = load(shared_data, "short")
    cases = {
        "garbage.mlg": bytes(range(256)) * 4,
        "cut.mlg": data[:100],
        "fields.mlg": data[:20] + b"\xff\xff" + data[22:],  # 65,535 fields announced
        "begin.mlg": data[:14] + b"\x7f\xff\xff\xff" + data[18:],  # data beyond the end of the file
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ConfigError, match=name):
            list(iter_items(path, ColumnMapping(), ImportStats(len(content), "p")))


def test_msl_start_time_in_another_zone_gives_utc_frames(shared_data: Path) -> None:
    """The header's capture date is EST: a start_time with -05:00 must give UTC frames, not schema rejections."""
    path = shared_data / "dyno" / "megasquirt_ms1_bg20_ms_test.msl"
    mapping = ColumnMapping(start_time=datetime.fromisoformat("2015-12-26T19:53:12-05:00"))
    items = list(iter_items(path, mapping, ImportStats(path.stat().st_size, "test")))
    assert not [i for i in items if isinstance(i, ParseError)]
    frames = [i for i in items if isinstance(i, Frame)]
    assert len(frames) == 7_977 and frames[0].observed_at == datetime(2015, 12, 27, 0, 53, 12, tzinfo=UTC)
    assert all(f.observed_at.utcoffset() == timedelta(0) for f in frames)
    # last row: Time 27392.920 - first 26853.346 = 539.574 s later
    assert frames[-1].observed_at - frames[0].observed_at == timedelta(seconds=539.574)
