"""``pinotage doctor``: read-only checks of every link of the production loop.

Each area (configuration, registry, kubernetes, jenkins, github) is a module with one
``check(probe)`` generator that yields one ``Finding`` a check. A check reads and never writes:
the only requests that are not reads are the ones the services define as questions (a token
request to the registry's token service, a SelfSubjectAccessReview), which store nothing.

An area whose service cannot be reached raises ``Unreachable`` from its first check: the area
then shows as that one failing line, and its other checks are not tried.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import json
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from pipeline.errors import PinotageError

AREAS = ("config", "registry", "kubernetes", "jenkins", "github")


class Status(str, enum.Enum):
    OK = "ok"
    FAIL = "FAIL"
    SKIPPED = "skipped"


@dataclasses.dataclass(frozen=True)
class Finding:
    """What one check found."""

    area: str
    check: str
    status: Status
    detail: str
    hint: str = ""

    def to_json(self) -> dict[str, str]:
        return {"area": self.area, "check": self.check, "status": self.status.value,
                "detail": self.detail, "hint": self.hint}


class Unreachable(Exception):
    """An area's service does not answer, or refuses the credentials: its other checks cannot run."""

    def __init__(self, check: str, detail: str, hint: str = ""):
        super().__init__(detail)
        self.check, self.detail, self.hint = check, detail, hint


@dataclasses.dataclass(frozen=True)
class Probe:
    """What every area reads: the loaded configuration, the environment and the repository."""

    config: Any  # pipeline.config.Config
    environ: Mapping[str, str]
    root: Path

    def finding(self, area: str) -> Callable[..., Finding]:
        """Return a maker of this area's findings: ``found(check, status, detail, hint="")``."""
        return lambda check, status, detail, hint="": Finding(area, check, status, detail, hint)


def run(areas: Iterable[str], load_config: Callable[[], Any], environ: Mapping[str, str]) -> list[Finding]:
    """Load the configuration, then run each named area's checks in order; return every finding."""
    from pipeline.doctor import local

    config, findings = local.load(load_config)
    if config is None:
        return findings + [Finding(area, "area", Status.SKIPPED, "needs a configuration that loads")
                           for area in areas if area != "config"]
    probe = Probe(config, environ, Path(config.root))
    for area in areas:
        if area == "config":
            findings += [*findings_of(area, lambda: local.check(probe))]
            continue
        module = importlib.import_module(f"pipeline.doctor.{_MODULES[area]}")
        findings += [*findings_of(area, lambda: module.check(probe))]
    return findings


_MODULES = {"registry": "registry", "kubernetes": "kube", "jenkins": "jenkins", "github": "github"}


def findings_of(area: str, checks: Callable[[], Iterator[Finding]]) -> Iterator[Finding]:
    """Yield an area's findings; an unreachable service or an expected error ends the area in one line."""
    try:
        yield from checks()
    except Unreachable as e:
        yield Finding(area, e.check, Status.FAIL, e.detail, e.hint)
    except PinotageError as e:
        yield Finding(area, "area", Status.FAIL, e.message, e.hint)


def exit_code(findings: Iterable[Finding]) -> int:
    """Return 0 when no check failed, else 1."""
    return 1 if any(f.status is Status.FAIL for f in findings) else 0


def render(findings: list[Finding]) -> list[str]:
    """Return the report: one line a check, a hint under each failure."""
    width = max((len(f"{f.area}: {f.check}") for f in findings), default=0)
    lines = []
    for f in findings:
        lines.append(f"{f.status.value:<7}  {f'{f.area}: {f.check}':<{width}}  {f.detail}")
        if f.status is Status.FAIL and f.hint:
            lines.append(f"{'':<7}  {'':<{width}}  hint: {f.hint}")
    failed = sum(f.status is Status.FAIL for f in findings)
    passed = sum(f.status is Status.OK for f in findings)
    skipped = len(findings) - failed - passed
    lines.append(f"{passed} ok, {failed} failed, {skipped} skipped")
    return lines


def to_json(findings: list[Finding]) -> str:
    return json.dumps({"ok": exit_code(findings) == 0, "checks": [f.to_json() for f in findings]}, indent=2)
