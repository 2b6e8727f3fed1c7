"""Settings: env prefix, nested sections, *_FILE secrets, errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.errors import ConfigError
from common.settings import env_names, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("TELEMETRY_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_nested_sections_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEMETRY_REDIS__URL", "redis://redis:6379/2")
    monkeypatch.setenv("TELEMETRY_WRITER__BATCH_MAX_ROWS", "500")
    s = load_settings()
    assert s.redis.url == "redis://redis:6379/2"
    assert s.writer.batch_max_rows == 500
    assert s.redis.names.namespace == "telemetry"


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TELEMETRY_WRITER__BATCH_MAX_AGE_MS=75\n")
    assert load_settings().writer.batch_max_age_ms == 75


def test_secret_from_file_is_loaded_and_not_shown(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "pg_password"
    secret.write_text("s3cr3t-value\n")
    monkeypatch.setenv("TELEMETRY_POSTGRES__PASSWORD_FILE", str(secret))
    s = load_settings()
    assert s.postgres.password is not None
    assert s.postgres.password.get_secret_value() == "s3cr3t-value"
    assert "s3cr3t" not in repr(s) and "s3cr3t" not in str(s.model_dump())


def test_missing_secret_file_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEMETRY_REDIS__PASSWORD_FILE", "/nonexistent/secret")
    with pytest.raises(ConfigError, match=r"TELEMETRY_REDIS: .*cannot read secret file"):
        load_settings()


@pytest.mark.parametrize(
    ("var", "value", "named"),
    [
        ("TELEMETRY_WRITER__BATCH_MAX_ROWS", "lots", "TELEMETRY_WRITER__BATCH_MAX_ROWS"),
        ("TELEMETRY_WRITER__BATCH_MAX_ROWS", "0", "TELEMETRY_WRITER__BATCH_MAX_ROWS"),
        ("TELEMETRY_REDIS__URL", "http://nope", "TELEMETRY_REDIS__URL"),
        ("TELEMETRY_REDIS__NAMESPACE", "a}b", "TELEMETRY_REDIS__NAMESPACE"),
        ("TELEMETRY_POSTGRES__SCHEMA_NAME", "x; DROP", "TELEMETRY_POSTGRES__SCHEMA_NAME"),
        ("TELEMETRY_LOG_LEVEL", "LOUD", "TELEMETRY_LOG_LEVEL"),
    ],
)
def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, var: str, value: str, named: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=named):
        load_settings()


def test_unknown_variable_is_an_error_with_a_suggestion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEMETRY_WRITER__BATCH_MAX_ROW", "10")
    with pytest.raises(ConfigError, match="did you mean TELEMETRY_WRITER__BATCH_MAX_ROWS"):
        load_settings()


def test_env_names_lists_every_setting() -> None:
    names = env_names()
    assert "TELEMETRY_REDIS__URL" in names and "TELEMETRY_WRITER__CLAIM_IDLE_MS" in names
    assert names["TELEMETRY_WRITER__BATCH_MAX_ROWS"] == 20_000


@pytest.mark.parametrize(
    ("var", "value", "why"),
    [
        ("TELEMETRY_PRODUCER__RANGES", "{bad", "not valid JSON"),
        ("TELEMETRY_OBD__PIDS", "{'RPM': 1}", "not valid JSON"),
        ("TELEMETRY_OBD__PIDS", "[1, 2]", "valid dictionary"),
    ],
)
def test_a_bad_json_setting_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, why: str
) -> None:
    """Issue 10.7: malformed JSON gave a 40-line pydantic-settings traceback naming only the section."""
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as err:
        load_settings(_env_file=None)
    assert str(err.value).count("\n") == 0 and var in str(err.value) and why in str(err.value), err.value


def test_one_walk_feeds_the_check_the_readme_and_the_env_example() -> None:
    """The unknown-variable check, the README table and the env example list the same variables,
    all from ``settings_fields`` (a section added to Settings reaches all three at once)."""
    import re

    from common.settings import settings_fields
    from common.settings_doc import env_example, reference_markdown

    walked = [f.env for f in settings_fields()]
    assert len(walked) == len(set(walked)) and set(walked) == set(env_names())
    assert re.findall(r"^\| `(TELEMETRY_\w+)`", reference_markdown(), re.M) == walked
    assert re.findall(r"^#(TELEMETRY_\w+)=", env_example(), re.M) == walked
    http = [f for f in settings_fields() if f.section == "TELEMETRY_HTTP"]
    assert [f.env for f in http][:2] == ["TELEMETRY_HTTP__ENABLED", "TELEMETRY_HTTP__HOST"]
