"""The can source under payload corruption (issue 18): 1 % of the payload bytes of a real capture
flipped (seeded, tests/producers/corruption.py), every message decoded clean and corrupted by the
real CanDecoder, and the corrupted messages that still publish a GOOD value different from the
clean decode counted, separately for messages a checksum protects. Used by the corruption test
and printed by bench/can_bench.py. No I/O beyond reading the capture.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import can

from common.schema import Frame, Quality
from producers.can.dbc import BusDbc, load_bus_dbcs
from producers.can.decode import CanDecoder, RawMessage
from tests.producers.corruption import RATE, SEED

T = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class CanTally:
    messages: int = 0
    corrupted: int = 0
    corrupted_checksummed: int = 0
    wrong: int = 0
    """Corrupted messages without a checksum that published a good value different from the clean one."""
    wrong_checksummed: int = 0
    """The same among messages a checksum protects (must be 0)."""
    checksum_failures: int = 0

    def line(self) -> str:
        return (
            f"payload bytes flipped {RATE:.0%} (seed {SEED}): messages {self.messages}, corrupted with a DBC "
            f"message {self.corrupted} "
            f"({self.corrupted_checksummed} checksummed); published a different GOOD value: "
            f"{self.wrong} of {self.corrupted - self.corrupted_checksummed} without checksum, "
            f"{self.wrong_checksummed} of {self.corrupted_checksummed} checksummed "
            f"(checksum failures counted: {self.checksum_failures})"
        )


def rav4_buses(data: Path) -> dict[str, BusDbc]:
    return load_bus_dbcs(
        {"can0": [data / "toyota_new_mc_pt_generated.dbc"], "can1": [data / "toyota_adas.dbc"]}, {"*": "toyota"}, False
    )


def read_log(path: Path) -> list[RawMessage]:
    return [
        RawMessage(m.timestamp, T, str(m.channel), m.arbitration_id, m.is_extended_id, bytes(m.data))
        for m in can.LogReader(path)
    ]


def flip_payloads(
    messages: list[RawMessage], rate: float = RATE, seed: int = SEED
) -> tuple[list[RawMessage], set[int]]:
    """``messages`` with ``rate`` of all payload bytes XORed with 1..255; and the corrupted message indexes."""
    where = [(i, j) for i, m in enumerate(messages) for j in range(len(m.data))]
    rng = random.Random(seed)
    out = [bytearray(m.data) for m in messages]
    hit: set[int] = set()
    for i, j in rng.sample(where, round(len(where) * rate)):
        out[i][j] ^= rng.randrange(1, 256)
        hit.add(i)
    return [m._replace(data=bytes(d)) for m, d in zip(messages, out, strict=True)], hit


def _good_values(items: list[object]) -> dict[str, object]:
    return {c.name: c.value for f in items if isinstance(f, Frame) for c in f.channels if c.quality is Quality.GOOD}


def corruption_tally(data: Path, log_name: str) -> CanTally:
    clean_msgs = read_log(data / log_name)
    bad_msgs, hit = flip_payloads(clean_msgs)
    buses = rav4_buses(data)
    clean, bad = CanDecoder(buses), CanDecoder(buses)
    tally = CanTally(messages=len(clean_msgs))
    for i, (a, b) in enumerate(zip(clean_msgs, bad_msgs, strict=True)):
        before = clean.decode(a, T, 0)
        after = bad.decode(b, T, 0)
        if i not in hit:
            continue
        dbc = buses.get(a.bus)
        spec = dbc.lookup(a.can_id, a.extended) if dbc else None
        if spec is None:
            continue  # an id no DBC defines: counted unknown, nothing published either way
        checked = spec.checksum_scheme is not None
        tally.corrupted += 1
        tally.corrupted_checksummed += checked
        tally.checksum_failures += sum(1 for e in after if not isinstance(e, Frame) and e.kind == "checksum")  # type: ignore[attr-defined]
        want = _good_values(before)  # type: ignore[arg-type]
        got = _good_values(after)  # type: ignore[arg-type]
        if any(name not in want or want[name] != value for name, value in got.items()):
            if checked:
                tally.wrong_checksummed += 1
            else:
                tally.wrong += 1
    return tally
