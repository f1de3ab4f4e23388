"""CLI rows: how fast ``pinotage`` starts; also the generated jobs/ the render rows use.

CLI start: ``pinotage --help`` in a fresh interpreter each time (no warm process to reuse)
against a fresh interpreter importing the libraries a Jenkins/Kubernetes/Docker tool needs.
Both use the bytecode already cached on disk, as any second invocation does.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from benchmarks import measure

PEER_IMPORTS = "import kubernetes, docker, jenkins, jenkins_jobs.builder, git"
START_GOAL_RATIO = 1 / 5


def run(quick: bool) -> list[dict]:
    """Measure CLI start; return its row (render time and peak RSS are bench_jobs' rows)."""
    return [cli_start(quick)]


def cli_start(quick: bool) -> dict:
    """Time 'pinotage --help' against the peer's imports, alternately; medians."""
    name = "CLI start: `pinotage --help`, cold process"
    goal = "≤ 1/5 of the peer"
    try:
        ours, theirs = measure.alternate(
            lambda: measure.run_timed([*measure.pinotage_argv(), "--help"]),
            lambda: measure.run_timed([measure.python(), "-c", PEER_IMPORTS]),
            runs=1 if quick else 21, warmup=0 if quick else 3)
    except measure.NotMeasurable as e:
        return measure.not_measured(name, "s", goal, str(e))
    p = measure.median([s.wall_s for s in ours])
    q = measure.median([s.wall_s for s in theirs])
    ratio = p / q
    met = ratio <= START_GOAL_RATIO
    note = (f"peer: `python -c \"{PEER_IMPORTS}\"`; {measure.spread([s.wall_s for s in ours], 's')} "
            f"vs {measure.spread([s.wall_s for s in theirs], 's')}")
    if not met:
        note += f"; gap: ratio {ratio:.2f} > {START_GOAL_RATIO:.2f}"
    return measure.row(name, p, q, "s", goal, met, note)


def write_jobs(folder: Path, count: int) -> int:
    """Write the repository's jobs/ plus `count` generated jobs from its ops template; return that count."""
    folder.mkdir(parents=True, exist_ok=True)
    for source in sorted((measure.ROOT / "jobs").glob("*.yaml")):
        shutil.copy(source, folder / source.name)
    lines = ["- project:", "    name: bench", "    jobs:"]
    for i in range(count):
        lines += [f"      - '{{job}}':",
                  f"          job: bench-{i:04d}",
                  f"          title: 'Benchmark job {i}'",
                  f"          command: pinotage jobs check --jobs-dir jobs-{i:04d}"]
    (folder / "zz-bench-generated.yaml").write_text("\n".join(lines) + "\n")
    return count
