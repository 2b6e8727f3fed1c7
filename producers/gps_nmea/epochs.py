"""Group decoded sentences into epochs (one Frame per fix) and date them. Pure: no I/O, no clock.

Epoch rule: sentences carrying the same fix time (GGA, RMC, GNS, GST, ZDA) belong to one
epoch; sentences without a time (VTG, GSA, GSV) join the epoch in progress. The epoch is
emitted as one Frame when a sentence with a *different* fix time arrives, or when the caller
calls ``flush()`` (the source does so after ``epoch_idle_s`` without a sentence, and on
link loss). So at 1 Hz the last epoch of a burst waits for the idle timeout, at 10 Hz for
the next epoch (100 ms).

No fix (GGA quality 0, RMC/GSA status void, GNS mode N) anywhere in the epoch: position,
altitude, speed and course are sent as null with quality ``no_data``, never as (0, 0), and
``fix_mode`` is 1. A position from an estimated, manual or simulated fix (GGA quality 6-8)
gets quality ``warn``.

Time rule: ``observed_at`` is the receiver's UTC date and time of the fix. The date comes
from RMC or ZDA in the same epoch (a date before the GPS epoch, 1980-01-06, means "no
date yet" and is ignored); otherwise from the previous epoch's date (plus one day
when the time of day wrapped past midnight); before any receiver date is known, from the
host date nearest to the receive time. Week-rollover check: a receiver date earlier than
``min_date`` is moved forward by 1024 weeks (as often as needed, at most 4 times) and
counted in ``rollovers``: GPS broadcasts a 10-bit week number, so a receiver whose firmware
epoch has passed reports dates exactly 1024 weeks (19.6 years) early. An epoch without any
timed sentence is dated by its receive time. Every frame says which date it carries in the text
channel ``date_source``: ``receiver`` (RMC/ZDA of this epoch), ``previous`` (carried from an earlier
epoch) or ``host`` (no receiver date yet: the host's; quality ``warn``).

Counts: ``satellites_used`` is the number of distinct satellites (system, PRN) listed in the
epoch's GSA sentences, so a receiver listing its GPS satellites in both ``$GPGSA`` and ``$GNGSA``
counts them once; without GSA it is what GGA or GNS states. ``satellites_in_view`` is the sum over
constellations (GSV talkers, including vendor ``$PQGSV``) of each one's largest per-signal count.

Rejected lines (issue 14, finding 3): when a line that was (or looked like) a sentence is rejected,
the epoch in progress and the next one are *incomplete*: the values
built from groups of sentences or from sentences without a time, which the rejected line may have
belonged to or changed (``GROUP_CHANNELS``: satellite counts, DOPs, fix mode, speed, course), are
published with quality ``warn``, never ``good``. Values of sentences carrying the epoch's own fix
time (position, altitude, fix quality, GST sigmas) stay ``good``: their time proves their epoch.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from common.errors import ParseError
from common.schema import Channel, Frame, Quality
from producers.gps_nmea.sentences import CHANNEL_UNITS, FIX_CHANNELS, Update

GPS_WEEK_ROLLOVER = dt.timedelta(weeks=1024)
GPS_EPOCH = dt.date(1980, 1, 6)
"""Week 0 of GPS time. Receivers without a date send earlier ones (MTK: 1980-01-05): ignored."""
DEFAULT_MIN_DATE = dt.date(2025, 1, 1)
"""Earliest plausible receiver date: about this code's release. Dates before it are rolled over."""

GROUP_CHANNELS = frozenset(
    ["satellites_used", "satellites_in_view", "hdop", "vdop", "pdop", "fix_mode", "speed", "course"]
)
"""Channels computed from several sentences or from untimed ones: ``warn`` in an incomplete epoch."""

DATE_SOURCE = "date_source"
"""Text channel of every frame: ``receiver``, ``previous`` or ``host`` (see the module docstring)."""

_WARN_QUALITIES = frozenset([6.0, 7.0, 8.0])  # GGA: estimated (dead reckoning), manual, simulation


def correct_rollover(date: dt.date, min_date: dt.date) -> tuple[dt.date, int]:
    """``date`` moved forward by 1024 weeks until it is not before ``min_date``; and how many times."""
    steps = 0
    while date < min_date and steps < 4:
        date += GPS_WEEK_ROLLOVER
        steps += 1
    return date, steps


@dataclass
class _Epoch:
    received_at: dt.datetime
    monotonic_ns: int
    time: dt.time | None = None
    date: dt.date | None = None
    no_fix: bool = False
    values: dict[str, float | None] = field(default_factory=dict)
    in_view: dict[tuple[str, str], int] = field(default_factory=dict)
    used: set[tuple[str, int]] | None = None
    incomplete: bool = False


class EpochAssembler:
    """``add`` decoded sentences in arrival order; collect the Frames it returns; ``flush`` at idle."""

    def __init__(self, device: str, min_date: dt.date = DEFAULT_MIN_DATE, source: str = "gps_nmea") -> None:
        self.device = device
        self.min_date = min_date
        self.source = source
        self.rollovers = 0
        """Epochs whose receiver date was corrected for a GPS week rollover."""
        self._epoch: _Epoch | None = None
        self._incomplete_next = False
        self._date: dt.date | None = None
        self._tod: dt.time | None = None
        self._date_source = "previous"

    def reset(self) -> None:
        """Forget the epoch in progress and the dates learnt (after an unexpected error)."""
        self._epoch, self._date, self._tod = None, None, None

    @property
    def pending(self) -> bool:
        return self._epoch is not None

    def add(self, update: Update, received_at: dt.datetime, monotonic_ns: int) -> list[Frame]:
        """Merge one sentence; returns the previous epoch's Frame if this sentence starts a new epoch."""
        out: list[Frame] = []
        epoch = self._epoch
        if epoch is not None and update.time is not None and epoch.time is not None and update.time != epoch.time:
            out = self.flush()
            epoch = None
        if epoch is None:
            epoch = self._epoch = _Epoch(received_at, monotonic_ns, incomplete=self._incomplete_next)
            self._incomplete_next = False
        _merge(epoch, update)
        return out

    def reject(self) -> None:
        """A sentence was rejected: the epoch in progress and the next one are incomplete.

        Both, because a rejected line has no time we can trust: it may have been the first timed
        sentence of the next epoch, whose untimed followers (GSA, GSV, VTG) then join this one.
        """
        if self._epoch is not None:
            self._epoch.incomplete = True
        self._incomplete_next = True

    def flush(self) -> list[Frame]:
        """Emit the epoch in progress (if any) as a Frame."""
        epoch, self._epoch = self._epoch, None
        if epoch is None:
            return []
        channels = _channels(epoch)
        if not channels:
            return []
        try:
            observed_at, date_source = self._observed_at(epoch)
        except OverflowError:  # a date at the end of the calendar (a corrupt RMC/ZDA) and the next day
            self._date = self._tod = None
            raise ParseError("epoch date beyond the calendar (a corrupt RMC or ZDA date)", "field") from None
        quality = Quality.WARN if date_source == "host" else Quality.GOOD
        channels += (Channel(DATE_SOURCE, date_source, "", quality),)
        return [Frame(self.source, self.device, observed_at, epoch.received_at, epoch.monotonic_ns, channels)]

    def _observed_at(self, epoch: _Epoch) -> tuple[dt.datetime, str]:
        if epoch.time is None:
            return epoch.received_at, "host"
        if epoch.date is not None and epoch.date >= GPS_EPOCH:
            date, steps = correct_rollover(epoch.date, self.min_date)
            self.rollovers += steps > 0
            source = "receiver"
        elif self._date is not None and self._tod is not None:
            wrapped = self._tod.hour >= 12 > epoch.time.hour and epoch.time < self._tod
            date = self._date + dt.timedelta(days=1) if wrapped else self._date
            source = self._date_source
        else:
            date = _nearest_date(epoch.time, epoch.received_at)
            source = "host"
        self._date, self._tod = date, epoch.time
        # a date carried from a host-dated epoch is still the host's
        self._date_source = "host" if source == "host" else "previous"
        return dt.datetime.combine(date, epoch.time, tzinfo=dt.UTC), source


def _merge(epoch: _Epoch, update: Update) -> None:
    if update.time is not None:
        epoch.time = update.time
    if update.date is not None:
        epoch.date = update.date
    epoch.no_fix |= update.no_fix
    for name, value in update.values.items():
        if value is not None or name not in epoch.values:
            epoch.values[name] = value  # an empty field never hides a value from another sentence
    if update.in_view is not None:
        signal, count = update.in_view
        epoch.in_view[(update.talker, signal)] = count
    if update.used is not None:
        epoch.used = (epoch.used or set()) | update.used


def _channels(epoch: _Epoch) -> tuple[Channel, ...]:
    values = dict(epoch.values)
    if epoch.in_view:
        # One GSV series per constellation (talker) and, in NMEA 4.10+, per signal: the same
        # satellites appear once per signal, so take the largest count of each constellation.
        talkers = {talker for talker, _ in epoch.in_view}
        values["satellites_in_view"] = float(
            sum(max(n for (t, _), n in epoch.in_view.items() if t == talker) for talker in talkers)
        )
    if epoch.used is not None:
        # GGA caps its count at 12 on many receivers; GSA lists the satellites of each system.
        values["satellites_used"] = float(len(epoch.used))
    has_position = values.get("latitude") is not None
    if epoch.no_fix:
        values["fix_mode"] = 1.0
        values.update((name, None) for name in FIX_CHANNELS if name in values)
    elif values.get("fix_mode") is None and has_position:
        values["fix_mode"] = 3.0 if values.get("altitude") is not None else 2.0
    warn = values.get("fix_quality") in _WARN_QUALITIES
    out = []
    for name, unit in CHANNEL_UNITS.items():
        if name not in values:
            continue
        value = values[name]
        if value is None:
            out.append(Channel(name, None, unit, Quality.NO_DATA))
        else:
            flagged = (warn and name in FIX_CHANNELS) or (epoch.incomplete and name in GROUP_CHANNELS)
            quality = Quality.WARN if flagged else Quality.GOOD
            out.append(Channel(name, float(value), unit, quality))
    return tuple(out)


def _nearest_date(tod: dt.time, host: dt.datetime) -> dt.date:
    """The date (host day, or the day before or after) putting ``tod`` nearest to ``host``."""
    day = host.astimezone(dt.UTC).date()
    candidates = [day + dt.timedelta(days=d) for d in (-1, 0, 1)]
    return min(candidates, key=lambda d: abs(dt.datetime.combine(d, tod, tzinfo=dt.UTC) - host))
