"""Host checks of ``telemetry-admin validate``: the spool folder, a source's device, its configuration.

The spool check writes and removes one small file in the folder (that is the question asked);
nothing else here writes. A device path must exist and be readable and writable; a
``socket://``/``rfc2217://`` URL must accept a TCP connection (closed at once, nothing sent).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from admin.checks import Check, Kind, fail, ok, skip
from common.settings import Settings

SERIAL_SOURCES = ("gps_nmea", "obd", "afr_serial")


def spool(s: Settings) -> Check:
    ps = s.producer
    if ps.spool_dir is None:
        return skip("spool", "TELEMETRY_PRODUCER__SPOOL_DIR not set: no spool (reading waits while Redis is down)")
    folder = Path(ps.spool_dir)
    if not folder.is_dir():
        return fail("spool", f"{folder} does not exist or is not a folder (TELEMETRY_PRODUCER__SPOOL_DIR)")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".validate-"):
            pass
    except OSError as exc:
        return fail("spool", f"{folder} is not writable by uid {os.getuid()}: {exc.strerror}")
    free = shutil.disk_usage(folder).free
    need = int(ps.spool_max_mb * 1024 * 1024)
    if free < need:
        return fail(
            "spool", f"{folder}: {free / 2**20:,.0f} MiB free < TELEMETRY_PRODUCER__SPOOL_MAX_MB={ps.spool_max_mb:g}"
        )
    return ok("spool", f"{folder} writable, {free / 2**20:,.0f} MiB free (spool may use {ps.spool_max_mb:g} MiB)")


def device_url(name: str, url: str, timeout_s: float = 2.0) -> Check:
    """One pyserial URL or path: present (a path) or accepting connections (a TCP URL)."""
    if url.startswith(("socket://", "rfc2217://")):
        parts = urlsplit(url)
        if not parts.hostname or not parts.port:
            return fail(name, f"{url}: need host:port", Kind.CONFIG)
        try:
            socket.create_connection((parts.hostname, parts.port), timeout=timeout_s).close()
        except OSError as exc:
            return fail(name, f"{url}: no TCP connection: {exc}")
        return ok(name, f"{url} accepts TCP connections")
    if "://" in url:
        return skip(name, f"{url}: not a path or a TCP URL; not checked")
    path = Path(url)
    if not path.exists():
        return fail(name, f"{url} does not exist (unplugged? udev rule? see deploy/udev)")
    if not os.access(path, os.R_OK | os.W_OK):
        return fail(name, f"{url} exists but uid {os.getuid()} cannot read and write it (group dialout?)")
    return ok(name, f"{url} present, readable and writable")


def device(s: Settings, source: str | None) -> list[Check]:
    if source is None:
        return [skip("device", "give --source to check a producer's device")]
    if source in SERIAL_SOURCES:
        return [device_url("device", getattr(s, source).url)]
    if source == "jsonl":
        path = s.jsonl.path
        if path == "-":
            return [skip("device", "jsonl reads stdin")]
        return [ok("device", f"{path} present") if Path(path).exists() else fail("device", f"{path} does not exist")]
    if source == "scales":
        return [
            skip("device", "scales: the devices are in the scales file; telemetry-produce scales --test opens them")
        ]
    return [skip("device", f"{source}: no device path to check")]


def source_config(s: Settings, source: str, timeout_s: float = 60.0) -> Check:
    """The source built from the settings as a run builds it (the scales file parsed and validated):
    ``telemetry-produce SOURCE --check-config`` in a child process, with this process's environment.
    A child, not an import: ``admin`` does not import ``producers`` (admin/layers.py)."""
    name = "scales config" if source == "scales" else "source config"
    cmd = [sys.executable, "-m", "producers.cli", source, "--check-config"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return fail(name, f"telemetry-produce {source} --check-config did not run: {exc}")
    lines = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
    detail = (lines[-1] if lines else f"exit {proc.returncode}").removeprefix("telemetry-produce: ")
    if proc.returncode == 0:
        return ok(name, detail)
    kind = Kind.CONFIG if proc.returncode == 2 else Kind.ENVIRONMENT
    return fail(name, detail[:300], kind)


def scales(s: Settings) -> Check:
    if s.scales.config is None:
        return skip("scales config", "TELEMETRY_SCALES__CONFIG not set")
    return source_config(s, "scales")
