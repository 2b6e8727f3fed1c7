"""``python -m admin.layers``: check the import layers of the repository with ``ast``.

The rules (issue 16): ``common`` imports none of the other packages; ``producers`` imports
neither ``writer`` nor ``admin``; ``writer`` imports neither ``producers`` nor ``admin``;
``admin`` imports ``writer`` and ``common`` but not ``producers``; ``runs`` (issue 17) imports
neither ``producers`` nor ``admin``. Every import counts, also one
inside a function, and so does ``importlib.import_module("<package>...")`` with a literal name.
Prints each breach as ``path:line: package -> forbidden`` and exits 1 if there is one, else
prints a one-line summary and exits 0. It reads source files only; it imports nothing of them.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN: dict[str, frozenset[str]] = {
    "common": frozenset({"producers", "writer", "admin"}),
    "producers": frozenset({"writer", "admin"}),
    "writer": frozenset({"producers", "admin"}),
    "admin": frozenset({"producers"}),
    "runs": frozenset({"producers", "admin"}),
}
"""Package -> the top-level packages it may not import."""


@dataclass(frozen=True)
class Breach:
    path: Path
    line: int
    package: str
    imported: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.package} -> {self.imported}"


def imported_names(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, dotted module name) of every absolute import in ``tree`` (relative ones stay inside)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def check_source(text: str, path: Path, package: str) -> list[Breach]:
    """The breaches of one module's source ``text`` belonging to ``package``."""
    banned = FORBIDDEN[package]
    out = []
    for line, name in imported_names(ast.parse(text, filename=str(path))):
        top = name.split(".", 1)[0]
        if top in banned:
            out.append(Breach(path, line, package, name))
    return out


def check_tree(root: Path = ROOT) -> tuple[list[Breach], int]:
    """Every breach under ``root``'s packages, and how many modules were read."""
    breaches: list[Breach] = []
    modules = 0
    for package in FORBIDDEN:
        for path in sorted((root / package).rglob("*.py")):
            modules += 1
            breaches += check_source(path.read_text(encoding="utf-8"), path.relative_to(root), package)
    return breaches, modules


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m admin.layers", description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    breaches, modules = check_tree(args.root)
    for breach in breaches:
        print(breach)
    if breaches:
        print(f"{len(breaches)} import(s) across layers in {modules} modules", file=sys.stderr)
        return 1
    rules = "; ".join(f"{p} !-> {','.join(sorted(b))}" for p, b in FORBIDDEN.items())
    print(f"layers ok: {modules} modules ({rules})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
