"""SourceSpec: how one source is wired (its name, its settings section, its factory).

Each source declares one ``SPEC = SourceSpec(...)`` next to its ``from_settings`` (in its own
module or folder); ``producers/registry.py`` lists them. This module holds only the type, so a
source can import it without importing the registry (no cycle). It does not open anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from common.schema import SOURCE_NAME
from common.settings import Settings
from producers.base import Source


@dataclass(frozen=True)
class SourceSpec:
    """One live source of ``telemetry-produce <name>``.

    * ``name``: the CLI argument and the frames' ``src``; the form the writer accepts
      (``common.schema.SOURCE_NAME``), checked here so a bad name fails at import, not in the writer.
    * ``section``: the attribute of ``common.settings.Settings`` holding this source's
      ``TELEMETRY_<SECTION>__*`` settings, or None for a source without settings of its own.
      The sections stay in ``common/settings.py``: ``common`` must not import ``producers``.
    * ``factory``: builds the source from the settings. A heavy or optional dependency
      (python-OBD) is imported when the factory runs, not when the spec is imported.
    * ``summary``: one line for ``telemetry-produce --help``.
    """

    name: str
    section: str | None
    factory: Callable[[Settings], Source]
    summary: str

    def __post_init__(self) -> None:
        if not SOURCE_NAME.fullmatch(self.name):
            raise ValueError(f"source name {self.name!r} does not match {SOURCE_NAME.pattern}")
        if self.section is not None and self.section not in Settings.model_fields:
            raise ValueError(f"source {self.name!r}: Settings has no section {self.section!r}")
