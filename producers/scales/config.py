"""The scales configuration file: which scales one producer serves, and how to read each.

A JSON object with optional ``defaults`` (merged under every scale) and a ``scales`` list::

    {"defaults": {"format": "ohaus", "baudrate": 9600},
     "scales": [
       {"device": "line1-scale-01", "url": "/dev/ttyUSB0"},
       {"device": "line1-scale-02", "url": "socket://10.0.5.20:4001", "format": "toledo", "checksum": true},
       {"device": "lab-balance", "url": "socket://10.0.5.20:4002", "format": "mt_print"},
       {"device": "a-and-d-7", "url": "/dev/ttyS3", "format": "regex", "width": 17,
        "pattern": "^(?P<status>ST|US|OL),(?P<mode>GS|NT),(?P<sign>[-+])(?P<value>[0-9.]+) *(?P<unit>[a-z]+)$"}]}

Validation only (pydantic); reading the file is ``load_config``. No serial I/O here.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from common.errors import ConfigError
from common.schema import MAX_NAME_LEN
from producers.scales.formats import LINE_FORMATS, LineFormat

FORMATS = ("toledo", "regex", *LINE_FORMATS)
"""Every ``format`` value: Toledo continuous, a custom regex, or a built-in line format."""


class ScaleConfig(BaseModel):
    """One scale: one device name, one connection (serial port or TCP serial server port)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device: str = Field(min_length=1, max_length=MAX_NAME_LEN)
    url: str = Field(min_length=1)
    """Any pyserial URL: /dev/ttyUSB0, socket://host:port, rfc2217://host:port."""
    format: str
    baudrate: int = Field(default=9600, gt=0)
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    checksum: bool = False
    """Toledo only: a checksum byte follows CR."""
    pattern: str | None = None
    """format ``regex`` only: the record regex with the named groups of LineFormat."""
    width: int | None = Field(default=None, ge=1, le=200)
    """Record width in characters; default that of the built-in format (``regex``: any)."""
    min_interval_s: float = Field(default=0.0, ge=0)
    """Drop a record identical to the last one sent less than this long ago (0 = send all)."""

    @field_validator("format")
    @classmethod
    def _check_format(cls, value: str) -> str:
        if value not in FORMATS:
            raise ValueError(f"unknown format {value!r}; one of {', '.join(FORMATS)}")
        return value

    @model_validator(mode="after")
    def _check_pattern(self) -> ScaleConfig:
        if (self.format == "regex") != (self.pattern is not None):
            raise ValueError("'pattern' is required with format 'regex' and only allowed with it")
        if self.pattern is not None:
            try:
                groups = re.compile(self.pattern).groupindex
            except re.error as exc:
                raise ValueError(f"pattern does not compile: {exc}") from None
            if "value" not in groups:
                raise ValueError("pattern needs a named group 'value'")
        return self

    def line_format(self) -> LineFormat | None:
        """The line format to parse with, or None for Toledo continuous."""
        if self.format == "toledo":
            return None
        if self.format == "regex":
            assert self.pattern is not None
            return LineFormat(re.compile(self.pattern), self.width)
        builtin = LINE_FORMATS[self.format]
        width = self.width if "width" in self.model_fields_set else builtin.width
        return dataclasses.replace(builtin, width=width)


class ScalesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    defaults: dict[str, Any] = Field(default_factory=dict)
    scales: list[ScaleConfig]

    @model_validator(mode="before")
    @classmethod
    def _merge_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("scales"), list):
            defaults = data.get("defaults") or {}
            merged = [{**defaults, **s} if isinstance(s, dict) else s for s in data["scales"]]
            data = {**data, "scales": merged}
        return data

    @model_validator(mode="after")
    def _unique(self) -> ScalesConfig:
        for attr in ("device", "url"):
            seen: set[str] = set()
            for scale in self.scales:
                key = getattr(scale, attr)
                if key in seen:
                    raise ValueError(f"two scales have {attr} {key!r}")
                seen.add(key)
        if not self.scales:
            raise ValueError("no scales listed")
        return self


def parse_config(raw: bytes, origin: str = "<config>") -> ScalesConfig:
    """JSON text -> ScalesConfig; ConfigError naming the scale and field that are wrong."""
    try:
        return ScalesConfig.model_validate(orjson.loads(raw))
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{origin}: not valid JSON: {exc}") from None
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]]
        raise ConfigError(f"{origin}: " + "; ".join(problems)) from None


def load_config(path: Path | None) -> ScalesConfig:
    """Read and validate the file named by TELEMETRY_SCALES__CONFIG."""
    if path is None:
        raise ConfigError("TELEMETRY_SCALES__CONFIG: no scales configuration file given")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"TELEMETRY_SCALES__CONFIG: cannot read {str(path)!r}: {exc.strerror}") from None
    return parse_config(raw, str(path))
