"""writer/pg_copy.py latest_by_device: which frame's value of each channel becomes the current
state, checked against the rule written out channel by channel (the writer's former loop)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from common.schema import Channel, Frame
from writer.names import layout_of
from writer.pg_copy import latest_by_device

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def _frame(seq: int, second: int, names: list[str]) -> Frame:
    chans = tuple(Channel(n, float(seq * 100 + k), "u") for k, n in enumerate(names))
    return Frame("simulate", "dev", T0 + timedelta(seconds=second), T0, seq, chans, producer="p", seq=seq)


def _by_rule(frames: list[Frame]) -> dict[str, tuple[Frame, Channel]]:
    """Per channel, the frame observed last that has it; of equal times the later in the batch."""
    state: dict[str, tuple[Frame, Channel]] = {}
    for f in frames:
        for ch in f.channels:
            prev = state.get(ch.name)
            if prev is None or prev[0].observed_at <= f.observed_at:
                state[ch.name] = (f, ch)
    return state


def latest_channels(frames: list[Frame]) -> dict[str, tuple[Frame, Channel]]:
    """``latest_by_device`` of the one device the frames are of."""
    return latest_by_device(frames, [layout_of(f) for f in frames])[("simulate", "dev")]


def test_in_order_frames_with_the_same_channels_give_the_last_frame() -> None:
    frames = [_frame(i, i, ["a", "b"]) for i in range(1, 6)]
    state = latest_channels(frames)
    assert {n: f.seq for n, (f, _) in state.items()} == {"a": 5, "b": 5}
    assert state["b"][1] == Channel("b", 501.0, "u")


def test_an_older_frame_fills_only_channels_the_newer_ones_lack() -> None:
    frames = [_frame(1, 10, ["a", "c"]), _frame(2, 20, ["a"]), _frame(3, 15, ["a", "b", "c"])]
    state = latest_channels(frames)
    assert {n: f.seq for n, (f, _) in state.items()} == {"a": 2, "b": 3, "c": 3}


def test_of_two_frames_observed_at_the_same_time_the_later_wins() -> None:
    frames = [_frame(1, 10, ["a"]), _frame(2, 10, ["a"]), _frame(3, 5, ["a", "b"]), _frame(4, 5, ["b"])]
    state = latest_channels(frames)
    assert {n: f.seq for n, (f, _) in state.items()} == {"a": 2, "b": 4}


@pytest.mark.parametrize("seed", range(40))
def test_random_batches_match_the_rule(seed: int) -> None:
    rng = random.Random(seed)
    names = ["a", "b", "c", "d"]
    frames = [
        _frame(i, rng.randint(0, 6), rng.sample(names, rng.randint(1, 4)) if rng.random() < 0.5 else names[:3])
        for i in range(1, rng.randint(2, 30))
    ]
    got = latest_channels(frames)
    want = _by_rule(frames)
    assert {n: (f.seq, ch) for n, (f, ch) in got.items()} == {n: (f.seq, ch) for n, (f, ch) in want.items()}
