"""CLI rows: how fast ``pinotage`` starts; also the generated jobs/ the render rows use.

CLI start: ``pinotage --help`` in a fresh interpreter each time (no warm process to reuse)
against a fresh interpreter importing the libraries a Jenkins/Kubernetes/Docker tool needs.
Both use the bytecode already cached on disk, as any second invocation does.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from benchmarks import measure

PEER_IMPORTS = "import kubernetes, docker, jenkins, jenkins_jobs.builder, git"
START_GOAL_RATIO = 1 / 5


SETUP_GOAL_S = 2.0


def run(quick: bool) -> list[dict]:
    """Measure CLI start and the demo's set-up; return their rows (render rows are bench_jobs')."""
    return [cli_start(quick), demo_setup(quick)]


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


def demo_setup(quick: bool) -> dict:
    """Time a second `scripts/demo --dry-run` against the `pinotage run --dry-run` it ends with.

    The difference is the set-up the demo does before `pinotage run` starts (packages, virtualenv,
    engine, registry, base and front images), all found done. The demo needs root, and it starts
    the demo registry on 127.0.0.1:5000 when none answers (as the demo itself does).
    """
    name = "set-up of a second `scripts/demo` with nothing to do, before `pinotage run` starts"
    goal = f"< {SETUP_GOAL_S:.0f} s"
    if os.geteuid() != 0:
        return measure.not_measured(name, "s", goal, "scripts/demo runs as root")
    demo = [str(measure.ROOT / "scripts/demo"), "--dry-run"]
    env = {**os.environ, "PINOTAGE_VENV": str(Path(measure.python()).parent.parent)}
    try:
        measure.run_timed(demo, env=env, cwd=measure.ROOT, timeout_s=1800)  # the first one may set up
        demos, runs = measure.alternate(
            lambda: measure.run_timed(demo, env=env, cwd=measure.ROOT),
            lambda: measure.run_timed([*measure.pinotage_argv(), "run", "--dry-run"], env=env, cwd=measure.ROOT),
            runs=1 if quick else 5, warmup=0 if quick else 1)
    except (measure.NotMeasurable, RuntimeError) as e:
        return measure.not_measured(name, "s", goal, str(e).strip().splitlines()[0][:300])
    p = measure.median([d.wall_s for d in demos]) - measure.median([r.wall_s for r in runs])
    met = p < SETUP_GOAL_S
    note = (f"`scripts/demo --dry-run` {measure.spread([d.wall_s for d in demos], 's')} less `pinotage run "
            f"--dry-run` {measure.spread([r.wall_s for r in runs], 's')}, medians, alternated")
    if not met:
        note += f"; gap: {p:.2f} s ≥ {SETUP_GOAL_S:.0f} s"
    return measure.row(name, round(p, 3), None, "s", goal, met, note)


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
