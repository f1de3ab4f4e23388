"""CLI rows: how fast ``pinotage`` starts, and how much memory ``pinotage jobs render`` takes.

CLI start: ``pinotage --help`` in a fresh interpreter each time (no warm process to reuse)
against a fresh interpreter importing the libraries a Jenkins/Kubernetes/Docker tool needs.
Both use the bytecode already cached on disk, as any second invocation does.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from benchmarks import measure

PEER_IMPORTS = "import kubernetes, docker, jenkins, jenkins_jobs.builder, git"
START_GOAL_RATIO = 1 / 5
RENDER_JOBS = {False: 1000, True: 20}


def run(quick: bool) -> list[dict]:
    """Measure CLI start and the peak RSS of jobs render; return their rows."""
    return [cli_start(quick), jobs_render_memory(quick)]


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
    """Write the repository's jobs/ plus `count` generated jobs from its ops template; return the total."""
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


def jobs_render_memory(quick: bool) -> dict:
    """Take the peak RSS of 'pinotage jobs render' and of 'jenkins-jobs test -o', alternately."""
    count = RENDER_JOBS[quick]
    name = f"peak RSS: `pinotage jobs render`, {count:,} generated jobs"
    goal = "report (no goal set)"
    jjb = Path(measure.python()).parent / "jenkins-jobs"
    if not jjb.exists():
        jjb_found = shutil.which("jenkins-jobs")
        if not jjb_found:
            return measure.not_measured(name, "MB", goal, "jenkins-jobs is not installed")
        jjb = Path(jjb_found)
    with tempfile.TemporaryDirectory(prefix="pinotage-bench-jobs-") as tmp:
        jobs_dir = Path(tmp) / "jobs"
        write_jobs(jobs_dir, count)
        ours_argv = [*measure.pinotage_argv(), "jobs", "render", "--jobs-dir", str(jobs_dir), "-o", f"{tmp}/ours"]
        peer_argv = [str(jjb), "--conf", "/dev/null", "test", "-o", f"{tmp}/peer", str(jobs_dir)]
        try:
            ours, theirs = measure.alternate(
                lambda: measure.run_timed(ours_argv, cwd=tmp, timeout_s=600),
                lambda: measure.run_timed(peer_argv, cwd=tmp, timeout_s=600),
                runs=1 if quick else 5, warmup=0 if quick else 1)
        except (measure.NotMeasurable, RuntimeError) as e:
            return measure.not_measured(name, "MB", goal, _one_line(str(e)))
        rendered = sum(1 for _ in Path(tmp, "ours").rglob("*.xml")) or sum(1 for _ in Path(tmp, "ours").iterdir())
    p = measure.median([s.max_rss_mb for s in ours])
    q = measure.median([s.max_rss_mb for s in theirs])
    note = (f"peer: `jenkins-jobs test -o` of the same YAML; {rendered} files written; "
            f"{measure.spread([s.max_rss_mb for s in ours], 'MB')} vs {measure.spread([s.max_rss_mb for s in theirs], 'MB')}")
    return measure.row(name, p, q, "MB", goal, None, note)


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return (lines[0] if len(lines) < 2 else f"{lines[0]} … {lines[-1]}")[:300]
