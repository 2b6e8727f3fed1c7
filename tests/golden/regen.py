"""``python -m tests.golden.regen [SOURCE [CASE]]``: rewrite the golden cases' expected.jsonl (.gz if large).

Runs each case's adapter on its input and writes what it produces. Review the ``git diff`` of the
expected files before committing: a regenerated file is only as right as the code that wrote it.
"""

from __future__ import annotations

import argparse
import sys

from tests.golden.adapters import ADAPTERS, produce
from tests.golden.cases import SHARED_DATA, discover, dumps, project, write_expected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.golden.regen", description=__doc__)
    parser.add_argument("source", nargs="?", help="only this source's cases")
    parser.add_argument("case", nargs="?", help="only this case of SOURCE")
    args = parser.parse_args(argv)
    cases = discover(args.source, args.case)
    if not cases:
        print(f"no golden case matches {args.source or '*'}/{args.case or '*'}", file=sys.stderr)
        return 2
    for case in cases:
        adapter = ADAPTERS[case.source]
        lines = [project(item, adapter.volatile) for item in produce(case, SHARED_DATA)]
        body = dumps(lines)
        state = write_expected(case, body)
        path = case.expected_path
        print(f"{case.id}: {len(lines)} lines, {len(body)} bytes, {path.name} {path.stat().st_size} bytes, {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
