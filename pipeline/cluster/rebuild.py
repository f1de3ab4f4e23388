"""Put the cluster steps in order and run one of them, or all of them for 'rebuild'.

This is the cluster's runner: the one place that sequences steps, times them, and
builds the shells they run their commands through.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Mapping

from pipeline.cluster import steps
from pipeline.cluster.executor import Executor
from pipeline.cluster.topology import VAGRANT_DIR, topology, vagrant_env
from pipeline.config import Config
from pipeline.shell import Shell

REBUILD = ("box", "up", "init", "join", "network", "label", "smoke", "redeploy")
STEPS: dict[str, Callable[[steps.StepContext], object]] = {
    "box": steps.box, "up": steps.up, "init": steps.init, "join": steps.join, "network": steps.network,
    "label": steps.label, "smoke": steps.smoke, "redeploy": steps.redeploy, "backup": steps.backup,
}
NODE_STEPS: dict[str, Callable[[steps.StepContext, str], None]] = {"drain": steps.drain, "remove": steps.remove}


def run(step: str, *, config: Config, environ: Mapping[str, str], node: str | None = None, dry_run: bool = False,
        force: bool = False, shell: Shell | None = None, quiet: Shell | None = None,
        say: Callable[[str], None] | None = None) -> int:
    """Run one step (or the whole rebuild) and return the exit code; shells default to real ones."""
    topo = topology(config)  # validates the cluster settings before anything runs
    if shell is None or quiet is None:
        from pipeline.shell import SubprocessShell, print_progress

        env = vagrant_env(config, environ)
        cwd = str(config.path(VAGRANT_DIR))
        shell = shell or SubprocessShell(cwd=cwd, env=env, progress=print_progress)
        quiet = quiet or SubprocessShell(cwd=cwd, env=env)
    if say is None:
        # A dry run's listing is its result (stdout); a real run's lines are progress (stderr).
        stream = sys.stdout if dry_run else sys.stderr
        say = lambda line: print(line, file=stream, flush=True)  # noqa: E731
    executor = Executor(shell=shell, quiet=quiet, dry_run=dry_run, say=say)
    ctx = steps.StepContext(config=config, topo=topo, run=executor, environ=environ, force=force)
    if dry_run:
        say("dry run: nothing runs, not even the checks; each check is shown and assumed to find a fresh machine")

    if step in NODE_STEPS:
        executor.begin(f"{step} {node}")
        NODE_STEPS[step](ctx, node or "")
        return 0
    names = REBUILD if step == "rebuild" else (step,)
    timings: list[str] = []
    for name in names:
        executor.begin(name)
        started = time.monotonic()
        STEPS[name](ctx)
        timings.append(f"{name} {time.monotonic() - started:.1f} s")
    if len(names) > 1:
        say(f"==> cluster rebuild {'planned' if dry_run else 'done'}: {', '.join(timings)}")
    return 0
