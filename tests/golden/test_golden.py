"""Golden cases: every case folder under tests/golden/<source>/ replays and matches its expected.jsonl.

Also checks coverage: every real capture in the shared data folder has a case (or is listed below
as a helper file, or as waiting for a source not built yet), and every source has at least one case.
Regenerate with ``python -m tests.golden.regen [SOURCE [CASE]]`` (tests/golden/README.md).
"""

from __future__ import annotations

import fnmatch
from dataclasses import replace
from pathlib import Path

import pytest

from producers import registry
from tests.golden.adapters import ADAPTERS, produce
from tests.golden.cases import (
    CASE_FILE,
    EXPECTED_FILE,
    EXPECTED_GZ,
    GOLDEN,
    GZIP_OVER,
    Case,
    discover,
    dumps,
    first_difference,
    project,
    read_expected,
    write_expected,
)

CASES = discover()

CAPTURE_FOLDERS = ("nmea", "scales", "mts", "dyno", "can")
"""Folders of the shared data whose every file must be a case, a helper, or pending."""

HELPERS = {
    "*/README.md": "provenance and expected values",
    "*/LICENSE*": "licence text",
    "nmea/COPYING.gpsd": "licence text",
    "nmea/*.chk": "gpsd's decode of the capture (the oracle the GPS unit tests compare with)",
    "scales/*_hexdump.txt": "serial-monitor hex dump; the .bin beside it holds the same bytes",
    "dyno/*.mlg-converter.json": "mlg-converter's parse of the .mlg (a reference, not a capture)",
    "can/*.dbc": "CAN database (decoding rules, not a capture)",
    "can/*.oracle_*.csv": "reference decode of the CAN log",
    "can/expected_cantools.json": "reference decode of the CAN logs",
    "dyno/speeduino_blank.mlg": "header-only MLVLG log (zero records, so no golden output); "
    "tests/producers/test_ecu_logs.py checks its header and fields against mlg-converter",
}
"""Files that are not captures, with the reason."""

PENDING: dict[str, str] = {}
"""Captures of sources not in the tree yet: a case is a folder to add with that source."""


def _matches(rel: str, patterns: dict[str, str]) -> bool:
    return any(fnmatch.fnmatchcase(rel, p) for p in patterns)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_golden_case(case: Case, request: pytest.FixtureRequest) -> None:
    shared = request.getfixturevalue("shared_data") if case.capture else Path("/nonexistent")
    adapter = ADAPTERS[case.source]
    got = [project(item, adapter.volatile) for item in produce(case, shared)]
    assert case.expected_path.is_file(), f"{case.id}: no {case.expected_path.name}; run python -m tests.golden.regen"
    problem = first_difference(read_expected(case), got)
    if problem is not None:
        pytest.fail(
            f"{case.id}: output differs from {case.expected_path.name}\n{problem}\n"
            f"If the change is intended: python -m tests.golden.regen {case.source} {case.name} (and review the diff)",
            pytrace=False,
        )


def test_every_capture_has_a_case(shared_data: Path) -> None:
    covered = {c.capture for c in CASES if c.capture}
    missing = []
    for folder in CAPTURE_FOLDERS:
        for path in sorted((shared_data / folder).iterdir()):
            rel = f"{folder}/{path.name}"
            if rel in covered or _matches(rel, HELPERS):
                continue
            if _matches(rel, PENDING):
                continue
            missing.append(rel)
    assert not missing, f"captures without a golden case (add a folder tests/golden/<source>/<case>/): {missing}"
    assert all((shared_data / c).is_file() for c in covered), "a case names a capture that does not exist"
    assert not [c for c in covered if _matches(c, PENDING)], "a pending capture has a case now: update PENDING"


def test_every_capture_folder_is_listed(shared_data: Path) -> None:
    folders = {p.name for p in shared_data.iterdir() if p.is_dir()}
    assert folders <= set(CAPTURE_FOLDERS), (
        f"new shared data folders to cover: {sorted(folders - set(CAPTURE_FOLDERS))}"
    )


def test_every_source_has_an_adapter_and_a_case() -> None:
    sources = set(registry.by_name()) | {"file_import"}  # the import job's frames: not a telemetry-produce source
    assert sources <= set(ADAPTERS), f"sources without a golden adapter: {sorted(sources - set(ADAPTERS))}"
    with_cases = {c.source for c in CASES}
    assert sources <= with_cases, f"sources without a golden case: {sorted(sources - with_cases)}"
    assert not {c.source for c in CASES} - set(ADAPTERS), "a golden folder is named after no source"


def test_every_folder_is_a_complete_case() -> None:
    for folder in sorted(p for p in GOLDEN.glob("*/*") if p.is_dir() and p.name != "__pycache__"):
        assert (folder / CASE_FILE).is_file(), f"{folder}: a case folder needs {CASE_FILE}"
    for case in CASES:
        assert case.expected_path.is_file() and read_expected(case), f"{case.id}: empty or missing expected output"
        both = (case.folder / EXPECTED_FILE).exists() and (case.folder / EXPECTED_GZ).exists()
        assert not both, f"{case.id}: both {EXPECTED_FILE} and {EXPECTED_GZ}; keep the one regen writes"
        text = case.expected_path.stat().st_size if case.expected_path.name == EXPECTED_FILE else GZIP_OVER + 1
        assert text <= GZIP_OVER or case.expected_path.name == EXPECTED_GZ, f"{case.id}: large, regen compresses it"
    assert all(c.synthetic == (c.capture is None) for c in CASES)


def test_a_difference_is_reported_with_the_first_differing_line() -> None:
    frame = {
        "src": "scales",
        "dev": "d",
        "obs": "t",
        "ch": [["weight", 1.5, "kg", "good"], ["stable", 1.0, "", "good"]],
    }
    changed = {**frame, "ch": [["weight", 1.6, "kg", "good"], ["stable", 1.0, "", "good"]]}
    assert first_difference([frame, frame], [frame, frame]) is None
    problem = first_difference([frame, frame], [frame, changed])
    assert problem is not None and "line 2 of 2" in problem and "weight" in problem and "1.6" in problem
    assert "stable" not in problem
    shorter = first_difference([frame, frame], [frame])
    assert shorter is not None and "expected 2, got 1" in shorter
    as_int = first_difference([frame], [{**frame, "ch": [["weight", 1.5, "kg", "good"], ["stable", 1, "", "good"]]}])
    assert as_int is not None and "stable" in as_int  # 1 is not 1.0: the type of a value is part of the output
    retimed = first_difference([frame], [{**frame, "obs": "u"}])
    assert retimed is not None and "obs" in retimed


BYTE_STREAMS = frozenset(["gps_nmea", "scales", "afr_serial"])
"""Sources reading a byte stream: how the bytes are cut into reads must not change what they mean."""


@pytest.mark.parametrize("case", [c for c in CASES if c.source in BYTE_STREAMS], ids=lambda c: c.id)
def test_another_chunk_size_gives_the_same_channels_and_rejections(case: Case, request: pytest.FixtureRequest) -> None:
    shared = request.getfixturevalue("shared_data") if case.capture else Path("/nonexistent")
    recut = [project(item) for item in produce(replace(case, chunk=7), shared)]
    meaning = [line.get("ch", line.get("error")) for line in read_expected(case)]
    assert [line.get("ch", line.get("error")) for line in recut] == meaning


def test_large_expected_output_is_stored_gzipped_and_deterministic(tmp_path: Path) -> None:
    case = Case("scales", "tmp", tmp_path)
    small = dumps([{"error": "syntax", "message": "x"}])
    assert write_expected(case, small) == "written" and case.expected_path.name == EXPECTED_FILE
    large = dumps([{"error": "syntax", "message": "x" * 100, "line": n} for n in range(GZIP_OVER // 100)])
    assert write_expected(case, large) == "CHANGED" and case.expected_path.name == EXPECTED_GZ
    assert not (tmp_path / EXPECTED_FILE).exists()  # one form per case
    stored = case.expected_path.read_bytes()
    assert len(stored) < len(large) // 10 and read_expected(case)[-1]["line"] == GZIP_OVER // 100 - 1
    assert write_expected(case, large) == "unchanged" and case.expected_path.read_bytes() == stored
    (tmp_path / EXPECTED_GZ).unlink()
    write_expected(case, large)
    assert case.expected_path.read_bytes() == stored  # mtime 0: the same text gives the same bytes
    assert write_expected(case, small) == "CHANGED" and case.expected_path.name == EXPECTED_FILE
    assert not (tmp_path / EXPECTED_GZ).exists()
