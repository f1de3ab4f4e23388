"""The design's import rule, read from the source: only the runner calls phases.

No phase imports another phase, the runner, the wiring (``services``) or the CLI; nothing but
the CLI imports the runner or the wiring (and the runner the wiring it is handed); nothing imports
the CLI. Every import counts, also one inside a function or under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pipeline"
# Each phase is a module or a package; a module may import the rest of its own phase.
PHASES = ("pipeline.image", "pipeline.targets.docker", "pipeline.targets.kubernetes", "pipeline.github",
          "pipeline.audit", "pipeline.jobs", "pipeline.cluster", "pipeline.preview")
SEQUENCERS = ("pipeline.runner", "pipeline.services", "pipeline.cli")
# Parts of the Kubernetes target that are libraries, not its verbs: the PR preview phase reuses them.
SHARED = ("pipeline.targets.kubernetes.api", "pipeline.targets.kubernetes.gate", "pipeline.targets.kubernetes.pull_secret")
ENTRY_POINTS = ("pipeline.__main__",)  # ``python -m pipeline``: the CLI's main, nothing else


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Return every pipeline module a file imports, by its full name."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}  # "from pipeline import image"
    return {name for name in found if name == "pipeline" or name.startswith("pipeline.")}


def owner(name: str, groups: tuple[str, ...]) -> str:
    """Return the group (phase or sequencer) a module belongs to, or ""."""
    return next((group for group in groups if name == group or name.startswith(group + ".")), "")


GRAPH = {module_name(path): imports_of(path) for path in sorted(PACKAGE.rglob("*.py"))}


def test_the_graph_is_read():
    assert "pipeline.runner" in GRAPH and "pipeline.targets.kubernetes.target" in GRAPH
    assert "pipeline.image" in GRAPH["pipeline.services"] and "pipeline.services" in GRAPH["pipeline.runner"]
    assert all(owner(phase, PHASES) for phase in PHASES) and any(owner(m, PHASES) == "pipeline.jobs" for m in GRAPH)


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if owner(m, PHASES)))
def test_a_phase_imports_no_other_phase_nor_the_runner_the_wiring_or_the_cli(module):
    mine = owner(module, PHASES)
    names = GRAPH[module]
    # "from pipeline.targets.kubernetes import gate" names the package only to reach the shared module
    via = {name for name in names if any(shared.startswith(name + ".") and shared in names for shared in SHARED)}
    wrong = sorted(name for name in names - via if owner(name, SEQUENCERS)
                   or owner(name, PHASES) not in ("", mine) and not owner(name, SHARED))
    assert not wrong, f"{module} imports {', '.join(wrong)}"


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if not owner(m, SEQUENCERS + ENTRY_POINTS)))
def test_only_the_cli_and_the_runner_reach_the_sequencers(module):
    wrong = sorted(name for name in GRAPH[module] if owner(name, SEQUENCERS))
    assert not wrong, f"{module} imports {', '.join(wrong)}"


def test_nothing_imports_the_cli_and_only_the_cli_imports_the_runner():
    for module, names in GRAPH.items():
        if not owner(module, ("pipeline.cli",) + ENTRY_POINTS):
            assert not any(owner(name, ("pipeline.cli",)) for name in names), module
            assert module == "pipeline.runner" or not any(owner(n, ("pipeline.runner",)) for n in names), module
