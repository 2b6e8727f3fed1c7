"""Range validation: flag channel values against the configured sensor-range table. Pure.

Policy (documented in the README):
* value outside the hard range -> kept, quality ``error`` (the evidence is not thrown away);
* NaN or infinity -> value replaced by null, quality ``error`` (JSON cannot carry it);
* outside the warning range -> kept, quality ``warn``.
Every flag is counted by reason. A channel matches a table entry by its name, or by its name
without a trailing ``_<number>`` (``afr_2`` is checked as ``afr``: numbered sensors of one kind).
Channels with no entry in the table pass unchanged.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import replace

from common.schema import Channel, Frame, Quality
from common.settings import RangeSpec
from common.units import converter


class RangeValidator:
    def __init__(self, ranges: Mapping[str, RangeSpec]) -> None:
        self.ranges = dict(ranges)
        self.flags: Counter[str] = Counter()
        self._conv: dict[tuple[str, str], Callable[[float], float] | None] = {}
        self._spec: dict[str, RangeSpec | None] = {}

    def check(self, frame: Frame) -> Frame:
        """The frame with qualities set by the range table (same object if nothing changed)."""
        changed = False
        out = []
        for ch in frame.channels:
            new = self._check_channel(ch)
            changed |= new is not ch
            out.append(new)
        return replace(frame, channels=tuple(out)) if changed else frame

    def _check_channel(self, ch: Channel) -> Channel:
        value = ch.value
        if not isinstance(value, float | int) or isinstance(value, bool):
            return ch
        if not math.isfinite(value):
            self.flags["non_finite"] += 1
            return ch._replace(value=None, quality=Quality.ERROR)
        spec = self._spec_for(ch.name)
        if spec is None or ch.quality in (Quality.ERROR, Quality.NO_DATA):
            return ch
        conv = self._converter(ch.unit or spec.unit, spec.unit)
        if conv is None:
            self.flags["unit_mismatch"] += 1
            return ch
        v = conv(float(value))
        if v < spec.min or v > spec.max:
            self.flags["out_of_range"] += 1
            return ch._replace(quality=Quality.ERROR)
        if (
            (spec.warn_min is not None and v < spec.warn_min) or (spec.warn_max is not None and v > spec.warn_max)
        ) and ch.quality is Quality.GOOD:
            self.flags["warn"] += 1
            return ch._replace(quality=Quality.WARN)
        return ch

    def _spec_for(self, name: str) -> RangeSpec | None:
        if name not in self._spec:
            spec = self.ranges.get(name)
            base, _, number = name.rpartition("_")
            if spec is None and base and number.isdigit():
                spec = self.ranges.get(base)
            self._spec[name] = spec
        return self._spec[name]

    def _converter(self, src: str, dst: str) -> Callable[[float], float] | None:
        key = (src, dst)
        if key not in self._conv:
            self._conv[key] = converter(src, dst)
        return self._conv[key]
