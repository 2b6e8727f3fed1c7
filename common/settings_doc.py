"""The README's configuration reference, generated from the settings classes.

``python -m common.settings_doc`` prints the table and ``--update-readme`` rewrites it in
place; a test checks the README holds it, so documented defaults cannot drift from the code.
"""

from __future__ import annotations

from pydantic import BaseModel

from common.settings import ENV_PREFIX, Settings


def reference_markdown() -> str:
    """The configuration reference table for the README (``python -m common.settings``)."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            ann = info.annotation
            env = prefix + name.upper()
            if isinstance(ann, type) and issubclass(ann, BaseModel) and name != "ranges":
                walk(ann, env + "__")
                continue
            default = info.get_default(call_default_factory=True)
            if name == "ranges":
                shown = "see *Range validation*"
            elif default is None:
                shown = "(unset)"
            else:
                shown = "`" + str(default).replace("|", "\\|") + "`"
            doc = (info.description or "").replace("\n", " ").replace("|", "\\|")
            lines.append(f"| `{env}` | {shown} | {doc} |")

    walk(Settings, ENV_PREFIX)
    return "\n".join(lines) + "\n"


def update_readme(path: str = "README.md") -> None:
    """Rewrite the block between the settings markers of ``path``."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    begin, end = "<!-- settings:begin -->\n", "<!-- settings:end -->"
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(head + begin + reference_markdown() + end + tail)


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--update-readme"]:
        update_readme()
    else:
        print(reference_markdown(), end="")
