"""The result of one ``telemetry-admin validate`` check, and the runner that turns a crash into one.

A check is a function of the settings returning one or more ``Check`` results. ``run_check`` calls
it and turns an unexpected exception into a failed environment check with a one-line reason, so a
broken check never hides the others. Pure apart from calling the check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from common.settings import Settings


class Status(StrEnum):
    OK = "ok"
    FAIL = "FAIL"
    SKIP = "skip"


class Kind(StrEnum):
    """What a failure means: the settings are wrong (CONFIG) or the machine is (ENVIRONMENT)."""

    CONFIG = "config"
    ENVIRONMENT = "environment"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    kind: Kind = Kind.ENVIRONMENT

    def line(self) -> str:
        return f"{self.status.value:<4}  {self.name:<22} {self.detail}"


def ok(name: str, detail: str) -> Check:
    return Check(name, Status.OK, detail)


def fail(name: str, detail: str, kind: Kind = Kind.ENVIRONMENT) -> Check:
    return Check(name, Status.FAIL, detail, kind)


def skip(name: str, detail: str) -> Check:
    return Check(name, Status.SKIP, detail)


CheckFn = Callable[[Settings], Check | Iterable[Check]]


def run_check(name: str, fn: CheckFn, settings: Settings) -> list[Check]:
    try:
        result = fn(settings)
    except Exception as exc:  # one broken check must not hide the others
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return [fail(name, f"{type(exc).__name__}: {first}"[:300])]
    return [result] if isinstance(result, Check) else list(result)


EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_ENVIRONMENT = 3


def exit_code(results: Iterable[Check]) -> int:
    """0 all good; 2 if any configuration check failed; else 3 if any environment check failed."""
    failed = {r.kind for r in results if r.status is Status.FAIL}
    if Kind.CONFIG in failed:
        return EXIT_CONFIG
    return EXIT_ENVIRONMENT if failed else EXIT_OK
