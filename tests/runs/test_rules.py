"""The run-detection state machine on synthetic RPM sequences (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from common.errors import ConfigError
from common.settings import RunRule, load_settings
from runs.rules import Boundary, State, step

RULE = RunRule(name="pull", channel="Engine RPM", start_above=2000, start_for_s=1, stop_below=1500, stop_for_s=2)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _run(values: list[tuple[float, float]]) -> tuple[State, list[Boundary]]:
    state, out = State(), []
    for i, (t, v) in enumerate(values):
        state, b = step(RULE, "dyno", state, v, T0 + timedelta(seconds=t), f"{i}-0")
        if b:
            out.append(b)
    return state, out


def test_start_needs_one_second_above_and_end_two_seconds_below() -> None:
    seq = [(0, 1000), (0.5, 2100), (1.0, 1900), (1.2, 2500), (1.8, 3000), (2.2, 4000), (3, 6000),
           (4, 1400), (5, 1600), (6, 1200), (7, 1000), (7.9, 900), (8.0, 800), (9, 2100)]  # fmt: skip
    state, got = _run(seq)
    assert [(b.kind, (b.at - T0).total_seconds(), b.key) for b in got] == [
        ("start", 1.2, "pull:dyno:3-0"),  # the dip at 1.0 restarted the clock; confirmed at 2.2
        ("end", 6.0, "pull:dyno:9-0"),  # 1400 at 4 was interrupted by 1600 at 5; 6 .. 8.0 is 2 s
    ]
    assert state.state == "starting"  # 2100 at 9: a new candidate


def test_old_frames_change_nothing() -> None:
    state, got = _run([(0, 3000), (2, 3000)])
    assert [b.kind for b in got] == ["start"]
    again, b = step(RULE, "dyno", state, 100.0, T0 + timedelta(seconds=1), "9-0")
    assert again == state and b is None


def test_state_survives_a_restart_between_frames() -> None:
    seq = [(0, 3000), (0.5, 3000), (1.5, 3000), (3, 1000), (4, 1000), (5.5, 1000)]
    _, whole = _run(seq)
    first, got1 = _run(seq[:3])
    # a detector restarted here resumes from the stored state (runs/detector.py persists it)
    state = first
    got2 = []
    for i, (t, v) in enumerate(seq[3:], start=3):
        state, b = step(RULE, "dyno", state, v, T0 + timedelta(seconds=t), f"{i}-0")
        if b:
            got2.append(b)
    assert got1 + got2 == whole and [b.kind for b in whole] == ["start", "end"]


def test_rules_are_validated_with_the_variable_named(monkeypatch: pytest.MonkeyPatch) -> None:
    bad = {"name": "pull", "channel": "rpm", "start_above": 1000, "stop_below": 2000}
    monkeypatch.setenv("TELEMETRY_RUNS__RULES", json.dumps([bad]))
    with pytest.raises(ConfigError, match=r"TELEMETRY_RUNS__RULES.*stop_below must not exceed start_above"):
        load_settings(_env_file=None)
    monkeypatch.setenv("TELEMETRY_RUNS__RULES", '[{"name": "x; DROP TABLE runs", "channel": "rpm"}]')
    with pytest.raises(ConfigError, match="TELEMETRY_RUNS__RULES"):
        load_settings(_env_file=None)
    monkeypatch.setenv("TELEMETRY_RUNS__RULES", "[{not json")
    with pytest.raises(ConfigError, match="TELEMETRY_RUNS__RULES: not valid JSON"):
        load_settings(_env_file=None)
    monkeypatch.setenv("TELEMETRY_RUNS__RULES", json.dumps([RULE.model_dump()]))
    monkeypatch.setenv("TELEMETRY_RUNS__PRIORITIES", '["normal", "nonsense"]')
    with pytest.raises(ConfigError, match="TELEMETRY_RUNS__PRIORITIES"):
        load_settings(_env_file=None)


def test_a_rule_ignores_other_devices_bad_readings_and_text() -> None:
    from common.schema import Channel, Frame, Quality
    from runs.rules import applies, value_of

    rule = RULE.model_copy(update={"device": "dyno-*"})
    assert applies(rule, "dyno-1") and not applies(rule, "car")
    frame = Frame("s", "dyno-1", T0, T0, 0, (Channel("Engine RPM", 3000.0, "rpm", Quality.WARN),))
    assert value_of(rule, frame) is None
    assert value_of(rule, Frame("s", "dyno-1", T0, T0, 0, (Channel("Engine RPM", "fast", ""),))) is None
    assert value_of(rule, Frame("s", "dyno-1", T0, T0, 0, (Channel("Engine RPM", 3000, "rpm"),))) == 3000.0


def test_a_stable_weight_starts_a_weighing() -> None:
    rule = RunRule(name="weigh", channel="weight", start_above=5, start_for_s=2, stop_below=1, stop_for_s=1,
                   stable_within=0.05)  # fmt: skip
    state, got = State(), []
    # a load swinging while placed (12.0 .. 12.6), then settled at 12.30 +- 0.02 from t = 3
    seq = [(0, 0.0), (1, 12.0), (1.5, 12.6), (2, 12.1), (3, 12.30), (3.5, 12.32), (4.5, 12.28), (5.0, 12.31),
           (6, 0.2), (7.5, 0.1)]  # fmt: skip
    for i, (t, v) in enumerate(seq):
        state, b = step(rule, "scale", state, v, T0 + timedelta(seconds=t), f"{i}-0")
        if b:
            got.append((b.kind, (b.at - T0).total_seconds()))
    assert got == [("start", 3.0), ("end", 6.0)]  # 1 .. 2 never settled for 2 s
