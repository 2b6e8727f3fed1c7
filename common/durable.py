"""Durable file steps shared by the producers' spool and the writer's cold tier.

Only ``fsync_path``: flush a file's or a directory's contents to disk (after a write, or a
rename inside the directory). Does not write or rename anything itself.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: Path) -> None:
    """fsync the file or directory ``path`` (a directory: so a rename in it survives a power cut)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
