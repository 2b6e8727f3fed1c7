"""Documentation that must match the code."""

from __future__ import annotations

import re

from common.settings_doc import reference_markdown
from tests.conftest import REPO


def test_readme_configuration_reference_matches_the_settings() -> None:
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- settings:begin -->\n(.*?)<!-- settings:end -->", readme, re.S)
    assert block, "README lost its settings markers"
    assert block.group(1) == reference_markdown(), (
        "README configuration reference is stale: regenerate it with `python -m common.settings_doc`"
    )


def test_every_setting_has_a_meaning() -> None:
    undocumented = [line for line in reference_markdown().splitlines() if line.endswith("|  |")]
    assert undocumented == []
