"""The status view renders text from the network literally (issue 13.5): producer ids and
dead-letter reasons are never Rich markup, and control characters are shown escaped."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from admin.status import render

HOSTILE = ["pump[/x]/1", "[link=https://evil.example]click[/link]", "[bold red]fake alarm", "esc\x1b[2Jcleared"]


def snapshot(names: list[str]) -> dict[str, Any]:
    return {
        "namespace": "t",
        "priorities": [{"priority": "normal", "length": 1, "lag": 0, "pending": 0}],
        "writers": [{"name": names[0], "pending": 0, "idle_ms": 5}],
        "producers": {
            "missing_total": 1,
            "recent": [{"producer": n, "source": "jsonl", "age_s": 1.0, "frames": 3, "missing": 1} for n in names],
            "gaps": [{"producer": n, "source": "jsonl", "missing": 1, "max_seq": 4} for n in names],
        },
        "deadletter": {
            "length": len(names),
            "recent": [{"id": "1-0", "reason": n, "stream": "{t}:normal", "error": n} for n in names],
        },
    }


def test_hostile_names_render_escaped_and_literal() -> None:
    console = Console(record=True, width=300, file=io.StringIO(), color_system="truecolor")
    console.print(render(snapshot(HOSTILE)))  # "pump[/x]/1" raised MarkupError before
    text = console.export_text()
    assert "pump[/x]/1" in text
    assert "[link=https://evil.example]click[/link]" in text and "[bold red]fake alarm" in text
    assert "esc\\x1b[2Jcleared" in text and "\x1b[2J" not in console.export_text(styles=True)
    assert "evil.example" not in "".join(s.style.link or "" for s in console._record_buffer if s.style)
