"""Golden cases: find the case folders, read ``case.toml``, project frames to JSON lines, diff them.

A case is a folder ``tests/golden/<source>/<case>/`` holding ``case.toml`` and ``expected.jsonl``, or
``expected.jsonl.gz`` when the text is over ``GZIP_OVER`` bytes (``write_expected`` picks; gzip with
mtime 0, so the same text gives the same bytes; ``read_expected`` reads either).
``case.toml`` keys (anything else is an error, so a typo cannot silently change a case):

* ``capture``   path of a real capture relative to the shared data folder (``nmea/mtk-3301.log``), or
* ``input``     a file in the case folder (synthetic input); exactly one of the two, or neither for a
  source that needs no input (``simulate``);
* ``synthetic`` must be true exactly when there is no ``capture``; ``note`` says what the input is;
* ``chunk``     bytes per feed (the adapter's default otherwise): how a serial port would cut the bytes;
* ``repeat``    the input is fed this many times in a row (a capture of one packet a device repeats);
* ``[settings]`` source settings overrides, passed to the adapter (see adapters.py per source).

The projection (``project``) is the project's own Frame -> stream entry (``common.schema.encode``)
without the publisher's fields (``v``, ``prod``, ``seq``), with ``ch`` parsed and the priority added
(``pri``: it picks the stream but is not in the entry). A ParseError is a line ``{"error": kind,
"message": ..., "line": ...}``; ``line`` only for data input (jsonl, imports). Adapters may drop
fields they cannot make deterministic (``VOLATILE``). Times come from the capture or from the
injected ``StepClock``. Reads the captures in place; copies nothing. No I/O besides files.
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from common.errors import ParseError
from common.schema import Frame, encode

GOLDEN = Path(__file__).resolve().parent
CASE_FILE = "case.toml"
EXPECTED_FILE = "expected.jsonl"
EXPECTED_GZ = "expected.jsonl.gz"
GZIP_OVER = 256 * 1024
"""Expected text longer than this (bytes) is stored gzip-compressed as ``expected.jsonl.gz``."""
SHARED_DATA = Path(os.environ.get("TELEMETRY_TEST_SHARED_DATA", GOLDEN.parents[2] / "shared" / "data"))
"""The shared captures, as tests/conftest.py finds them (``../shared/data`` beside the repo)."""
KEYS = frozenset(["capture", "input", "synthetic", "note", "chunk", "repeat", "settings"])

Line = dict[str, Any]


@dataclass(frozen=True)
class Case:
    source: str
    name: str
    folder: Path
    capture: str | None = None
    input: str | None = None
    synthetic: bool = False
    note: str = ""
    chunk: int | None = None
    repeat: int = 1
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.source}/{self.name}"

    @property
    def expected_path(self) -> Path:
        """``expected.jsonl.gz`` if the case has one, else ``expected.jsonl`` (which may not exist yet)."""
        gz = self.folder / EXPECTED_GZ
        return gz if gz.exists() else self.folder / EXPECTED_FILE

    def input_bytes(self, shared_data: Path) -> bytes:
        """The capture (read in place) or the inline input file."""
        if self.capture is not None:
            return (shared_data / self.capture).read_bytes() * self.repeat
        if self.input is not None:
            return (self.folder / self.input).read_bytes() * self.repeat
        raise ValueError(f"{self.id}: case has no capture and no input")


def load_case(folder: Path) -> Case:
    """Read and check one case folder's ``case.toml``; ValueError says what is wrong."""
    where = f"{folder.parent.name}/{folder.name}/{CASE_FILE}"
    raw = tomllib.loads((folder / CASE_FILE).read_text())
    unknown = set(raw) - KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(KEYS)})")
    case = Case(folder.parent.name, folder.name, folder, **raw)
    if case.capture is not None and case.input is not None:
        raise ValueError(f"{where}: give 'capture' or 'input', not both")
    if case.synthetic == (case.capture is not None):
        raise ValueError(f"{where}: 'synthetic = true' exactly when there is no real capture")
    if case.synthetic and not case.note:
        raise ValueError(f"{where}: a synthetic case needs a 'note' saying what its input is")
    if case.input is not None and not (folder / case.input).is_file():
        raise ValueError(f"{where}: input file {case.input!r} is not in the case folder")
    return case


def discover(source: str | None = None, name: str | None = None) -> list[Case]:
    """Every case folder (a folder holding case.toml), sorted; optionally one source or one case."""
    cases = [load_case(p.parent) for p in sorted(GOLDEN.glob(f"*/*/{CASE_FILE}"))]
    return [c for c in cases if (source is None or c.source == source) and (name is None or c.name == name)]


def project(item: Frame | ParseError, volatile: frozenset[str] = frozenset()) -> Line:
    """One Frame or ParseError -> its golden JSON object (see the module docstring)."""
    if isinstance(item, ParseError):
        line: Line = {"error": item.kind, "message": str(item)}
        if item.line is not None:
            line["line"] = item.line
        return line
    fields = encode(item)
    out: Line = {k: v for k, v in fields.items() if k not in ("v", "prod", "seq", "ch", "mono")}
    out["mono"] = item.monotonic_ns
    out["pri"] = item.priority.value
    out["ch"] = orjson.loads(fields["ch"])
    return {k: v for k, v in out.items() if k not in volatile}


def dumps(lines: list[Line]) -> bytes:
    """Compact JSON lines, keys in a fixed order (what expected.jsonl holds)."""
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def expected_text(case: Case) -> bytes | None:
    """The stored expected JSON lines (decompressed), None if the case has none yet."""
    path = case.expected_path
    if not path.exists():
        return None
    data = path.read_bytes()
    return gzip.decompress(data) if path.name == EXPECTED_GZ else data


def read_expected(case: Case) -> list[Line]:
    return [orjson.loads(line) for line in (expected_text(case) or b"").splitlines() if line.strip()]


def write_expected(case: Case, body: bytes) -> str:
    """Store ``body`` as the case's expected output: gzip (mtime 0) over GZIP_OVER bytes, else plain; the
    other form is removed. Nothing is written when the text is unchanged (a zlib upgrade cannot churn
    the .gz). Returns ``written`` (new), ``unchanged``, ``CHANGED``, or the same text moved between
    the two forms (``recompressed``/``unpacked``)."""
    old = expected_text(case)
    plain, gz = case.folder / EXPECTED_FILE, case.folder / EXPECTED_GZ
    keep, drop = (gz, plain) if len(body) > GZIP_OVER else (plain, gz)
    if old == body and keep.exists() and not drop.exists():
        return "unchanged"
    keep.write_bytes(gzip.compress(body, mtime=0) if keep is gz else body)
    drop.unlink(missing_ok=True)
    return "written" if old is None else ("CHANGED" if old != body else "recompressed" if keep is gz else "unpacked")


def first_difference(expected: list[Line], got: list[Line]) -> str | None:
    """None if equal, else a readable account of the first differing line (and the counts)."""
    for i, (want, have) in enumerate(zip(expected, got, strict=False)):
        if not _same(want, have):
            keys = sorted(set(want) | set(have), key=lambda k: (k == "ch", k))
            diff = [
                f"  {k}: expected {want.get(k, '<absent>')!r}, got {have.get(k, '<absent>')!r}"
                for k in keys
                if not _same(want.get(k), have.get(k)) and k != "ch"
            ]
            if not _same(want.get("ch"), have.get("ch")):
                diff += _channel_diff(want.get("ch") or [], have.get("ch") or [])
            return f"line {i + 1} of {len(expected)} differs:\n" + "\n".join(diff)
    if len(expected) != len(got):
        extra = got[len(expected)] if len(got) > len(expected) else expected[len(got)]
        what = "produced more lines than expected" if len(got) > len(expected) else "produced fewer lines"
        return f"{what}: expected {len(expected)}, got {len(got)}; first unmatched: {orjson.dumps(extra).decode()}"
    return None


def _same(a: object, b: object) -> bool:
    """Equal as JSON text: 1 and 1.0, or true and 1, differ (Python's == would call them equal)."""
    return orjson.dumps(a) == orjson.dumps(b)


def _channel_diff(want: list[list[Any]], have: list[list[Any]]) -> list[str]:
    w = {c[0]: c for c in want}
    h = {c[0]: c for c in have}
    out = [
        f"  ch {n}: expected {w.get(n)}, got {h.get(n)}"
        for n in [*w, *(n for n in h if n not in w)]
        if not _same(w.get(n), h.get(n))
    ]
    if not out:
        out = [f"  ch order: expected {[c[0] for c in want]}, got {[c[0] for c in have]}"]
    return out


T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
"""Start of the injected clock of every case."""


class StepClock:
    """Injected clock that moves only when ``tick`` is called (once per chunk or read): deterministic."""

    def __init__(self, start: dt.datetime = T0, step_ms: int = 10) -> None:
        self.start = start
        self.step_ns = step_ms * 1_000_000
        self.ns = 0

    def tick(self) -> None:
        self.ns += self.step_ns

    def now(self) -> dt.datetime:
        return self.start + dt.timedelta(microseconds=self.ns // 1000)

    def monotonic_ns(self) -> int:
        return self.ns
