"""The typed source registry (issue 16.1): every source is wired in one place, and a new one is
one folder plus one registry line.

The dummy source is written into a temporary package folder (not part of the repo) and added
with one line, exactly as README "Adding a source" describes; its frames then go through
``telemetry-produce``'s parser and ``produce()`` into (fake) Redis.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import fakeredis
import orjson
import pytest

from common.schema import SOURCE_NAME, Priority
from common.settings import RedisSettings, Settings
from producers import cli, registry
from producers.source_spec import SourceSpec

DUMMY = '''
"""dummy: a test source emitting ``count`` frames of one channel (synthetic)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from common.errors import ParseError
from common.schema import Channel, Frame
from common.settings import Settings
from producers.source_spec import SourceSpec


class DummySource:
    source = "dummy"

    def __init__(self, count: int) -> None:
        self.count, self.sent = count, 0

    @property
    def exhausted(self) -> bool:
        return self.sent >= self.count

    def open(self) -> None:
        pass

    def read(self, timeout: float) -> Sequence[Frame | ParseError]:
        now = datetime.now(UTC)
        frames = [Frame("dummy", "dummy-0", now, now, float(i), (Channel("level", float(i), "%"),))
                  for i in range(self.sent, self.count)]
        self.sent = self.count
        return frames

    def close(self) -> None:
        pass


def from_settings(s: Settings) -> DummySource:
    return DummySource(s.simulate.count or 3)


SPEC = SourceSpec("dummy", None, from_settings, "a test source")
'''


@pytest.fixture
def with_dummy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SourceSpec:
    """The dummy source's folder in a temporary package, plus its one registry line."""
    folder = tmp_path / "extra_sources" / "dummy"
    folder.mkdir(parents=True)
    (tmp_path / "extra_sources" / "__init__.py").write_text("")
    (folder / "__init__.py").write_text(textwrap.dedent(DUMMY))
    monkeypatch.syspath_prepend(str(tmp_path))
    from extra_sources import dummy  # type: ignore[import-not-found]

    monkeypatch.setattr(registry, "SOURCES", (*registry.SOURCES, dummy.SPEC))  # the one line
    spec: SourceSpec = dummy.SPEC
    return spec


def test_every_registered_source_has_a_settings_section_and_a_factory() -> None:
    specs = registry.by_name()
    assert set(specs) == {"simulate", "jsonl", "gps_nmea", "obd", "dyno_udp", "afr_serial", "scales", "can"}
    for name, spec in specs.items():
        assert SOURCE_NAME.fullmatch(name)
        assert spec.section is not None and spec.section in Settings.model_fields, name
        assert callable(spec.factory) and spec.summary, name


def test_the_factories_build_their_sources_from_default_settings() -> None:
    """Each factory returns a source whose ``source`` is its registry name (no device opened)."""
    settings = Settings()
    for name, spec in registry.by_name().items():
        if name == "scales":
            continue  # needs its JSON config file (TELEMETRY_SCALES__CONFIG); tests/producers/test_scales.py
        assert spec.factory(settings).source == name


def test_a_spec_refuses_a_name_the_writer_would_refuse_and_an_unknown_section() -> None:
    with pytest.raises(ValueError, match="does not match"):
        SourceSpec("Bad-Name", None, registry.by_name()["simulate"].factory, "x")
    with pytest.raises(ValueError, match="no section"):
        SourceSpec("fine", "no_such_section", registry.by_name()["simulate"].factory, "x")


def test_a_name_registered_twice_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "SOURCES", (*registry.SOURCES, registry.SOURCES[0]))
    with pytest.raises(ValueError, match="registered twice"):
        registry.by_name()


def test_the_parser_lists_the_registry_and_refuses_others(capsys: pytest.CaptureFixture[str]) -> None:
    parser = cli.build_parser()
    assert parser.parse_args(["obd"]).source == "obd"
    with pytest.raises(SystemExit):
        parser.parse_args(["dummy"])
    assert "invalid choice: 'dummy'" in capsys.readouterr().err
    assert all(name in parser.format_help() for name in registry.by_name())


def test_a_dummy_source_is_one_folder_and_one_registry_line(
    with_dummy: SourceSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli.build_parser().parse_args(["dummy"]).source == "dummy"
    redis = fakeredis.FakeRedis()
    monkeypatch.setattr(cli, "connect_redis", lambda _settings: redis)
    settings = Settings(redis=RedisSettings(namespace="reg"), http={"enabled": False}, simulate={"count": 4})
    stats = cli.produce("dummy", settings, threading.Event())
    assert stats.frames_published == 4 and stats.frames_unsent == 0
    entries = redis.xrange(settings.redis.names.stream(Priority.NORMAL))
    assert [e[b"src"] for _, e in entries] == [b"dummy"] * 4
    assert [orjson.loads(e[b"ch"])[0][1] for _, e in entries] == [0.0, 1.0, 2.0, 3.0]


def test_simulate_does_not_import_python_obd() -> None:
    """python-OBD (GPL-2.0-only, an optional extra) is loaded only when the obd factory runs."""
    code = (
        "import sys; from producers import cli; cli.build_parser().parse_args(['simulate']); "
        "from producers import registry; registry.by_name()['simulate'].factory(__import__('common.settings')"
        ".settings.Settings()); print('obd' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"
    code = "import sys; from producers.registry import by_name; from common.settings import Settings; "
    code += "by_name()['obd'].factory(Settings()); print('obd' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "True"  # the check above can fail


def test_the_readme_documents_every_registered_source() -> None:
    from tests.conftest import REPO

    readme = (REPO / "README.md").read_text()
    for name in registry.by_name():
        assert f"\n### {name}" in readme, f"README has no '### {name}' section under Sources"
