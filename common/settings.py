"""Settings for every process, from ``TELEMETRY_*`` environment variables and a ``.env`` file.

Sections nest with ``__``: ``TELEMETRY_REDIS__URL``, ``TELEMETRY_WRITER__BATCH_MAX_ROWS``.
Secrets come from the environment or from files named by ``*_FILE`` variables
(``TELEMETRY_POSTGRES__PASSWORD_FILE=/run/secrets/pg``) and are never logged.
``load_settings()`` turns any error into a ConfigError naming the variable to fix, and
rejects unknown ``TELEMETRY_*`` variables (a typo must not silently fall back to a default).
No I/O here beyond reading the environment, ``.env`` and secret files.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import types
import typing
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from common.errors import ConfigError
from common.schema import MAX_NAME_LEN, Priority
from common.streams import DEFAULT_NAMESPACE, StreamNames

ENV_PREFIX = "TELEMETRY_"
_IGNORED_PREFIXES = ("TELEMETRY_TEST_", "TELEMETRY_FAULT_")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def _read_secret(path: Path | None, current: SecretStr | None) -> SecretStr | None:
    if path is None:
        return current
    try:
        return SecretStr(path.read_text().rstrip("\r\n"))
    except OSError as exc:
        raise ValueError(f"cannot read secret file {str(path)!r}: {exc.strerror}") from None


class RedisSettings(Section):
    url: str = "redis://127.0.0.1:6379/0"
    """Redis URL; ``rediss://`` for TLS. Put no password here: use PASSWORD or PASSWORD_FILE."""
    username: str | None = None
    """Redis ACL user (see deploy/redis/users.acl)."""
    password: SecretStr | None = None
    """Password for the ACL user; prefer PASSWORD_FILE."""
    password_file: Path | None = None
    """File holding the password (a Docker/systemd secret); read at start, never logged."""
    namespace: str = DEFAULT_NAMESPACE
    """Hash-tag namespace of every key: ``{telemetry}:critical`` ..."""
    cluster: bool = False
    """Connect to a Redis Cluster (URL = any node). All keys share one hash slot, so nothing else changes."""
    socket_timeout: float = Field(default=10.0, gt=0)
    """Seconds a Redis command may take before the link counts as broken."""
    connect_timeout: float = Field(default=5.0, gt=0)
    """Seconds to wait for a Redis connection."""

    @model_validator(mode="after")
    def _load_secret(self) -> RedisSettings:
        object.__setattr__(self, "password", _read_secret(self.password_file, self.password))
        return self

    @field_validator("namespace")
    @classmethod
    def _check_namespace(cls, value: str) -> str:
        StreamNames(value)
        return value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @property
    def names(self) -> StreamNames:
        return StreamNames(self.namespace)


class PostgresSettings(Section):
    dsn: str = "postgresql://telemetry@127.0.0.1:5432/telemetry"
    """libpq connection string or URL. Put no password here: use PASSWORD or PASSWORD_FILE."""
    password: SecretStr | None = None
    """PostgreSQL password; prefer PASSWORD_FILE."""
    password_file: Path | None = None
    """File holding the password; read at start, never logged."""
    schema_name: str = Field(default="telemetry", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    """Schema holding the tables (created by `telemetry-admin migrate`)."""
    connect_timeout: int = Field(default=5, ge=1)
    """Seconds to wait for a PostgreSQL connection."""
    statement_timeout_ms: int = Field(default=30_000, ge=100)
    """Longest a single statement may run; a timeout is retried, never dead-lettered."""
    lock_timeout_ms: int = Field(default=5_000, ge=0)
    """Longest a statement waits for a lock (a ledger row held by another replica's open
    transaction); the batch is then retried. 0 = wait without limit."""
    idle_in_transaction_timeout_ms: int = Field(default=5_000, ge=0)
    """The server ends a session idle inside a transaction this long, releasing its locks (a
    paused or vanished replica). 0 = never."""

    @model_validator(mode="after")
    def _load_secret(self) -> PostgresSettings:
        object.__setattr__(self, "password", _read_secret(self.password_file, self.password))
        return self


class WriterSettings(Section):
    @model_validator(mode="after")
    def _load_deadletter_key(self) -> WriterSettings:
        object.__setattr__(self, "deadletter_key", _read_secret(self.deadletter_key_file, self.deadletter_key))
        return self

    @model_validator(mode="after")
    def _forget_after_claim(self) -> WriterSettings:
        if self.consumer_forget_idle_s * 1000 <= self.claim_idle_ms:
            raise ValueError(
                "consumer_forget_idle_s must be longer than claim_idle_ms (a dead replica's entries"
                " are claimed before its consumer is forgotten)"
            )
        return self

    deadletter_key: SecretStr | None = None
    """Secret that signs dead letters (HMAC-SHA256), shared by the writer and telemetry-admin;
    prefer DEADLETTER_KEY_FILE. With it, `deadletter replay` refuses dead letters that are
    unsigned or whose signature does not match (forged with a stolen Redis password)."""
    deadletter_key_file: Path | None = None
    """File holding DEADLETTER_KEY (a Docker/systemd secret); read at start, never logged."""
    batch_max_rows: int = Field(default=20_000, ge=1)
    """Most readings (rows) in one batch: a batch is committed before a frame would take it past this
    (a frame with more channels than this is a batch of its own)."""
    batch_max_age_ms: int = Field(default=50, ge=0)
    """Flush a batch when its oldest entry has waited this long. Critical/high never wait."""
    max_entry_bytes: int = Field(default=1 << 20, ge=1024)
    """Largest stream entry decoded (field names and values, bytes); a larger one is dead-lettered by
    reference (stream, id, size) without being parsed or copied."""
    max_channels: int = Field(default=10_000, ge=1)
    """Most channels in one frame, checked before the channels are parsed; a frame with more is dead-lettered."""
    read_count: int = Field(default=1000, ge=1)
    """XREADGROUP COUNT, per stream."""
    block_ms: int = Field(default=50, ge=1)
    """Longest a read blocks waiting for new entries when no batch is pending."""
    claim_idle_ms: int = Field(default=30_000, ge=100)
    """Entries pending this long on another consumer are claimed (XAUTOCLAIM)."""
    reclaim_interval_s: float = Field(default=5.0, gt=0)
    """How often to look for entries left pending by dead replicas."""
    consumer_forget_idle_s: float = Field(default=3600.0, gt=0)
    """A consumer of another replica with nothing pending, idle this long, is removed from the group
    (a replica that stops cleanly removes its own at once). Must exceed CLAIM_IDLE_MS."""
    trim_interval_s: float = Field(default=2.0, gt=0)
    """How often to trim acknowledged entries from the priority streams (each pass repeats XTRIM until
    nothing acknowledged is left)."""
    deadletter_max_len: int = Field(default=100_000, ge=10)
    """Dead letters kept (XADD MAXLEN ~); beyond it the oldest are dropped, never silently: each drop
    is logged as an error and counted (telemetry_writer_dead_letters_dropped_total)."""
    stall_s: float = Field(default=60.0, gt=0)
    """A lane holding an entry neither committed nor dead-lettered this long fails /readyz; a lane
    whose loop has not turned this long fails /healthz."""
    consumer: str | None = None
    """Consumer name; default ``<hostname>-<pid>``."""
    retention_days: int = Field(default=30, ge=1)
    """Daily partitions older than this are dropped; partitions exist back to this horizon."""
    partitions_ahead_days: int = Field(default=3, ge=1, le=31)
    """Daily partitions are created this many days ahead, so midnight never stalls ingest (at most 31:
    the writer role may not create partitions further ahead)."""
    retention_max_days_per_pass: int = Field(default=3, ge=1)
    """Most daily partitions one retention pass (every 10 minutes) drops."""
    current_state_max_ahead_s: float = Field(default=300.0, ge=0)
    """Frames observed further than this ahead of the writer's clock are stored in readings but
    do not update current_state (one frame from a clock days ahead would freeze it)."""
    snapshot_interval_s: float = Field(default=0.0, ge=0)
    """Write a JSONB snapshot per device and session to ``frames`` this often; 0 = off."""


class ArchiveSettings(Section):
    """The cold tier (issue 15): days past the hot horizon exported to Parquet, then dropped.

    Run by ``telemetry-admin archive export --due`` as the tables' owner (the writer role may not
    read readings); needs the optional extra ``archive`` (pyarrow)."""

    dir: Path | None = None
    """Directory of the archive files (one ``readings_YYYYMMDD.parquet`` per day); unset = no archive."""
    hot_days: int = Field(default=7, ge=1)
    """Days kept in PostgreSQL; older days are archived by ``archive export --due``. Keep it
    below WRITER__RETENTION_DAYS, which drops partitions whether archived or not."""
    max_days_per_pass: int = Field(default=10, ge=1)
    """Most days one ``archive export --due`` exports and drops."""


class StalenessRule(Section):
    """One staleness timeout: the first rule whose patterns match a channel applies."""

    source: str = Field(default="*", min_length=1, max_length=64)
    """Shell pattern on the source name (``*`` and ``?``)."""
    channel: str = Field(default="*", min_length=1, max_length=MAX_NAME_LEN)
    """Shell pattern on the channel name."""
    timeout: float | typing.Literal["auto", "never"] = "auto"
    """Seconds without an arrival before the channel is stale; ``auto`` = AUTO_FACTOR x its observed
    arrival interval; ``never``."""

    @field_validator("timeout")
    @classmethod
    def _positive(cls, value: float | str) -> float | str:
        if isinstance(value, float | int) and not value > 0:
            raise ValueError("a timeout in seconds must be > 0")
        return value


class StalenessSettings(Section):
    rules: list[StalenessRule] = Field(default_factory=lambda: [StalenessRule()])
    """JSON list, first match wins: ``[{"source": "obd", "channel": "vin", "timeout": "never"},
    {"source": "gps_nmea", "timeout": 5}, {"timeout": "auto"}]``. A channel no rule matches is never
    stale. Stored in PostgreSQL by ``telemetry-admin migrate``."""
    auto_factor: float = Field(default=3.0, gt=0)
    """``auto``: stale after this many observed arrival intervals."""
    auto_min_s: float = Field(default=5.0, ge=0)
    """``auto``: never stale sooner than this (the writer commits in batches, so arrivals jitter)."""


class HttpSettings(Section):
    """The operations endpoint of every long-running process: /metrics, /healthz, /readyz, /summary."""

    enabled: bool = True
    """Serve the endpoint; a port already in use is logged and ingest goes on without it."""
    host: str = "127.0.0.1"
    """Address to bind. Keep 127.0.0.1 on a bare box; 0.0.0.0 only on a private container network."""
    port: int | None = Field(default=None, ge=0, le=65535)
    """Port; unset = the role's default (writer 9108, producer 9109); 0 = any free port (logged)."""
    query_timeout_s: float = Field(default=0.5, gt=0)
    """Timeout of the Redis and PostgreSQL queries made while answering a scrape or /readyz."""


class RangeSpec(Section):
    """Hard and warning limits for one channel, in ``unit``."""

    unit: str
    min: float
    max: float
    warn_min: float | None = None
    warn_max: float | None = None


DEFAULT_RANGES: dict[str, RangeSpec] = {
    "rpm": RangeSpec(unit="rpm", min=0, max=20_000, warn_min=500, warn_max=15_000),
    "afr": RangeSpec(unit="afr", min=6, max=35, warn_min=10, warn_max=20),
    "map": RangeSpec(unit="kPa", min=0, max=300, warn_min=20, warn_max=250),
    "tps": RangeSpec(unit="%", min=0, max=100),
    "iat": RangeSpec(unit="degF", min=-40, max=300, warn_min=32, warn_max=200),
    "horsepower": RangeSpec(unit="hp", min=-50, max=2_000),
    "torque": RangeSpec(unit="ft_lb", min=-100, max=2_000),
}


class ProducerSettings(Section):
    name: str | None = None
    """Stable producer name; default ``<source>@<hostname>``. A run id is appended per start."""
    publish_batch: int = Field(default=500, ge=1)
    """Largest number of frames sent in one Redis pipeline."""
    read_timeout_s: float = Field(default=0.2, gt=0)
    """Longest one read of the device may block (bounds the reaction to SIGTERM)."""
    reconnect_max_s: float = Field(default=10.0, gt=0)
    """Cap of the reconnect backoff for devices and Redis."""
    session: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_LEN)
    """Optional session label put on every frame (e.g. a dyno run)."""
    ranges: dict[str, RangeSpec] = Field(default_factory=lambda: dict(DEFAULT_RANGES))
    """Sensor-range table as JSON: {"rpm": {"unit": "rpm", "min": 0, "max": 20000, ...}}."""
    spool_dir: Path | None = None
    """Folder of the on-disk spool that keeps frames while Redis is down or refuses writes (a
    sub-folder per producer name is used). Unset = no spool: reading waits until Redis is back. The
    shipped compose file and systemd unit set it (/var/lib/telemetry/spool)."""
    spool_max_mb: float = Field(default=256.0, gt=0)
    """Disk the spool may use. When full, critical/high evict bulk, low, then normal frames (and
    pause reading when nothing is left); normal/low/bulk drop their oldest. Drops are counted."""
    spool_segment_kb: int = Field(default=1024, ge=4)
    """Size of one spool segment file: the unit in which the oldest frames are dropped."""
    spool_fsync_interval_s: float = Field(default=1.0, ge=0)
    """How often spooled frames are fsynced: at most this much is lost on power loss (kill -9
    loses nothing already spooled). 0 = after every read."""
    breaker_failures: int = Field(default=3, ge=1)
    """Consecutive failures of the device or Redis link that open its circuit breaker."""
    breaker_open_s: float = Field(default=5.0, ge=0)
    """Seconds an open breaker waits before letting one probe through (half-open)."""
    breaker_successes: int = Field(default=2, ge=1)
    """Consecutive successes in half-open that close the breaker."""


class SimulateSettings(Section):
    devices: int = Field(default=2, ge=1, le=10_000)
    """Number of simulated devices."""
    channels: int = Field(default=8, ge=1, le=10_000)
    """Channels per frame (the first 8 look like an engine: rpm, afr, map, tps, ...)."""
    rate_hz: float = Field(default=10.0, ge=0)
    """Frames per second per device; 0 = as fast as possible."""
    count: int = Field(default=0, ge=0)
    """Stop after this many frames in all; 0 = run until stopped."""
    priority: str = "normal"
    """Priority stream the simulated frames go to."""


class JsonlSettings(Section):
    path: str = "-"
    """File or FIFO to read; ``-`` is stdin."""
    follow: bool = False
    """Keep reading at end of file (a FIFO is reopened when its writer closes)."""
    offset_file: Path | None = None
    """Where the read position in a regular file is kept, so a restart resumes instead of re-sending;
    default ``jsonl.offset`` in the producer's spool folder. Unset and no spool = read from the start."""


class GpsNmeaSettings(Section):
    url: str = "/dev/gps0"
    """Any pyserial URL: /dev/ttyUSB0, socket://host:port, rfc2217://..., loop://"""
    baudrate: int = 4800
    """Serial speed (ignored by socket:// and pty URLs); u-blox at 10 Hz needs 115200."""
    device: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_LEN)
    """Device name; default the last part of ``url`` (``gps0`` for /dev/gps0)."""
    strict_checksum: bool = False
    """Reject sentences without a ``*hh`` checksum (``checksum``); default: only types this receiver sent with one."""
    min_date: date = date(2025, 1, 1)
    """Week-rollover check: a receiver date before this is moved forward by 1024 weeks."""
    epoch_idle_s: float = Field(default=0.3, gt=0)
    """Emit the epoch in progress after this long without new bytes (else at the next fix time)."""


DEFAULT_OBD_PIDS: dict[str, float] = {
    "RPM": 0.1,
    "SPEED": 0.2,
    "THROTTLE_POS": 0.1,
    "INTAKE_PRESSURE": 0.2,
    "ENGINE_LOAD": 0.2,
    "MAF": 0.2,
    "COOLANT_TEMP": 1.0,
    "INTAKE_TEMP": 1.0,
    "FUEL_LEVEL": 10.0,
    "ELM_VOLTAGE": 5.0,
    "GET_DTC": 10.0,
}


class ObdSettings(Section):
    url: str = "/dev/obd0"
    """Any pyserial URL: /dev/ttyUSB0, socket://host:port (then set BAUDRATE), rfc2217://..."""
    baudrate: int | None = None
    """Adapter baud rate; None = python-OBD's auto-detection (serial ports only)."""
    device: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_LEN)
    """Device name; default the last part of ``url`` (``obd0`` for /dev/obd0)."""
    pids: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_OBD_PIDS))
    """python-OBD command name -> query interval in seconds (0 = every round). GET_DTC goes out critical."""
    protocol: str | None = None
    """ELM327 protocol id ("6" = ISO 15765-4 CAN 11/500); None = auto."""
    fast: bool = True
    """python-OBD ``fast`` mode: tell the adapter how many frames to wait for."""
    car_retry_s: float = Field(default=10.0, gt=0)
    """While the adapter answers but the car does not (ignition off), retry the car this often."""

    @field_validator("pids")
    @classmethod
    def _check_pids(cls, value: dict[str, float]) -> dict[str, float]:
        if not value:
            raise ValueError("at least one PID is required")
        for name, interval in value.items():
            if not name.isidentifier() or name.upper() != name or interval < 0:
                raise ValueError(f"{name!r}: need an upper-case python-OBD command name and an interval >= 0")
        return value


class JetDriveAlias(Section):
    """A JETDRIVE provider channel published under a canonical name, so the range table applies."""

    channel: str
    """Canonical channel name (a key of the range table: ``rpm``, ``torque``, ``horsepower`` ...)."""
    unit: str | None = None
    """Apply only when the provider declares this unit (``N*m``); None = any unit."""


DEFAULT_JETDRIVE_ALIASES: dict[str, JetDriveAlias] = {
    # Dynojet Power Core names (rob9206/DynoAI_3 jetdrive_client.py, real hardware); the wire is SI,
    # and the range check converts (N*m -> ft_lb, kW -> hp): the value stays as sent.
    "Engine RPM": JetDriveAlias(channel="rpm", unit="rpm"),
    "Torque": JetDriveAlias(channel="torque", unit="N*m"),
    "Power": JetDriveAlias(channel="horsepower", unit="kW"),
}


class DynoUdpSettings(Section):
    group: str = "224.0.2.10"
    """JETDRIVE multicast group; a unicast address (127.0.0.1) listens point-to-point instead."""
    port: int = Field(default=22344, ge=1, le=65535)
    """UDP port (bound with SO_REUSEADDR: several JETDRIVE nodes can share a PC)."""
    interface: str = "0.0.0.0"
    """IPv4 address of the interface to join the group on; 0.0.0.0 = chosen by the routing table."""
    host_id: int = Field(default=0, ge=0, le=0xFFFE)
    """Our JETDRIVE host id for Ping/RequestChannelInfo; 0 = random at start."""
    ping_interval_s: float = Field(default=5.0, gt=0)
    """How often each provider is pinged to measure its clock offset."""
    hold_max: int = Field(default=1000, ge=1)
    """Values held per provider while their channel is unknown; beyond this the oldest are dropped."""
    hold_s: float = Field(default=5.0, ge=0)
    """Held values still unknown after this long are dropped (and counted)."""
    aliases: dict[str, JetDriveAlias] = Field(default_factory=lambda: dict(DEFAULT_JETDRIVE_ALIASES))
    """Provider channel name (any case) -> canonical channel and the unit it must have, as JSON."""


class MtsAuxSettings(Section):
    """Linear scaling of one Innovate MTS aux channel: raw 0..1023 maps onto ``min``..``max``."""

    name: str | None = None
    """Channel name; default ``aux_<n>`` (n counts aux channels in packet order, from 1)."""
    min: float = 0.0
    max: float = 5.0
    unit: str = "V"


class AfrSerialSettings(Section):
    url: str = "/dev/afr0"
    """pyserial URL of the Innovate MTS serial port (/dev/ttyUSB0, socket://host:port, ...)."""
    baudrate: int = 19200
    """MTS runs at 19200 baud, 8N1."""
    device: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_LEN)
    """Device name of the whole daisy chain; default ``mts-<port name>``."""
    lambda_names: list[str] = Field(default_factory=list)
    """Names of the lambda/AFR channels in packet order (farthest device first, the one nearest
    the host last); channels beyond the list are ``afr_<n>``. JSON list in the environment."""
    aux: list[MtsAuxSettings] = Field(default_factory=list)
    """Scaling of the aux channels in packet order; channels beyond the list are 0-5 V ``aux_<n>``.
    JSON list in the environment: ``[{"name": "egt_1", "min": 0, "max": 1000, "unit": "degC"}]``."""


class ScalesSettings(Section):
    config: Path | None = None
    """JSON file listing the scales (url, format, device name) served by this process."""
    open_workers: int = Field(default=16, ge=1, le=256)
    """Threads opening and reopening scale connections, so a dead TCP server never blocks reading."""
    reconnect_max_s: float = Field(default=30.0, gt=0)
    """Cap of the per-scale reconnect backoff."""


class CanSettings(Section):
    """The ``can`` source (producers/can): a live bus through python-can, or a log file replayed."""

    interface: str = "socketcan"
    """python-can interface of the live bus (socketcan, pcan, kvaser, slcan, virtual ...); unused with LOG_FILE."""
    channel: str = "can0"
    """python-can channel of the live bus (``can0``, ``vcan0``, ``PCAN_USBBUS1``); also the device name."""
    bitrate: int | None = Field(default=None, gt=0)
    """Bit rate for interfaces that set it (pcan, kvaser, slcan); None = as configured (SocketCAN: ``ip link``)."""
    log_file: Path | None = None
    """Replay this log (candump ``.log``, ``.asc``, ``.blf``, ... as ``can.LogReader`` reads it) instead of a bus."""
    replay_speed: float = Field(default=0.0, ge=0)
    """Replay pacing: 1.0 = real time, 2.0 = twice as fast, 0 = as fast as possible."""
    log_time: Literal["shift", "keep"] = "shift"
    """Replay time stamps: ``shift`` = the first message is observed at replay start, intervals kept
    (logs stamped with boot time, or older than the writer's partitions); ``keep`` = the log's own epoch time."""
    replay_start: datetime | None = None
    """With LOG_TIME=shift: the time the log's first message is observed at (ISO 8601 with zone); None = now."""
    log_channels: list[str] = Field(default_factory=list)
    """With LOG_FILE: replay only these buses, as JSON (``["can1"]``: a candump interface; an MF4 bus
    channel n is ``can{n}``); the other buses' messages are counted (``other_bus``), not decoded. Empty = all."""
    dbc: dict[str, list[Path]] = Field(default_factory=dict)
    """Bus name (the interface channel, or the log's channel such as ``can1``; ``*`` = every bus) ->
    DBC files decoding it, as JSON: ``{"can0": ["/etc/telemetry/pt.dbc"], "*": ["obd2.dbc"]}``."""
    dbc_strict: bool = False
    """cantools ``strict``: refuse DBCs with overlapping signals (opendbc's Toyota DBC has one)."""
    checksum: dict[str, Literal["toyota"]] = Field(default_factory=dict)
    """Bus name (or ``*``) -> checksum scheme of its messages that have a CHECKSUM signal, as JSON."""
    isotp_obd: bool = True
    """Reassemble ISO-TP answers on 0x7E8-0x7EF: VIN (service 09 PID 02) and stored trouble codes (service 03)."""
    min_interval_s: dict[str, float] = Field(default_factory=dict)
    """Message name (or ``*``) -> least seconds between two published frames of it; the rest are counted."""
    deadband: dict[str, float] = Field(default_factory=dict)
    """Channel name (or ``*``) -> change below which a message is not published again (counted);
    a message is published when any channel moved by more, or after MAX_SILENCE_S."""
    max_silence_s: float = Field(default=1.0, gt=0)
    """A message held back by DEADBAND is still published this often."""
    mapping: Path | None = None
    """JSON file: ``{"SPEED.SPEED": {"channel": "speed", "unit": "km/h", "priority": "high"}}``
    (``MESSAGE.SIGNAL`` -> channel name, unit, priority of the message's frame); see README "CAN bus"."""
    only_mapped: bool = False
    """Publish only the signals listed in MAPPING (else every DBC signal, mapped or not)."""
    device: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_LEN)
    """Device name; default the bus name (CHANNEL, or each log message's channel)."""

    @field_validator("replay_start")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.utcoffset() is None:
            raise ValueError("needs a time zone (2026-01-01T00:00:00+00:00)")
        return value


class FileImportSettings(Section):
    queue: str = "imports"
    """rq queue name, of ``telemetry-admin import`` and ``telemetry-import-worker``."""
    chunk_rows: int = Field(default=1000, ge=1)
    """Frames published per pipeline (and between progress/back-pressure checks)."""
    max_backlog: int = Field(default=200_000, ge=0)
    """Pause while the writer group has more unread bulk entries than this; 0 = never pause."""
    max_rows_per_s: float = Field(default=0.0, ge=0)
    """Rate cap of one import; 0 = no cap (back-pressure only)."""
    bad_rows_kept: int = Field(default=100, ge=0)
    """Bad rows listed (with line numbers) in the job result; all are counted."""
    job_timeout_s: int = Field(default=86_400, ge=1)
    """rq job timeout (the worker kills a longer import; re-running it creates no duplicates)."""
    result_ttl_s: int = Field(default=7 * 86_400, ge=1)
    """How long rq keeps a finished or failed import's result and progress."""


class RunRule(Section):
    """Automatic runs (telemetry-runs): a channel above ``start_above`` for ``start_for_s`` starts a run
    at the first frame above; below ``stop_below`` for ``stop_for_s`` ends it at the first frame below."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$")
    """Rule name, also the base name of its runs ("pull", "pull 2", ...)."""
    channel: str = Field(min_length=1, max_length=MAX_NAME_LEN)
    """Channel evaluated (exact name as stored, e.g. "rpm": JetDrive's "Engine RPM" after the default
    dyno_udp aliases), in the frame's own unit."""
    start_above: float
    stop_below: float
    start_for_s: float = Field(default=1.0, ge=0, le=3600)
    stop_for_s: float = Field(default=2.0, ge=0, le=3600)
    device: str = "*"
    """Devices the rule applies to (fnmatch pattern); one run per device."""
    kind: str = Field(default="run", pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    stable_within: float | None = Field(default=None, gt=0)
    """Also require the value to stay within +- this of where it crossed (a stable weight starts a weighing)."""

    @model_validator(mode="after")
    def _hysteresis(self) -> RunRule:
        if self.stop_below > self.start_above:
            raise ValueError(f"rule {self.name!r}: stop_below must not exceed start_above")
        return self


class RunsSettings(Section):
    rules: list[RunRule] = []
    """JSON list of rules, e.g. [{"name": "pull", "kind": "dyno", "channel": "rpm",
    "start_above": 2000, "start_for_s": 1, "stop_below": 1500, "stop_for_s": 2}]; optional keys
    "device" (fnmatch pattern, default "*") and "stable_within" (see README, Runs)."""
    priorities: list[str] = ["critical", "high", "normal", "low"]
    """Priority streams the detector reads (bulk = file imports, which become runs of their own)."""
    batch: int = Field(default=500, ge=1, le=10_000)
    """Entries read per XREADGROUP."""
    block_ms: int = Field(default=1000, ge=10, le=60_000)
    """How long one read waits for new entries (also the pace of summarising closed runs)."""

    @field_validator("priorities")
    @classmethod
    def _known_priorities(cls, value: list[str]) -> list[str]:
        known = {p.value for p in Priority}
        bad = [p for p in value if p not in known]
        if bad or not value:
            raise ValueError(f"priorities must be some of {sorted(known)}, got {value}")
        return value


class Settings(BaseSettings):
    """Every setting of every process; each process reads the sections it needs."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        frozen=True,
        use_attribute_docstrings=True,
    )

    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    """DEBUG, INFO, WARNING or ERROR."""
    redis: RedisSettings = RedisSettings()
    postgres: PostgresSettings = PostgresSettings()
    writer: WriterSettings = WriterSettings()
    archive: ArchiveSettings = ArchiveSettings()
    producer: ProducerSettings = ProducerSettings()
    simulate: SimulateSettings = SimulateSettings()
    jsonl: JsonlSettings = JsonlSettings()
    gps_nmea: GpsNmeaSettings = GpsNmeaSettings()
    obd: ObdSettings = ObdSettings()
    dyno_udp: DynoUdpSettings = DynoUdpSettings()
    afr_serial: AfrSerialSettings = AfrSerialSettings()
    scales: ScalesSettings = ScalesSettings()
    can: CanSettings = CanSettings()
    file_import: FileImportSettings = FileImportSettings()
    http: HttpSettings = HttpSettings()
    staleness: StalenessSettings = StalenessSettings()
    runs: RunsSettings = RunsSettings()


class SettingField(NamedTuple):
    """One setting as the environment sees it."""

    env: str
    """Its variable: ``TELEMETRY_<SECTION>__<NAME>``."""
    info: FieldInfo
    section: str
    """The variable prefix of its section (``TELEMETRY_HTTP``); empty for a top-level field."""


def settings_fields(
    model: type[BaseModel] = Settings, prefix: str = ENV_PREFIX, section: str = ""
) -> Iterator[SettingField]:
    """Every setting, depth first in declaration order: the one walk over the settings tree (the
    unknown-variable check, the README table and deploy/telemetry.env.example all read it)."""
    for name, info in model.model_fields.items():
        ann = info.annotation
        env = prefix + name.upper()
        if isinstance(ann, type) and issubclass(ann, BaseModel) and name != "ranges":
            yield from settings_fields(ann, env + "__", env)
        else:
            yield SettingField(env, info, section)


def env_names() -> dict[str, Any]:
    """Every environment variable name the settings accept, mapped to its default."""
    return {f.env: f.info.get_default(call_default_factory=True) for f in settings_fields()}


def _check_unknown(environ: dict[str, str]) -> None:
    known = env_names()
    for key in environ:
        if not key.startswith(ENV_PREFIX) or key.startswith(_IGNORED_PREFIXES) or key in known:
            continue
        if key.startswith(ENV_PREFIX + "PRODUCER__RANGES"):
            continue
        hint = difflib.get_close_matches(key, known, n=1)
        extra = f" (did you mean {hint[0]}?)" if hint else ""
        raise ConfigError(f"unknown setting {key}{extra}")


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment; raise ConfigError naming the bad variable."""
    _check_unknown(dict(os.environ))
    try:
        return Settings(**overrides)
    except SettingsError as exc:  # a complex value (JSON) that does not parse
        raise ConfigError(_bad_json(dict(os.environ), str(exc))) from None
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [str(p) for p in err["loc"] if not isinstance(p, int)]
            var = ENV_PREFIX + "__".join(loc).upper()
            problems.append(f"{var}: {err['msg']}")
        raise ConfigError("invalid settings: " + "; ".join(problems)) from None


def _bad_json(env: dict[str, str], fallback: str) -> str:
    """Name the variable whose JSON value does not parse (pydantic-settings names only the section)."""
    match = re.search(r'field "(\w+)"', fallback)
    if match:
        section = f"{ENV_PREFIX}{match.group(1)}".upper()
        fields = {f.env: f for f in settings_fields() if f.section == section}
        for key in sorted(k for k in env if k.upper() in fields):
            if not _is_complex(fields[key.upper()].info.annotation):
                continue
            try:
                json.loads(env[key])
            except ValueError as exc:
                return f"{key.upper()}: not valid JSON: {exc}"
    return f"invalid settings: {fallback}"


def _is_complex(annotation: Any) -> bool:
    """Whether pydantic-settings reads this field from the environment as JSON."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_complex(a) for a in typing.get_args(annotation) if a is not type(None))
    if origin is typing.Annotated:
        return _is_complex(typing.get_args(annotation)[0])
    if origin in (dict, list, tuple, set, frozenset):
        return True
    return isinstance(annotation, type) and issubclass(annotation, (BaseModel, dict, list, tuple, set))
