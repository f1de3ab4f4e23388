"""The configuration area: the profile loads, its paths stay inside the repository, its secrets are set."""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator

from pipeline.doctor import Finding, Probe, Status
from pipeline.errors import BadInput

AREA = "config"
LOADS = "loads"  # the check whose failure makes the whole run bad input (exit 2)


def load(load_config: Callable[[], Any]) -> tuple[Any, list[Finding]]:
    """Load the configuration; return it (None when it does not load) and the finding that says so."""
    try:
        config = load_config()
    except BadInput as e:
        return None, [Finding(AREA, LOADS, Status.FAIL, "; ".join(e.lines()), e.hint)]
    profile = next((where.split("(profile ", 1)[1].rstrip(")") for where in config.sources.values()
                    if "(profile " in where), "")
    return config, [Finding(AREA, LOADS, Status.OK, f"profile {profile}" if profile else "no profile")]


def check(probe: Probe) -> Iterator[Finding]:
    """Yield the paths and secrets checks (the load itself was reported by ``load``)."""
    found = probe.finding(AREA)
    yield _paths(probe, found)
    yield from _secrets(probe, found)


def _paths(probe: Probe, found: Callable[..., Finding]) -> Finding:
    from pipeline.config import CONFINED_PATHS

    config = probe.config
    root = os.path.realpath(config.root)
    outside = []
    for key in CONFINED_PATHS:
        value = _get(config, key)
        base = config.path(config.image.context) if key == "image.dockerfile" else config.path(".")
        if value and os.path.commonpath([root, os.path.realpath(base / value)]) != root:
            outside.append(f"{key}={value} ({config.sources.get(key, 'default')})")
    if outside:
        return found("paths", Status.FAIL, f"outside the repository: {', '.join(outside)}",
                     "give paths relative to the folder of pinotage.yaml")
    return found("paths", Status.OK, f"{len(CONFINED_PATHS)} path settings inside {config.root}")


def _secrets(probe: Probe, found: Callable[..., Finding]) -> Iterator[Finding]:
    """Yield one finding a secret the configuration needs: present or not, never its value."""
    from pipeline import registry
    from pipeline.config import SECRETS

    config, environ = probe.config, probe.environ
    try:
        credentials = registry.read_credentials(config, environ)
    except BadInput as e:
        yield found("registry credentials", Status.FAIL, e.message, e.hint)
    else:
        if credentials is None:
            yield found("registry credentials", Status.FAIL,
                        f"none for {registry.registry_host(config.registry.url)} in the environment or a docker"
                        " config file", f"set PINOTAGE_REGISTRY_USER and {SECRETS['registry.password']}")
        else:
            yield found("registry credentials", Status.OK, f"user {credentials.user} from {credentials.source}")
    for name, needed_by in (("jenkins.token", config.jenkins.url), ("github.token", config.github.repo)):
        variable = SECRETS[name]
        if not needed_by:
            yield found(name, Status.SKIPPED, f"{name.split('.')[0]} is not configured")
        elif environ.get(variable):
            yield found(name, Status.OK, f"{variable} is set")
        else:
            yield found(name, Status.FAIL, f"{variable} is not set",
                        f"export {variable} (an API token) where pinotage runs")


def _get(config: Any, key: str) -> Any:
    value = config
    for part in key.split("."):
        value = getattr(value, part)
    return value
