"""The can source's mapping file: DBC ``MESSAGE.SIGNAL`` -> channel name, unit, priority.

JSON, one object: ``{"SPEED.SPEED": {"channel": "speed", "unit": "km/h", "priority": "high"}}``.
Every key is optional inside an entry: a missing channel keeps ``MESSAGE.SIGNAL``, a missing
unit keeps the DBC's, a missing priority is normal. A frame (one decoded message) goes out with
the highest priority among its mapped signals. Reading the file is the only I/O.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.errors import ConfigError
from common.schema import MAX_NAME_LEN, MAX_UNIT_LEN, Priority


class SignalMap(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_LEN)
    unit: str | None = Field(default=None, max_length=MAX_UNIT_LEN)
    priority: Priority = Priority.NORMAL


def load_mapping(path: Path | None) -> dict[str, SignalMap]:
    """The mapping file as ``{"MESSAGE.SIGNAL": SignalMap}``; {} without a file. ConfigError if bad."""
    if path is None:
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise ValueError("the file must hold one JSON object")
        return {str(key): SignalMap.model_validate(value) for key, value in raw.items()}
    except (OSError, ValueError, ValidationError) as exc:
        raise ConfigError(f"TELEMETRY_CAN__MAPPING {str(path)!r}: {str(exc)[:300]}") from None


PRIORITY_RANK = {p: i for i, p in enumerate(Priority)}
"""Lower is more urgent (Priority lists critical first)."""
