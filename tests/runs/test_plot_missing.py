"""Without matplotlib (the optional ``plot`` extra), a plot is a clear configuration error, not a traceback."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import pytest

from common.errors import ConfigError
from runs.plot import plot_dyno


def test_plot_without_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = builtins.__import__

    def no_matplotlib(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.split(".")[0] == "matplotlib":
            raise ImportError("No module named 'matplotlib'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ConfigError, match=r"edge-telemetry\[plot\]"):
        plot_dyno([], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
