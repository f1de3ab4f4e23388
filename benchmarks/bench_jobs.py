"""Jobs rows: render against ``jenkins-jobs test``, and updates against ``jenkins-jobs update``.

Render: ``pinotage jobs render`` and ``jenkins-jobs test -o`` of the same generated jobs/ (the
repository's jobs plus 1,000 from its ops template), alternately, each a fresh process; medians
of wall time and peak RSS. "The same output" compares every job's XML, canonicalised (less
Pinotage's mark in the description), not only the file names. Render at 10,000 jobs: the cost per job against the cost at 1,000.

Updates, each tool on a Jenkins test double of its own, against ``jenkins-jobs update`` with a warm cache (its cache
made by an update of the same jobs): each round changes one job of 1,000 and runs both, by
turns; writes are the POST requests the double received. Then a job is edited by hand in
Jenkins (python-jenkins, as the UI saves it) before each one's next update: does it restore it?
Pinotage compares with the live job; JJB's cache cannot see the edit.
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
    """Measure render time, memory and scaling; and updates of one changed or hand-edited job."""
    return [*render_rows(quick), scale_row(quick), *update_rows(quick)]


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
        differ = different_jobs(Path(tmp, "ours"), Path(tmp, "peer"))
        total = len(list(Path(tmp, "ours").iterdir()))
        same = not differ
    p, q = measure.median([s.wall_s for s in ours]), measure.median([s.wall_s for s in theirs])
    note = (f"peer: `jenkins-jobs test -o` of the same YAML ({total} jobs, "
            f"{'the same canonical XML each' if same else 'differing: ' + ', '.join(differ[:3])}); "
            f"{measure.spread([s.wall_s for s in ours], 's')} vs {measure.spread([s.wall_s for s in theirs], 's')}")
    if not same:
        note += f"; gap: {len(differ)} job(s) differ from the peer's"
    met = p <= q and same
    if p > q:
        note += f"; gap: {p / q:.2f}× the peer"
    rss_p, rss_q = measure.median([s.max_rss_mb for s in ours]), measure.median([s.max_rss_mb for s in theirs])
    rss_note = (f"/usr/bin/time -v of the runs above; {measure.spread([s.max_rss_mb for s in ours], 'MB')} vs "
                f"{measure.spread([s.max_rss_mb for s in theirs], 'MB')}")
    return [measure.row(time_name, p, q, "s", RENDER_GOAL, met, note),
            measure.row(rss_name, rss_p, rss_q, "MB", "report (no goal set)", None, rss_note)]


UPDATE_ROUNDS = {False: 5, True: 1}
SCALE_JOBS = {False: (1000, 10000), True: (20, 200)}
WRITES_ROW = "writes of an update after one of {n} jobs changed (peer: `jenkins-jobs update`, warm cache)"
WALL_ROW = "wall time of that update (peer: `jenkins-jobs update`, warm cache)"
RESTORE_ROW = "a job edited by hand in Jenkins: the next update restores it (1 yes, 0 no; peer: JJB, warm cache)"
SCALE_ROW = "render cost per job at {big} jobs (peer: the cost per job at {small})"


def different_jobs(ours: Path, theirs: Path) -> list[str]:
    """Name the jobs whose canonical XML differs between two render folders (or exists in one only)."""
    from xml.etree.ElementTree import canonicalize

    names = sorted({p.name for p in ours.iterdir()} | {p.name for p in theirs.iterdir()})
    differ = []
    for name in names:
        a, b = ours / name, theirs / name
        if not (a.exists() and b.exists()) or _canonical(a, canonicalize) != _canonical(b, canonicalize):
            differ.append(name)
    return differ


def _canonical(path: Path, canonicalize) -> str:
    """Return a job's canonical XML (C14N 2.0, whitespace around text stripped), less Pinotage's own
    mark in the description (the one difference on purpose: it tells Pinotage's jobs from others)."""
    from pipeline.jobs import MANAGED_MARK

    text = canonicalize(path.read_text(), strip_text=True)
    return text.replace("\n" + MANAGED_MARK.replace("<", "&lt;").replace(">", "&gt;"), "")


def update_rows(quick: bool) -> list[dict]:
    """One job of 1,000 changed: writes and wall time against JJB with a warm cache; a hand edit restored?"""
    count = JOBS[quick]
    names = [WRITES_ROW.format(n=f"{count:,}"), WALL_ROW, RESTORE_ROW]
    goals = ["≤ 1 writes (exactly the one changed job)", "≤ 1× the peer", "= 1 (restored)"]
    units = ["writes", "s", "restored"]
    jjb = _jenkins_jobs()
    if not jjb:
        return [measure.not_measured(n, u, g, "jenkins-jobs is not installed") for n, u, g in zip(names, units, goals)]
    sys.path.insert(0, str(measure.ROOT))
    from tests.fakes.jenkins import FakeJenkins

    token = "11" + secrets.token_hex(16)
    # One Jenkins double per tool: each update then finds only what that tool itself wrote before.
    with tempfile.TemporaryDirectory(prefix="pinotage-bench-update-") as tmp, \
            FakeJenkins(user="bench", token=token, crumbs=True) as ours_fake, \
            FakeJenkins(user="bench", token=token, crumbs=True) as peer_fake:
        bench = _UpdateBench(ours_fake, peer_fake, Path(tmp), jjb, token, count)
        try:
            ours, theirs = measure.alternate(bench.pinotage_round, bench.peer_round, runs=UPDATE_ROUNDS[quick],
                                             warmup=0 if quick else 1)
            restored = (bench.restores(bench.pinotage), bench.restores(bench.peer))
        except (measure.NotMeasurable, RuntimeError) as e:
            why = str(e).strip().splitlines()[0][:300]
            return [measure.not_measured(n, u, g, why) for n, u, g in zip(names, units, goals)]
    writes_p, writes_q = max(w for w, _ in ours), max(w for w, _ in theirs)
    writes_note = (f"n={len(ours)} rounds, each changing another job; the most writes in a round; POSTs seen by "
                   f"each tool's own Jenkins double; per round: pinotage {[w for w, _ in ours]}, "
                   f"JJB {[w for w, _ in theirs]} (JJB 6.5 adds <disabled> from the live job to a job it "
                   "reconfigures before caching its digest, so each job it has reconfigured differs again "
                   "next time)")
    writes_met = all(w == 1 for w, _ in ours)
    if not writes_met:
        writes_note += "; gap: not one write in every round"
    wall_p, wall_q = measure.median([t for _, t in ours]), measure.median([t for _, t in theirs])
    wall_met = wall_p <= wall_q
    wall_note = (f"{count:,} jobs, one changed; pinotage reads every live job to compare (its memo of the pairs "
                 f"found the same, byte for byte, warm too), JJB compares with its "
                 f"cache; {measure.spread([t for _, t in ours], 's')} vs {measure.spread([t for _, t in theirs], 's')}"
                 + (", after a warm-up round" if not quick else ""))
    if not wall_met:
        wall_note += f"; gap: {wall_p / wall_q:.2f}× the peer"
    restore_note = (f"pinotage {'restores' if restored[0] else 'leaves'} the edit, JJB with a warm cache "
                    f"{'restores' if restored[1] else 'leaves'} it (its cache does not see the live job); n=1 each: "
                    "the outcome does not vary")
    if not restored[0]:
        restore_note += "; gap: the hand edit stays"
    return [measure.row(names[0], float(writes_p), float(writes_q), "writes", goals[0], writes_met, writes_note),
            measure.row(names[1], wall_p, wall_q, "s", goals[1], wall_met, wall_note),
            measure.row(names[2], float(restored[0]), float(restored[1]), "restored", goals[2], restored[0],
                        restore_note)]


class _UpdateBench:
    """The jobs folder, both tools' commands and their doubles: rounds that change one job each."""

    def __init__(self, ours_fake, peer_fake, tmp: Path, jjb: str, token: str, count: int):
        import jenkins

        self.count = count
        self.jobs_dir = tmp / "jobs"
        write_jobs(self.jobs_dir, count)
        self.generated = self.jobs_dir / "zz-bench-generated.yaml"
        ini = tmp / "jenkins_jobs.ini"
        ini.write_text(f"[jenkins]\nurl={peer_fake.url}\nuser=bench\npassword={token}\n")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp), "XDG_CACHE_HOME": f"{tmp}/cache",
               "PINOTAGE_JENKINS_URL": ours_fake.url, "PINOTAGE_JENKINS_USER": "bench",
               "PINOTAGE_JENKINS_TOKEN": token}
        self.pinotage = _Tool([*measure.pinotage_argv(), "jobs", "update", "--jobs-dir", str(self.jobs_dir)],
                              ours_fake, jenkins.Jenkins(ours_fake.url, username="bench", password=token), env, tmp)
        self.peer = _Tool([jjb, "--conf", str(ini), "update", str(self.jobs_dir)],
                          peer_fake, jenkins.Jenkins(peer_fake.url, username="bench", password=token), env, tmp)
        self.changed = iter(range(count))
        for tool in (self.peer, self.pinotage):  # the jobs exist; JJB's cache is warm
            tool.run()

    def _change_one(self) -> None:
        i = next(self.changed)
        text = self.generated.read_text()
        old = f"command: pinotage jobs check --jobs-dir jobs-{i:04d}\n"
        self.generated.write_text(text.replace(old, old.replace("\n", " --changed\n"), 1))

    def pinotage_round(self) -> tuple[int, float]:
        self._change_one()
        return self.pinotage.run()

    def peer_round(self) -> tuple[int, float]:
        # The same change for JJB: its cache still holds the job as it was.
        return self.peer.run()

    def restores(self, tool: "_Tool") -> bool:
        """Edit a job by hand in the tool's Jenkins, run its update, and tell whether the edit is gone."""
        name = f"bench-{self.count // 2:04d}"
        marker = f"edited by hand {secrets.token_hex(4)}"
        xml = tool.client.get_job_config(name)
        edited = (xml.replace("<description>", f"<description>{marker} ", 1) if "<description>" in xml
                  else xml.replace("<description/>", f"<description>{marker}</description>", 1))
        tool.client.reconfig_job(name, edited)
        if marker not in tool.client.get_job_config(name):
            raise RuntimeError(f"the hand edit of {name} did not take")
        tool.run()
        return marker not in tool.client.get_job_config(name)


class _Tool:
    """One update command and the Jenkins double it writes to."""

    def __init__(self, argv: list[str], fake, client, env: dict[str, str], cwd: Path):
        self.argv, self.fake, self.client, self.env, self.cwd = argv, fake, client, env, cwd

    def run(self) -> tuple[int, float]:
        """Run the update; return the writes the double received and the wall time."""
        self.fake.clear_requests()
        sample = measure.run_timed(self.argv, env=self.env, cwd=self.cwd, timeout_s=1800)
        return len(self.fake.writes()), sample.wall_s


def scale_row(quick: bool) -> dict:
    """Time `pinotage jobs render` at the small and the big size; compare the cost per job."""
    small, big = SCALE_JOBS[quick]
    name = SCALE_ROW.format(big=f"{big:,}", small=f"{small:,}")
    goal = "≤ 1.1× the peer"
    costs: dict[int, list[float]] = {small: [], big: []}
    with tempfile.TemporaryDirectory(prefix="pinotage-bench-scale-") as tmp:
        argvs = {}
        for n in (small, big):
            write_jobs(Path(tmp) / f"jobs-{n}", n)
            argvs[n] = [*measure.pinotage_argv(), "jobs", "render", "--jobs-dir", f"{tmp}/jobs-{n}", "-o", f"{tmp}/out-{n}"]
        try:
            for _ in range(1 if quick else 3):
                for n in (small, big):
                    costs[n].append(measure.run_timed(argvs[n], cwd=tmp, timeout_s=1800).wall_s / n)
        except (measure.NotMeasurable, RuntimeError) as e:
            return measure.not_measured(name, "ms", goal, str(e).strip().splitlines()[0][:300])
    p, q = 1000 * measure.median(costs[big]), 1000 * measure.median(costs[small])
    met = p <= 1.1 * q
    note = (f"wall time ÷ jobs, process start included (it weighs less at {big:,}); n={len(costs[big])} each, "
            f"alternated, no warm-up (a render is minutes at {big:,})" if not quick else "quick: n=1")
    if not met:
        note += f"; gap: {p / q:.2f}× the cost at {small:,}"
    return measure.row(name, round(p, 3), round(q, 3), "ms", goal, met, note)


if __name__ == "__main__":
    for found in run("--quick" in sys.argv):
        print(found)
