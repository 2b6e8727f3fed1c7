"""The registry of live sources: one line per source, each pointing at the ``SPEC`` of its folder.

``telemetry-produce``'s choices, its ``--help`` and the docs test read ``SOURCES``; nothing else
lists source names. Adding a source is its folder (or module) with a ``SPEC`` plus one line below;
its settings section is a field of ``common.settings.Settings`` named by ``SPEC.section``.

Importing this module imports every source's module but no optional dependency: python-OBD is
loaded only when the ``obd`` factory runs. ``file_import`` is not here: it is an rq job fed by
``telemetry-admin import``, not a process of ``telemetry-produce``. The writer does not read this
list: it checks a source name's form (``common.schema.SOURCE_NAME``), so a new source needs no
writer upgrade.
"""

from __future__ import annotations

from producers import afr_serial, can, dyno_udp, gps_nmea, jsonl, obd, scales, simulate
from producers.source_spec import SourceSpec

SOURCES: tuple[SourceSpec, ...] = (
    simulate.SPEC,
    jsonl.SPEC,
    gps_nmea.SPEC,
    obd.SPEC,
    dyno_udp.SPEC,
    afr_serial.SPEC,
    scales.SPEC,
    can.SPEC,
)
"""Every source ``telemetry-produce`` can run, in the order ``--help`` shows them."""


def by_name() -> dict[str, SourceSpec]:
    """``SOURCES`` keyed by name (read at call time, so a test may extend ``SOURCES``)."""
    specs: dict[str, SourceSpec] = {}
    for spec in SOURCES:
        if spec.name in specs:
            raise ValueError(f"source {spec.name!r} registered twice")
        specs[spec.name] = spec
    return specs
