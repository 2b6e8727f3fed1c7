"""Per-scale guards: what one record cannot show, the records before it can. Pure, one of each per scale.

Line noise that keeps a record's width and syntax is still visible against the scale's own
habits, which do not change between records: the decimals it prints a unit with
(``DecimalsGuard``), and for Toledo continuous the parity bit and the configuration bits of its
status words (``ToledoGuard``). A guard adopts the habit from the first record and re-adopts after
``streak`` records in a row agree on another one (the scale was reconfigured).
"""

from __future__ import annotations

from common.errors import ParseError
from producers.scales.formats import ScaleReading


class DecimalsGuard:
    """A scale prints a unit with a fixed number of decimals; a record that does not is rejected.

    Line noise turning the decimal point into a digit (``77.6`` -> ``7746``) or a blank into one
    (``245.5 g`` -> ``245.51g``) keeps the record's width and syntax; only the decimals change. The
    guard adopts a unit's decimals from the first record and re-adopts after ``streak`` records in a
    row agree on other decimals (the scale was reconfigured). Pure, one per scale.
    """

    def __init__(self, streak: int = 3) -> None:
        self.streak = streak
        self._adopted: dict[str, int] = {}
        self._run: tuple[str, int, int] = ("", -1, 0)

    def check(self, reading: ScaleReading) -> ScaleReading:
        """``reading``, or ParseError(kind=decimals) if its decimals differ from the scale's."""
        if reading.decimals < 0 or reading.weight is None:
            return reading
        unit, dec = reading.unit, reading.decimals
        adopted = self._adopted.setdefault(unit, dec)
        if dec == adopted:
            self._run = ("", -1, 0)
            return reading
        run_unit, run_dec, n = self._run
        n = n + 1 if (run_unit, run_dec) == (unit, dec) else 1
        self._run = (unit, dec, n)
        if n >= self.streak:
            self._adopted[unit] = dec
            self._run = ("", -1, 0)
            return reading
        raise ParseError(
            f"{reading.weight} {unit} printed with {dec} decimals, this scale prints {adopted}", "decimals"
        )


PARITY_MODES = ("zero", "even", "odd")
"""What bit 7 of every byte of a Toledo frame carries: nothing (8N1, 7-bit data) or a parity bit
(a 7E1 or 7O1 scale read as 8N1)."""

SWB_VARIABLE = 0x0F
"""SWB bits that change from record to record: net, sign, out of range, motion. The rest (kg/lb,
the fixed bit 5, power-up) and all of SWA and SWC are the scale's configuration."""


def _parity_ok(b: int, mode: str) -> bool:
    ones = bin(b).count("1")
    return b < 0x80 if mode == "zero" else ones % 2 == (0 if mode == "even" else 1)


class ToledoGuard:
    """Toledo continuous frames against the scale's parity habit and status-word configuration."""

    def __init__(self, streak: int = 3) -> None:
        self.streak = streak
        self._modes: tuple[str, ...] = PARITY_MODES
        self._config: tuple[int, int, int] | None = None
        self._run: tuple[tuple[int, int, int] | None, int] = (None, 0)
        self._misses = 0

    def check(self, frame: bytes) -> None:
        """Raise ParseError(kind=parity|status) if ``frame`` breaks the scale's habits."""
        modes = tuple(m for m in self._modes if all(_parity_ok(b, m) for b in frame))
        if not modes:
            self._misses += 1
            if self._misses >= self.streak:  # the scale changed its serial format: learn again
                self._modes, self._misses = PARITY_MODES, 0
            raise ParseError("Toledo frame breaks the scale's parity", "parity")
        self._modes, self._misses = modes, 0
        swa, swb, swc = (b & 0x7F for b in frame[1:4])
        config = (swa, swb & ~SWB_VARIABLE & 0x7F, swc)
        if self._config is None:
            self._config = config
        if config == self._config:
            self._run = (None, 0)
            return
        seen, n = self._run
        n = n + 1 if seen == config else 1
        self._run = (config, n)
        if n >= self.streak:
            self._config, self._run = config, (None, 0)
            return
        raise ParseError(f"status words {frame[1:4].hex()} differ from the scale's configuration", "status")
