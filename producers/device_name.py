"""The one rule naming a device from its pyserial URL when no device name is configured.

``device_from_url("/dev/ttyUSB0", "gps")`` -> ``ttyUSB0``; ``socket://10.0.0.5:35000`` ->
``10.0.0.5:35000``; a URL without a path (``loop://``) -> the fallback. Every serial source
(gps_nmea, obd, afr_serial) uses it; a ``TELEMETRY_<SOURCE>__DEVICE`` setting always wins. Pure.
"""

from __future__ import annotations


def device_from_url(url: str, fallback: str, prefix: str = "") -> str:
    """``prefix`` + the last path part of ``url`` after its scheme, or ``prefix + fallback`` if empty."""
    tail = url.split("://", 1)[-1].rstrip("/")
    return prefix + (tail.rsplit("/", 1)[-1] or fallback)
