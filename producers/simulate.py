"""simulate: synthetic devices at a given rate and channel count, for demos and benchmarks.

Values are deterministic functions of the device and the frame number (sine waves inside
the default sensor ranges), so tests can predict them. ``rate_hz=0`` runs flat out.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from common.clock import Clock, SystemClock
from common.errors import ConfigError, ParseError
from common.schema import Channel, Frame, Priority
from common.settings import Settings
from producers.source_spec import SourceSpec

# (name, unit, centre, amplitude): the first channels look like an engine on a dyno.
_PROFILE = [
    ("rpm", "rpm", 6000.0, 4000.0),
    ("afr", "afr", 13.5, 2.0),
    ("map", "kPa", 120.0, 80.0),
    ("tps", "%", 50.0, 45.0),
    ("iat", "degF", 100.0, 40.0),
    ("horsepower", "hp", 150.0, 100.0),
    ("torque", "ft_lb", 120.0, 80.0),
    ("coolant", "degC", 85.0, 10.0),
]


def simulated_value(channel: int, n: int) -> float:
    """Value of channel ``channel`` in frame ``n`` of a device (pure)."""
    if channel < len(_PROFILE):
        _, _, centre, amp = _PROFILE[channel]
    else:
        centre, amp = 0.0, 100.0
    return round(centre + amp * math.sin(n / 50.0 + channel), 3)


def channel_spec(channel: int) -> tuple[str, str]:
    if channel < len(_PROFILE):
        return _PROFILE[channel][0], _PROFILE[channel][1]
    return f"ch_{channel:04d}", ""


class SimulateSource:
    """``devices`` synthetic devices, each emitting ``rate_hz`` frames of ``channels`` values."""

    source = "simulate"

    def __init__(
        self,
        devices: int = 2,
        channels: int = 8,
        rate_hz: float = 10.0,
        count: int = 0,
        priority: Priority = Priority.NORMAL,
        device_prefix: str = "sim",
        clock: Clock | None = None,
        burst: int = 500,
    ) -> None:
        self.devices = [f"{device_prefix}-{i:03d}" for i in range(devices)]
        self.specs = [channel_spec(c) for c in range(channels)]
        self.rate_hz = rate_hz
        self.count = count
        self.priority = priority
        self.clock = clock or SystemClock()
        self.burst = burst
        self.emitted = 0
        self._frame_no = 0
        self._start_ns: int | None = None

    def open(self) -> None:
        self._start_ns = self.clock.monotonic_ns()

    def close(self) -> None:
        pass

    @property
    def exhausted(self) -> bool:
        return self.count > 0 and self.emitted >= self.count

    def read(self, timeout: float) -> Sequence[Frame | ParseError]:
        if self._start_ns is None:
            self.open()
        assert self._start_ns is not None
        if self.rate_hz > 0:
            elapsed = (self.clock.monotonic_ns() - self._start_ns) / 1e9
            due_rounds = int(elapsed * self.rate_hz) + 1 - self._frame_no
            if due_rounds <= 0:
                time.sleep(min(timeout, (self._frame_no - elapsed * self.rate_hz) / self.rate_hz))
                return []
        else:
            due_rounds = max(1, self.burst // len(self.devices))
        out: list[Frame | ParseError] = []
        for _ in range(due_rounds):
            out.extend(self._round())
            if self.exhausted:
                break
        return out

    def _round(self) -> list[Frame]:
        n = self._frame_no
        self._frame_no += 1
        now = self.clock.now()
        mono = self.clock.monotonic_ns()
        frames = []
        for dev in self.devices:
            if self.exhausted:
                break
            channels = tuple(Channel(name, simulated_value(i, n), unit) for i, (name, unit) in enumerate(self.specs))
            frames.append(Frame("simulate", dev, now, now, mono, channels, priority=self.priority))
            self.emitted += 1
        return frames


def from_settings(s: Settings) -> SimulateSource:
    """The source for ``telemetry-produce simulate``, from the ``TELEMETRY_SIMULATE__*`` settings."""
    try:
        priority = Priority(s.simulate.priority)
    except ValueError:
        raise ConfigError(f"TELEMETRY_SIMULATE__PRIORITY: unknown priority {s.simulate.priority!r}") from None
    return SimulateSource(s.simulate.devices, s.simulate.channels, s.simulate.rate_hz, s.simulate.count, priority)


SPEC = SourceSpec("simulate", "simulate", from_settings, "synthetic devices for demos and benchmarks")
