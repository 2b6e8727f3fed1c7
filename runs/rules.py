"""The automatic-run state machine of one (rule, device). Pure: no clock, no I/O.

A rule (common/settings.py RunRule) says "``channel`` above ``start_above`` for ``start_for_s``
starts a run, below ``stop_below`` for ``stop_for_s`` ends it". Time is the frames' own
``observed_at``, never the wall clock, so a backlog read late gives the same runs as live frames.
States: idle -> starting (above, not yet long enough) -> running -> stopping (below, not yet long
enough) -> idle. A start boundary is placed at the first frame above the threshold, an end at the
first frame below; each carries the stream entry ID of that frame, which makes it idempotent
(runs.start_key / end_key). With ``stable_within`` the start also needs the value to stay within
that distance of the candidate's first value (a weight settling on a scale): a larger move makes
the moving frame the new candidate. A frame older than the last one seen, a missing channel, a text value
or a reading that is not ``good`` changes nothing.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, replace
from datetime import datetime

from common.schema import Frame, Quality
from common.settings import RunRule


@dataclass(frozen=True, slots=True)
class State:
    state: str = "idle"
    since: datetime | None = None
    since_entry: str | None = None
    run_id: int | None = None
    last_at: datetime | None = None
    since_value: float | None = None


@dataclass(frozen=True, slots=True)
class Boundary:
    kind: str  # "start" | "end"
    rule: RunRule
    device: str
    at: datetime
    key: str
    """``rule:device:entry`` of the frame the boundary is placed at."""


def applies(rule: RunRule, device: str) -> bool:
    return fnmatch.fnmatchcase(device, rule.device)


def value_of(rule: RunRule, frame: Frame) -> float | None:
    """The rule's channel in ``frame`` when it is a good number; else None."""
    for ch in frame.channels:
        if ch.name == rule.channel:
            ok = ch.quality == Quality.GOOD and isinstance(ch.value, (int, float)) and not isinstance(ch.value, bool)
            return float(ch.value) if ok else None  # type: ignore[arg-type]
    return None


def step(
    rule: RunRule, device: str, state: State, value: float, at: datetime, entry: str
) -> tuple[State, Boundary | None]:
    """The next state after ``value`` observed at ``at`` (entry ``entry``), and a boundary if one is confirmed."""
    if state.last_at is not None and at <= state.last_at:
        return state, None
    state = replace(state, last_at=at)
    key = f"{rule.name}:{device}:"
    if state.state in ("idle", "starting"):
        if value <= rule.start_above:
            return replace(state, state="idle", since=None, since_entry=None, since_value=None), None
        unsettled = (
            rule.stable_within is not None
            and state.since_value is not None
            and abs(value - state.since_value) > rule.stable_within
        )
        if state.state == "idle" or unsettled:
            state = replace(state, state="starting", since=at, since_entry=entry, since_value=value)
        assert state.since is not None and state.since_entry is not None
        if (at - state.since).total_seconds() >= rule.start_for_s:
            boundary = Boundary("start", rule, device, state.since, key + state.since_entry)
            return replace(state, state="running", since=None, since_entry=None, since_value=None), boundary
        return state, None
    # running or stopping
    if value >= rule.stop_below:
        return replace(state, state="running", since=None, since_entry=None), None
    if state.state == "running":
        state = replace(state, state="stopping", since=at, since_entry=entry)
    assert state.since is not None and state.since_entry is not None
    if (at - state.since).total_seconds() >= rule.stop_for_s:
        boundary = Boundary("end", rule, device, state.since, key + state.since_entry)
        return replace(state, state="idle", since=None, since_entry=None, run_id=None), boundary
    return state, None
