"""``telemetry-produce SOURCE --test``: read a device once and print what would be sent; send nothing.

Opens the source built from the same settings as a real run, reads until ``count`` frames (or
``timeout_s``, or the end of a finite input), and applies the checks the run loop applies
(producers.base): the range table (RangeValidator: quality set to warn/error, NaN to null) and the
writer's limits (common.schema ``validate_frame``). Each frame is printed with its result:

* ``ok``        the frame would be sent as read;
* ``flagged``   it would be sent with qualities changed by the range table (``changes`` lists them);
* ``rejected``  the writer would refuse it: the run loop turns it into a rejection instead.

Input the source itself rejects (a bad checksum, garbage bytes) is printed as ``rejected`` with
its kind. Output is JSON lines, or a table when stdout is a terminal. It opens no Redis
connection, no spool and no metrics port, and never commits a jsonl read position.

Exit codes: 0 ``count`` frames read; 1 fewer before the timeout or the end of the input;
2 a configuration error; 3 the device cannot be opened or was lost.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from common.errors import DecodeError, ParseError, SourceUnavailableError, TelemetryError
from common.frame_json import frame_to_json
from common.schema import Frame, validate_frame
from common.settings import Settings
from producers.base import Source
from producers.validate import RangeValidator

EXIT_SHORT = 1
EXIT_DEVICE = 3


@dataclass
class DryRunResult:
    frames: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    flagged: int = 0


def check_frame(frame: Frame, validator: RangeValidator) -> dict[str, Any]:
    """The run loop's checks on one frame, as a JSON-ready record (pure but for the validator's counters)."""
    before = Counter(validator.flags)
    checked = validator.check(frame)
    record: dict[str, Any] = {"frame": frame_to_json(checked)}
    try:
        validate_frame(checked)
    except DecodeError as exc:
        record["result"], record["reason"] = "rejected", f"schema: {exc}"
        return record
    changes = {
        new.name: f"{old.quality.value}->{new.quality.value}" + (" (value -> null)" if new.value is None else "")
        for old, new in zip(frame.channels, checked.channels, strict=True)
        if new is not old
    }
    record["result"] = "flagged" if changes else "ok"
    if changes:
        record["changes"], record["flags"] = changes, dict(validator.flags - before)
    return record


def dry_run(
    source: Source,
    validator: RangeValidator,
    count: int,
    timeout_s: float,
    emit: Callable[[dict[str, Any]], None],
    notice: Callable[[str], None],
    read_timeout: float = 0.2,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[int, DryRunResult]:
    """Read up to ``count`` frames within ``timeout_s``, emitting one record each; (exit code, counts)."""
    result = DryRunResult()
    try:
        source.open()
    except SourceUnavailableError as exc:
        notice(f"cannot open the device: {exc}")
        return EXIT_DEVICE, result
    notice(f"{source.source}: device open; reading up to {count} frames for at most {timeout_s:g}s; nothing is sent")
    deadline = clock() + timeout_s
    try:
        while result.frames < count and clock() < deadline and not source.exhausted:
            try:
                items = source.read(min(read_timeout, max(0.0, deadline - clock())))
            except SourceUnavailableError as exc:
                notice(f"device lost: {exc}")
                return EXIT_DEVICE, result
            for item in items:
                if result.frames >= count:
                    break
                if isinstance(item, ParseError):
                    result.rejected[item.kind] += 1
                    emit({"result": "rejected", "reason": f"{item.kind}: {item}"})
                    continue
                record = check_frame(item, validator)
                if record["result"] == "rejected":
                    result.rejected["schema"] += 1
                else:
                    result.frames += 1
                    result.flagged += record["result"] == "flagged"
                emit(record)
    finally:
        source.close()
    summary = f"{result.frames} frames ({result.flagged} flagged), {sum(result.rejected.values())} rejected"
    notice(summary + (f" {dict(result.rejected)}" if result.rejected else ""))
    return (0 if result.frames >= count else EXIT_SHORT), result


def json_lines(out: IO[str]) -> Callable[[dict[str, Any]], None]:
    def emit(record: dict[str, Any]) -> None:
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        out.flush()

    return emit


def printable(text: str) -> str:
    """``text`` with control characters (ANSI escapes from a hostile device) shown as ``\\xNN``."""
    return text if text.isprintable() else "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def table(out: IO[str]) -> Callable[[dict[str, Any]], None]:
    """Records as a readable block per frame (for a terminal); names and text values made printable."""

    def emit(record: dict[str, Any]) -> None:
        frame = record.get("frame")
        if frame is None:
            out.write(f"REJECTED  {printable(record['reason'])}\n")
            out.flush()
            return
        head = f"{record['result'].upper():<9} {frame['device']}  {frame['observed_at']}  {frame['priority']}"
        out.write(printable(head + (f"  ({record['reason']})" if "reason" in record else "")) + "\n")
        changes = record.get("changes", {})
        for name, ch in frame["channels"].items():
            value = "null" if ch["value"] is None else str(ch["value"])
            mark = f"  <- {changes[name]}" if name in changes else ""
            line = f"    {name:<24} {value:>20} {ch['unit']:<8} {ch['quality']:<8}{mark}".rstrip()
            out.write(printable(line) + "\n")
        out.flush()

    return emit


def check_config(make_source: Callable[[], Source], name: str) -> int:
    """``telemetry-produce SOURCE --check-config``: build the source as a run would (its settings and
    files, e.g. the scales file, validated), open nothing; 0 valid, 2 a configuration error."""
    try:
        make_source()
    except TelemetryError as exc:
        print(f"telemetry-produce: {exc}", file=sys.stderr)
        return 2
    print(f"{name}: configuration valid")
    return 0


def main_test(make_source: Callable[[], Source], settings: Settings, count: int, timeout_s: float) -> int:
    """The body of ``telemetry-produce SOURCE --test`` (2 for a configuration error)."""
    try:
        source = make_source()
    except TelemetryError as exc:
        print(f"telemetry-produce: {exc}", file=sys.stderr)
        return 2
    emit = table(sys.stdout) if sys.stdout.isatty() else json_lines(sys.stdout)

    def notice(text: str) -> None:
        print(f"telemetry-produce --test: {text}", file=sys.stderr, flush=True)

    validator = RangeValidator(settings.producer.ranges)
    code, _ = dry_run(source, validator, count, timeout_s, emit, notice, settings.producer.read_timeout_s)
    return code
