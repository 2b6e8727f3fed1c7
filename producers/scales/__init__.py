"""scales: industrial scales, many per process (Toledo continuous and ASCII print formats).

* ``formats``: pure framing and decoding (ToledoFramer, LineFramer, parse_toledo, parse_line).
* ``config``: the JSON file naming each scale, its URL and format (TELEMETRY_SCALES__CONFIG).
* ``source``: ScalesSource, one selector loop over every scale's connection.

Every record becomes a frame of its scale's device with ``weight`` (signed), ``stable``,
``net`` and ``overload`` (1/0) and, when sent, ``tare``; overloads go out on the critical stream.
"""

from __future__ import annotations

from common.settings import Settings
from producers.scales.config import ScaleConfig, ScalesConfig, load_config, parse_config
from producers.scales.formats import (
    LINE_FORMATS,
    LineFormat,
    LineFramer,
    ScaleReading,
    ToledoFramer,
    parse_line,
    parse_toledo,
    to_frame,
)
from producers.scales.source import ScalesSource
from producers.source_spec import SourceSpec

__all__ = [
    "LINE_FORMATS",
    "SPEC",
    "LineFormat",
    "LineFramer",
    "ScaleConfig",
    "ScaleReading",
    "ScalesConfig",
    "ScalesSource",
    "ToledoFramer",
    "from_settings",
    "load_config",
    "parse_config",
    "parse_line",
    "parse_toledo",
    "to_frame",
]


def from_settings(s: Settings) -> ScalesSource:
    """The source for ``telemetry-produce scales``; ConfigError if the config file is wrong."""
    return ScalesSource(load_config(s.scales.config), s.scales.open_workers, s.scales.reconnect_max_s)


SPEC = SourceSpec("scales", "scales", from_settings, "industrial scales, many per process (Toledo, ASCII print)")
