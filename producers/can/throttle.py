"""Per-message minimum interval and change-only (deadband) suppression. Pure; times are the
messages' own (seconds, log or bus time), so a replay suppresses the same messages at any speed.

A message is held back when it comes sooner than ``min_interval_s[message]`` (or ``*``) after
the last one published, or (when deadbands are configured) when no channel moved by more than its
deadband (``deadband[channel]`` or ``*``; 0 for others, i.e. any change) since the last published
one and that was less than ``max_silence_s`` ago. Text values and qualities count as moved on
any change. Integrity channels (names ending in ``.CHECKSUM``, ``.COUNTER``) are ignored when comparing. Callers count
what is held back; this class only decides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from common.schema import Channel


class Throttle:
    def __init__(
        self,
        min_interval_s: Mapping[str, float],
        deadband: Mapping[str, float],
        max_silence_s: float = 1.0,
        ignore_suffixes: tuple[str, ...] = (".CHECKSUM", ".COUNTER"),
    ) -> None:
        self.min_interval = dict(min_interval_s)
        self.default_interval = self.min_interval.pop("*", 0.0)
        self.deadband = dict(deadband)
        self.default_deadband = self.deadband.pop("*", 0.0)
        self.change_only = bool(deadband)
        self.max_silence_s = max_silence_s
        self.ignore_suffixes = ignore_suffixes
        self.last: dict[tuple[str, str], tuple[float, dict[str, Channel]]] = {}

    @property
    def active(self) -> bool:
        return self.change_only or bool(self.min_interval) or self.default_interval > 0

    def allow(self, key: tuple[str, str], message: str, t: float, channels: Sequence[Channel]) -> bool:
        """Whether to publish this message (``key`` = bus, message name); remembers what it allows."""
        last = self.last.get(key)
        if last is not None and t >= last[0]:
            since = t - last[0]
            if since < self.min_interval.get(message, self.default_interval):
                return False
            if self.change_only and since < self.max_silence_s and not self._moved(last[1], channels):
                return False
        self.last[key] = (t, {c.name: c for c in channels})
        return True

    def _moved(self, before: Mapping[str, Channel], channels: Sequence[Channel]) -> bool:
        for c in channels:
            if c.name.endswith(self.ignore_suffixes):
                continue
            old = before.get(c.name)
            if old is None or old.quality != c.quality:
                return True
            if isinstance(c.value, float) and isinstance(old.value, float):
                if abs(c.value - old.value) > self.deadband.get(c.name, self.default_deadband):
                    return True
            elif c.value != old.value:
                return True
        return False
