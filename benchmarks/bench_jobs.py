"""Jobs rows: rendering 1,000 jobs against ``jenkins-jobs test``, and the writes of an update.

Render: ``pinotage jobs render`` and ``jenkins-jobs test -o`` of the same generated
jobs/ (the repository's jobs plus 1,000 from its ops template), alternately, each a
fresh process; medians of wall time and of peak RSS.

Writes: the Jenkins test double already holds every job exactly as jobs/ renders
it. ``pinotage jobs update`` compares and sends nothing; ``jenkins-jobs update``
with an empty cache (a fresh CI workspace, or a new machine) reconfigures every
job. Writes are the POST requests the double received.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

from benchmarks import measure
from benchmarks.bench_cli import write_jobs

JOBS = {False: 1000, True: 20}
RENDER_GOAL = "≤ 1× the peer (no slower)"


def run(quick: bool) -> list[dict]:
    """Measure render time and memory, and the writes of an update with nothing changed."""
    return [*render_rows(quick), update_writes(quick)]


def _jenkins_jobs() -> str | None:
    beside = Path(measure.python()).parent / "jenkins-jobs"
    return str(beside) if beside.exists() else shutil.which("jenkins-jobs")


def render_rows(quick: bool) -> list[dict]:
    """Time 'pinotage jobs render' against 'jenkins-jobs test -o' of the same YAML; also peak RSS."""
    count = JOBS[quick]
    time_name = f"`pinotage jobs render`, {count:,} generated jobs"
    rss_name = f"peak RSS of that render ({count:,} jobs)"
    jjb = _jenkins_jobs()
    if not jjb:
        return [measure.not_measured(time_name, "s", RENDER_GOAL, "jenkins-jobs is not installed"),
                measure.not_measured(rss_name, "MB", "report", "jenkins-jobs is not installed")]
    with tempfile.TemporaryDirectory(prefix="pinotage-bench-render-") as tmp:
        jobs_dir = Path(tmp) / "jobs"
        write_jobs(jobs_dir, count)
        ours_argv = [*measure.pinotage_argv(), "jobs", "render", "--jobs-dir", str(jobs_dir), "-o", f"{tmp}/ours"]
        peer_argv = [jjb, "--conf", "/dev/null", "test", "-o", f"{tmp}/peer", str(jobs_dir)]
        try:
            ours, theirs = measure.alternate(
                lambda: measure.run_timed(ours_argv, cwd=tmp, timeout_s=900),
                lambda: measure.run_timed(peer_argv, cwd=tmp, timeout_s=900),
                runs=1 if quick else 5, warmup=0 if quick else 1)
        except (measure.NotMeasurable, RuntimeError) as e:
            why = str(e).strip().splitlines()[0][:300]
            return [measure.not_measured(time_name, "s", RENDER_GOAL, why),
                    measure.not_measured(rss_name, "MB", "report", why)]
        written = sorted(p.name for p in Path(tmp, "ours").iterdir())
        same = written == sorted(p.name for p in Path(tmp, "peer").iterdir())
        total = len(written)
    p, q = measure.median([s.wall_s for s in ours]), measure.median([s.wall_s for s in theirs])
    note = (f"peer: `jenkins-jobs test -o` of the same YAML ({total} files); "
            f"{measure.spread([s.wall_s for s in ours], 's')} vs {measure.spread([s.wall_s for s in theirs], 's')}")
    if not same:
        note += "; gap: the two wrote different job names"
    met = p <= q and same
    if p > q:
        note += f"; gap: {p / q:.2f}× the peer"
    rss_p, rss_q = measure.median([s.max_rss_mb for s in ours]), measure.median([s.max_rss_mb for s in theirs])
    rss_note = (f"/usr/bin/time -v of the runs above; {measure.spread([s.max_rss_mb for s in ours], 'MB')} vs "
                f"{measure.spread([s.max_rss_mb for s in theirs], 'MB')}")
    return [measure.row(time_name, p, q, "s", RENDER_GOAL, met, note),
            measure.row(rss_name, rss_p, rss_q, "MB", "report (no goal set)", None, rss_note)]


def update_writes(quick: bool) -> dict:
    """Count the writes of an update when nothing changed: pinotage against JJB with an empty cache."""
    count = JOBS[quick]
    name = f"writes of an update with nothing changed, {count:,} jobs"
    goal = "0 (the peer: one per job)"
    jjb = _jenkins_jobs()
    if not jjb:
        return measure.not_measured(name, "writes", goal, "jenkins-jobs is not installed")
    sys.path.insert(0, str(measure.ROOT))
    from tests.fakes.jenkins import FakeJenkins

    token = "11" + secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="pinotage-bench-update-") as tmp, \
            FakeJenkins(user="bench", token=token, crumbs=True) as fake:
        jobs_dir = Path(tmp) / "jobs"
        write_jobs(jobs_dir, count)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp, "XDG_CACHE_HOME": f"{tmp}/cache",
               "PINOTAGE_JENKINS_URL": fake.url, "PINOTAGE_JENKINS_USER": "bench", "PINOTAGE_JENKINS_TOKEN": token}
        pinotage = [*measure.pinotage_argv(), "jobs", "update", "--jobs-dir", str(jobs_dir)]
        try:
            measure.run_timed(pinotage, env=env, cwd=tmp, timeout_s=900)  # the jobs exist from here on
            fake.clear_requests()
            ours = measure.run_timed(pinotage, env=env, cwd=tmp, timeout_s=900)
            ours_writes = len(fake.writes())
            ini = Path(tmp, "jenkins_jobs.ini")
            ini.write_text(f"[jenkins]\nurl={fake.url}\nuser=bench\npassword={token}\n")
            fake.clear_requests()
            theirs = measure.run_timed([jjb, "--conf", str(ini), "update", str(jobs_dir)], env=env, cwd=tmp,
                                       timeout_s=900)
            peer_writes = len(fake.writes())
            total = len(fake.jobs)
        except (measure.NotMeasurable, RuntimeError) as e:
            return measure.not_measured(name, "writes", goal, str(e).strip().splitlines()[0][:300])
    note = (f"{total} jobs already live as rendered; peer: `jenkins-jobs update` with an empty cache;"
            f" POSTs seen by the Jenkins double; wall {ours.wall_s:.2f} s vs {theirs.wall_s:.2f} s")
    return measure.row(name, float(ours_writes), float(peer_writes), "writes", goal, ours_writes == 0, note)


if __name__ == "__main__":
    for found in run("--quick" in sys.argv):
        print(found)
