"""telemetry-admin run start|stop|mark|list|show on real Redis and PostgreSQL (frames through the writer)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis

from common.schema import Channel, Frame, Quality
from common.settings import Settings
from tests.helpers import count_readings, running_writer, wait_for
from tests.integration.pipeline import publish
from tests.integration.test_admin_cli import admin

pytestmark = pytest.mark.integration
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)  # inside the partitions made


def _frames(device: str, start: datetime, n: int) -> list[Frame]:
    out = []
    for i in range(n):
        at = start + timedelta(seconds=i)
        quality = Quality.WARN if i == 3 else Quality.GOOD
        chans = (Channel("speed", float(10 * i), "km/h", quality), Channel("temp", 20.0 + i / 2, "degC"))
        out.append(Frame("simulate", device, at, at, i, chans))
    return out


def test_start_mark_stop_show_list(settings: Settings, redis: Redis) -> None:
    frames = _frames("car1", T0, 10) + _frames("car2", T0, 10)  # car2 is not in the run
    with running_writer(settings):
        publish(settings, redis, frames)
        wait_for(lambda: count_readings(settings) == 40, 30, what="40 readings")
    at = lambda s: (T0 + timedelta(seconds=s)).isoformat()  # noqa: E731
    out = admin(settings, "run", "start", "--name", "stock", "--device", "car1", "--kind", "session",
                "--at", at(2), "--meta", "vehicle=GT86", "--meta", "pressure_kpa=98.5")  # fmt: skip
    assert "'stock' started" in out
    assert "marked" in admin(settings, "run", "mark", "launch", "--at", at(4))
    outside = admin(settings, "run", "mark", "too early", "--at", at(0), ok=False)
    assert "outside run 'stock'" in outside
    assert "stopped after 5.0 s" in admin(settings, "run", "stop", "--at", at(7))
    assert "already closed" in admin(settings, "run", "stop", "stock", "--at", at(8), ok=False)
    shown = json.loads(admin(settings, "run", "show", "stock", "--json"))
    assert shown["status"] == "closed" and shown["devices"] == ["car1"] and shown["kind"] == "session"
    assert shown["metadata"] == {"vehicle": "GT86", "pressure_kpa": 98.5}
    assert shown["marks"] == [{"at": at(4), "label": "launch"}]
    summary = shown["summary"]
    # seconds 2..6 of car1 only (the end is excluded): 5 frames of 2 channels; speed 20..60, the warn one (30) out
    assert summary["duration_s"] == 5.0 and summary["frames"] == 5 and summary["readings"] == 10
    speed = next(c for c in summary["channels"] if c["channel"] == "speed")
    assert speed["good_share"] == pytest.approx(4 / 5)
    assert (speed["min"], speed["max"], speed["mean"]) == (20.0, 60.0, pytest.approx((20 + 40 + 50 + 60) / 4))
    text = admin(settings, "run", "show", "1")
    assert "run 1 'stock' (session, closed, manual)" in text and "80.0%" in text
    # auto-numbering: the same base name again, twice
    for n in (2, 3):
        out = admin(settings, "run", "start", "--name", "stock", "--device", "car2", "--at", at(n))
        assert f"'stock {n}' started" in out
    assert "several runs are open" in admin(settings, "run", "stop", ok=False)
    listing = admin(settings, "run", "list")
    assert [line.split()[:2] for line in listing.splitlines()[1:]] == [["3", "stock"], ["2", "stock"], ["1", "stock"]]
    assert [r["name"] for r in json.loads(admin(settings, "run", "list", "--json"))] == ["stock 3", "stock 2", "stock"]


def test_bad_arguments_are_clear_errors(settings: Settings) -> None:
    assert "no UTC offset" in admin(settings, "run", "start", "--name", "x", "--device", "d",
                                    "--at", "2026-01-01T00:00:00", ok=False)  # fmt: skip
    assert "no run 'nope'" in admin(settings, "run", "show", "nope", ok=False)
    assert "no open run" in admin(settings, "run", "stop", ok=False)
    assert "not KEY=VALUE" in admin(settings, "run", "start", "--name", "x", "--device", "d", "--meta", "x", ok=False)
    out = admin(settings, "run", "start", "--name", "x", "--device", "d", "--at", "2026-01-02T00:00:00Z")
    assert "started" in out
    assert "before the run's start" in admin(settings, "run", "stop", "x", "--at", "2026-01-01T00:00:00Z", ok=False)
