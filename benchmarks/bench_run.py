"""Run rows: the no-op run, the pipeline's own overhead, and the peak RSS of ``pinotage run``.

Everything runs against real services made for the benchmark alone: a temporary git clone of
the repository (its committed HEAD, on branch ``master``), throwaway authenticated registries
on loopback, the local Docker target under an app name and host port of its own, and a state
directory in a temporary folder. Nothing is left behind.

- no-op run: ``pinotage run`` when the commit is already built, pushed and deployed, against
  the same run from a cold (empty) registry and a cold target (nothing deployed for the app,
  an empty ledger). The engine's layer cache stays warm for both: a cold build is the image
  rows' business.
- pipeline overhead: in each cold (full default-branch) run, Pinotage's own time is the wall
  time outside the phases (start-up, configuration, git context, summary) plus the CPU time
  the ``pinotage`` process spends inside them (see ``overhead_row``); every other second is
  spent waiting on the Docker engine, the registry or the target. The phase breakdown comes
  from the run's ledger record.
- memory: peak RSS of the ``pinotage`` process (``/usr/bin/time -v``); the engine, the
  registry and the containers are other processes and are not counted.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import measure

DEFAULT_BRANCH = "master"
NOOP_GOAL_RATIO = 1 / 10
NOOP_GOAL_S = 3.0
OVERHEAD_GOAL_PCT = 5.0
RSS_GOAL_MB = 150.0
PHASES = ("lookup", "build", "smoke", "push", "deploy")
RUN_TIMEOUT_S = 1800
PAIRS = 5  # no-op and cold runs, alternately, after one warm-up pair

NOOP_ROW = "no-op run: `pinotage run`, commit already built, pushed and deployed"
NOOP_GOAL = "≤ 1/10 of the peer, and < 3 s"
OVERHEAD_ROW = "pipeline overhead: Pinotage's own share of a full default-branch run"
OVERHEAD_GOAL = "≤ 5 % (the rest waits on engine, registry, target)"
RSS_ROW = "peak RSS: `pinotage run`, full default-branch run"
RSS_GOAL = "< 150 MB (Docker engine excluded)"


def run(quick: bool) -> list[dict]:
    """Measure the no-op run against a cold one, the overhead and the peak RSS; return the rows."""
    return with_bench(measure_runs, quick, [(NOOP_ROW, "s", NOOP_GOAL), (OVERHEAD_ROW, "%", OVERHEAD_GOAL),
                                             (RSS_ROW, "MB", RSS_GOAL)])


def with_bench(measure_rows, quick: bool, rows: list[tuple[str, str, str]]) -> list[dict]:
    """Call measure_rows(bench, quick) with a Bench; when it cannot measure, say why in each of rows."""
    try:
        with Bench() as bench:
            return measure_rows(bench, quick)
    except (measure.NotMeasurable, RuntimeError) as e:
        why = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        return [measure.not_measured(name, unit, goal, why) for name, unit, goal in rows]


def measure_runs(bench: "Bench", quick: bool) -> list[dict]:
    warm = bench.cold_environment("warm")
    say("making the warm state: one full run (build, smoke, push, deploy)")
    setup = bench.pinotage_run(warm, expect="full")
    cold_runs: list[tuple[measure.Sample, dict]] = [] if not quick else [setup]
    noop_runs: list[measure.Sample] = []

    def noop() -> measure.Sample:
        sample = bench.pinotage_run(warm, expect="noop")
        noop_runs.append(sample)
        return sample

    def cold() -> measure.Sample:
        env = bench.cold_environment(f"cold{next(bench.serial)}")
        try:
            result = bench.pinotage_run(env, expect="full")
        finally:
            bench.discard(env)
        cold_runs.append(result)
        return result[0]

    if quick:
        noop()  # quick: the set-up run above is the one cold sample
    else:
        noop()  # the warm-up pair, discarded
        cold()
        noop_runs.clear()
        cold_runs.clear()
        for i in range(PAIRS):
            noop()
            cold()
            say(f"pair {i + 1}/{PAIRS}: no-op {noop_runs[-1].wall_s:.2f} s, cold {cold_runs[-1][0].wall_s:.1f} s")
    return [noop_row(noop_runs, [s for s, _ in cold_runs]), overhead_row(cold_runs, noop_runs),
            rss_row([s for s, _ in cold_runs], noop_runs)]


def noop_row(noop_runs: list[measure.Sample], cold_runs: list[measure.Sample]) -> dict:
    p = measure.median([s.wall_s for s in noop_runs])
    q = measure.median([s.wall_s for s in cold_runs])
    ratio = p / q
    met = ratio <= NOOP_GOAL_RATIO and p < NOOP_GOAL_S
    note = (f"peer: the same `pinotage run` from an empty registry and nothing deployed (layer cache warm); "
            f"{measure.spread([s.wall_s for s in noop_runs], 's')} vs {measure.spread([s.wall_s for s in cold_runs], 's')}")
    if not met:
        gaps = [f"ratio {ratio:.2f} > {NOOP_GOAL_RATIO:.2f}"] if ratio > NOOP_GOAL_RATIO else []
        gaps += [f"{p:.2f} s ≥ {NOOP_GOAL_S:.0f} s"] if p >= NOOP_GOAL_S else []
        note += "; gap: " + ", ".join(gaps)
    return measure.row(NOOP_ROW, p, q, "s", NOOP_GOAL, met, note)


def overhead_row(cold_runs: list[tuple[measure.Sample, dict]], noop_runs: list[measure.Sample]) -> dict:
    """Estimate Pinotage's own share of each full run; quote the median with the phase breakdown.

    Own time = wall time outside the phases (start-up, configuration, git context, client set-up,
    summary) + CPU time inside the phases. The latter is the run's CPU time less that of a no-op
    run, which does the same start-up, configuration, context and lookup; the remainder is
    waiting on the engine, the registry and the target. The plain upper bound (outside + all
    CPU, counting start-up twice) is given in the note too.
    """
    noop_cpu_s = measure.median([s.cpu_s for s in noop_runs])
    shares, bounds, outside, cpu, walls = [], [], [], [], []
    by_phase: dict[str, list[float]] = {}
    for sample, phases_s in cold_runs:
        outside_s = max(0.0, sample.wall_s - sum(phases_s.values()))
        in_phases_cpu_s = max(0.0, sample.cpu_s - noop_cpu_s)
        shares.append(100 * (outside_s + in_phases_cpu_s) / sample.wall_s)
        bounds.append(100 * (outside_s + sample.cpu_s) / sample.wall_s)
        outside.append(outside_s)
        cpu.append(sample.cpu_s)
        walls.append(sample.wall_s)
        for name, took in phases_s.items():
            by_phase.setdefault(name, []).append(took)
    p = measure.median(shares)
    met = p <= OVERHEAD_GOAL_PCT
    order = [n for n in PHASES if n in by_phase] + sorted(set(by_phase) - set(PHASES))
    breakdown = ", ".join(f"{n} {measure.median(by_phase[n]):.2f} s" for n in order)
    note = (f"medians of {len(cold_runs)} full runs of {measure.median(walls):.1f} s: phases {breakdown}; "
            f"outside the phases {measure.median(outside):.2f} s; CPU of the pinotage process "
            f"{measure.median(cpu):.2f} s (a no-op run: {noop_cpu_s:.2f} s); own = outside + CPU beyond "
            f"the no-op's; upper bound outside + all CPU = {measure.median(bounds):.1f} %")
    if not met:
        note += f"; gap: {p:.1f} % > {OVERHEAD_GOAL_PCT:.0f} %"
    return measure.row(OVERHEAD_ROW, round(p, 2), None, "%", OVERHEAD_GOAL, met, note)


def rss_row(cold_runs: list[measure.Sample], noop_runs: list[measure.Sample]) -> dict:
    p = measure.median([s.max_rss_mb for s in cold_runs])
    worst = max(s.max_rss_mb for s in cold_runs + noop_runs)
    met = worst < RSS_GOAL_MB
    note = (f"{measure.spread([s.max_rss_mb for s in cold_runs], 'MB')}; no-op run "
            f"{measure.median([s.max_rss_mb for s in noop_runs]):.1f} MB; highest of all runs {worst:.1f} MB")
    if not met:
        note += f"; gap: {worst:.1f} MB ≥ {RSS_GOAL_MB:.0f} MB"
    return measure.row(RSS_ROW, p, None, "MB", RSS_GOAL, met, note)


def say(line: str) -> None:
    print(f"    run: {line}", file=sys.stderr, flush=True)


class Bench:
    """The services and folders the run rows use; closing it removes all of them."""

    def __init__(self):
        self.prefix = f"pinobench{os.getpid()}"
        self.environments: list[dict] = []
        self.serial = itertools.count(1)

    def __enter__(self) -> "Bench":
        self._stack = contextlib.ExitStack()
        self._stack.__enter__()
        try:
            self._prepare()
        except BaseException:
            self._stack.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, *exc) -> None:
        for env in list(self.environments):
            self.discard(env)
        self._stack.__exit__(*exc)

    def _prepare(self) -> None:
        self.tmp = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="pinotage-bench-run-")))
        for tool in ("git", "docker-registry", "htpasswd"):
            if not measure.have_tool(tool):
                raise measure.NotMeasurable(f"{tool} is not installed (scripts/test installs it)")
        self.client = _docker_client()
        self._stack.callback(self.client.close)
        self.bases = _base_images()
        self.repo = self.tmp / "repo"
        _git(["clone", "-q", str(measure.ROOT), str(self.repo)])
        _git(["-C", str(self.repo), "checkout", "-q", "-B", DEFAULT_BRANCH])

    def cold_environment(self, name: str) -> dict:
        """Start an empty registry and name an app, host port and state directory nobody else uses."""
        folder = self.tmp / name
        folder.mkdir()
        process, registry = _start_registry(folder)
        env = {"name": name, "app": f"{self.prefix}-{name}", "registry": registry, "process": process,
               "state_dir": folder / "state", "host_port": _free_port()}
        self.environments.append(env)
        return env

    def environ(self, env: dict) -> dict[str, str]:
        """Return the whole environment of one pinotage run: nothing else leaks in."""
        environ = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
                   "LANG": "C.UTF-8",
                   "PINOTAGE_DEFAULT_BRANCH": DEFAULT_BRANCH,
                   "PINOTAGE_APP": env["app"],
                   "PINOTAGE_STATE_DIR": str(env["state_dir"]),
                   "PINOTAGE_DEPLOY_TARGET": "docker",
                   "PINOTAGE_DEPLOY_HOST_PORT": str(env["host_port"]),
                   "PINOTAGE_REGISTRY_URL": env["registry"].url,
                   "PINOTAGE_REGISTRY_USER": env["registry"].user,
                   "PINOTAGE_REGISTRY_PASSWORD": env["registry"].password,
                   "PINOTAGE_IMAGE_BUILD_BASE": self.bases[0],
                   "PINOTAGE_IMAGE_FINAL_BASE": self.bases[1],
                   "PINOTAGE_DEPLOY_FRONT_IMAGE": self.bases[2]}
        if "DOCKER_HOST" in os.environ:
            environ["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
        return environ

    def pinotage_run(self, env: dict, *, expect: str, extra: dict[str, str] | None = None):
        """Time one 'pinotage run' (extra: more settings); check it did what the row says (a full run or a no-op)."""
        sample = measure.run_timed([*measure.pinotage_argv(), "run"], env={**self.environ(env), **(extra or {})},
                                   cwd=self.repo,
                                   timeout_s=RUN_TIMEOUT_S, check=False)
        if sample.returncode != 0:
            lines = [line.strip() for line in sample.stderr_tail.splitlines() if line.strip()]
            # The one-line error (and hint) of the CLI boundary, else a traceback's last line.
            said = [line for line in lines if line.startswith(("pinotage: error:", "hint:"))] or lines[-1:]
            raise RuntimeError(f"pinotage run exited {sample.returncode}: {' '.join(said)[:400]}")
        out = sample.stdout
        if expect == "noop":
            if "built:    no" not in out or "already live" not in out:
                raise RuntimeError(f"the no-op run was not a no-op:\n{out}")
            return sample
        target = (extra or {}).get("PINOTAGE_DEPLOY_TARGET", "docker")
        if "built:    no" in out or f"deployed: {target}" not in out:
            raise RuntimeError(f"the cold run did not build and deploy:\n{out}")
        if target == "docker":
            return sample, _last_phases(env)
        history = measure.run_timed([*measure.pinotage_argv(), "history", "--json", "--limit", "1"],
                                    env={**self.environ(env), **(extra or {})}, cwd=self.repo)
        return sample, {k: float(v) for k, v in json.loads(history.stdout)[-1].get("phases_s", {}).items()}

    def commit_slide(self, serial: int) -> str:
        """Append a slide with a fresh marker to the repository's deck and commit it; return the marker."""
        marker = f"slide-{serial}-{secrets.token_hex(6)}"
        deck = self.repo / "docker" / "presentation" / "slides" / "pinotage.md"
        deck.write_text(deck.read_text() + f"\n---\n\n## {marker}\n")
        _git(["-C", str(self.repo), "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-q",
              "-am", marker])
        return marker

    def discard(self, env: dict) -> None:
        """Remove one environment's containers, image tags, registry and files."""
        if env not in self.environments:
            return
        self.environments.remove(env)
        import docker.errors

        for container in self.client.containers.list(all=True, filters={"label": f"org.pinotage.app={env['app']}"}):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True, v=True)
        prefix = env["registry"].url + "/"
        for image in self.client.images.list():
            for tag in image.tags:
                if tag.startswith(prefix):
                    # Untag only: the layers stay, as the layer cache every run here relies on.
                    with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                        self.client.images.remove(tag, noprune=True)
        env["process"].terminate()
        try:
            env["process"].wait(10)
        except subprocess.TimeoutExpired:
            env["process"].kill()
            env["process"].wait(5)
        shutil.rmtree(self.tmp / env["name"], ignore_errors=True)


def _last_phases(env: dict) -> dict[str, float]:
    """Read the phase durations of the newest ledger record of the environment's app."""
    ledgers = sorted(Path(env["state_dir"]).glob("ledger*.jsonl"))
    if not ledgers:
        raise RuntimeError(f"no ledger under {env['state_dir']} after a deploy")
    lines = [line for line in ledgers[-1].read_text().splitlines() if line.strip()]
    return {k: float(v) for k, v in json.loads(lines[-1]).get("phases_s", {}).items()}


def _docker_client():
    try:
        import docker

        client = docker.from_env(timeout=300)
        client.ping()
    except Exception as e:  # the SDK raises several kinds when no engine answers
        raise measure.NotMeasurable(f"no Docker engine answers ({type(e).__name__})") from e
    return client


def _base_images() -> tuple[str, str, str]:
    """Return the build and runtime base images and the front's: from the environment, else the scripts."""
    build = os.environ.get("PINOTAGE_IMAGE_BUILD_BASE")
    runtime = os.environ.get("PINOTAGE_IMAGE_FINAL_BASE")
    if not (build and runtime):
        refs = _script_refs(["scripts/base-image"])
        if not {"build", "runtime"} <= set(refs):
            raise measure.NotMeasurable("no local base images (scripts/base-image printed none)")
        build, runtime = refs["build"], refs["runtime"]
    front = os.environ.get("PINOTAGE_DEPLOY_FRONT_IMAGE") or _script_refs(["scripts/front-image", runtime]).get("front")
    if not front:
        raise measure.NotMeasurable("no front image (scripts/front-image printed none)")
    return build, runtime, front


def _script_refs(argv: list[str]) -> dict[str, str]:
    """Run one of the image scripts; return the NAME=REF lines it printed."""
    done = subprocess.run([str(measure.ROOT / argv[0]), *argv[1:]], capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise measure.NotMeasurable(f"{argv[0]} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


def _start_registry(folder: Path):
    """Start a throwaway authenticated registry the way the test fixtures do."""
    sys.path.insert(0, str(measure.ROOT))
    from tests.conftest import start_registry

    try:
        return start_registry(folder, user="bench", password=secrets.token_urlsafe(18))
    except BaseException as e:
        # need() skips or fails the way pytest does; here it means the row cannot be measured.
        if type(e).__name__ in ("Skipped", "Failed"):
            raise measure.NotMeasurable(str(e)) from None
        raise


def _free_port() -> int:
    sys.path.insert(0, str(measure.ROOT))
    from tests.conftest import free_port

    return free_port()


def _git(argv: list[str]) -> None:
    done = subprocess.run(["git", *argv], capture_output=True, text=True)
    if done.returncode != 0:
        raise measure.NotMeasurable(f"git {' '.join(argv[:2])} failed: {done.stderr.strip()[-300:]}")

