"""Shared by every process: the frame schema, Redis names, settings and small helpers.

Nothing in this package imports from ``producers`` or ``writer``.
"""

from common.schema import Channel, Frame, Priority, Quality
from common.settings import Settings, load_settings

__all__ = ["Channel", "Frame", "Priority", "Quality", "Settings", "load_settings"]
