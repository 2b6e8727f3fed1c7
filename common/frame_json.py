"""A Frame as a JSON-ready dict, for tools that print frames (``tap``, ``telemetry-produce --test``).

Pure: no I/O. Channels become a mapping name -> {value, unit, quality}, in frame order (a
channel name repeated in one frame keeps its last value, as the writer's current state does).
Not a wire format: the stream layout is common.schema's ``encode``/``decode`` alone.
"""

from __future__ import annotations

from typing import Any

from common.schema import Frame


def frame_to_json(frame: Frame) -> dict[str, Any]:
    """``frame`` as a dict of JSON types (timestamps as ISO 8601 text)."""
    out: dict[str, Any] = {
        "source": frame.source,
        "device": frame.device,
        "priority": frame.priority.value,
        "observed_at": frame.observed_at.isoformat(),
        "received_at": frame.received_at.isoformat(),
    }
    if frame.producer:
        out["producer"], out["seq"] = frame.producer, frame.seq
    if frame.session is not None:
        out["session"] = frame.session
    out["channels"] = {
        ch.name: {"value": ch.value, "unit": ch.unit, "quality": ch.quality.value} for ch in frame.channels
    }
    return out
