"""Staleness rules from the settings to rows (pure): shell patterns as LIKE patterns, timeouts."""

from __future__ import annotations

import pytest

from common.errors import ConfigError
from common.settings import StalenessSettings, load_settings
from writer.staleness import like_pattern, rule_rows


def test_like_pattern_escapes_like_wildcards() -> None:
    assert like_pattern("*") == "%"
    assert like_pattern("afr_?") == "afr\\__"
    assert like_pattern("100%*") == "100\\%%"
    assert like_pattern("a\\b") == "a\\\\b"


def test_rule_rows() -> None:
    st = StalenessSettings.model_validate(
        {"rules": [{"channel": "vin", "timeout": "never"}, {"source": "obd", "timeout": 2.5}, {"timeout": "auto"}],
         "auto_factor": 4, "auto_min_s": 1}
    )  # fmt: skip
    assert rule_rows(st) == [
        (1, "%", "vin", None, None, 1.0),
        (2, "obd", "%", 2.5, None, 1.0),
        (3, "%", "%", None, 4.0, 1.0),
    ]
    assert rule_rows(StalenessSettings()) == [(1, "%", "%", None, 3.0, 5.0)]  # default: auto for every channel


def test_bad_rules_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEMETRY_STALENESS__RULES", '[{"timeout": -1}]')
    with pytest.raises(ConfigError, match="TELEMETRY_STALENESS__RULES"):
        load_settings(_env_file=None)
    monkeypatch.setenv("TELEMETRY_STALENESS__RULES", '[{"timeout": "sometimes"}]')
    with pytest.raises(ConfigError, match="TELEMETRY_STALENESS__RULES"):
        load_settings(_env_file=None)
