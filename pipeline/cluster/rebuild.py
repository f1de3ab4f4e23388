"""Put the cluster steps in order and run one of them, or all of them for 'rebuild'.

This is the cluster's runner: the one place that sequences steps, times them, and
builds the shells they run their commands through. It names the steps for the CLI
too, so it imports the steps themselves only when it runs one: ``pinotage --help``
reads these tables and nothing more.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Callable, Mapping

from pipeline.errors import BadInput

if TYPE_CHECKING:
    from pipeline.config import Config
    from pipeline.shell import Shell

# Each step is the function of that name in pipeline/cluster/steps.py; the text is its --help.
STEPS: dict[str, str] = {
    "box": "build the node box with Packer and add it to Vagrant (unless that name and version are there)",
    "up": "start the control plane and worker VMs that are not running",
    "init": "kubeadm init the control plane from scripts/kubeadm/init.yaml (unless it is)",
    "join": "join the workers that are not nodes yet, each with a fresh token",
    "network": "apply the pinned flannel add-on and wait for every node to be Ready",
    "label": "give the workers their role label",
    "storage": "install the default StorageClass (k8s/storage, a pinned local-path provisioner)",
    "smoke": "run k8s/smoke on the workers, check pod-to-pod traffic, CoreDNS and that a claim binds, then delete it",
    "redeploy": "apply the app's manifests and deployer credentials, then roll out the last good image",
    "backup": "export the app's namespaces as YAML under state_dir/backups",
}
NODE_STEPS: dict[str, str] = {  # these take a node name
    "drain": "evict a node's pods and mark it unschedulable",
    "remove": "drain a worker, delete its Node, reset it and destroy its VM",
}
REBUILD = ("box", "up", "init", "join", "network", "label", "storage", "smoke", "redeploy")
REBUILD_HELP = f"run every step in order: {', '.join(REBUILD)}"


def step_function(name: str) -> Callable[..., object]:
    """Return the function of a named step: a rebuild step (steps.py) or an upkeep one (upkeep.py)."""
    from pipeline.cluster import steps, upkeep

    return getattr(steps, name, None) or getattr(upkeep, name)


def run(step: str, *, config: Config, environ: Mapping[str, str], node: str | None = None, dry_run: bool = False,
        force: bool = False, shell: Shell | None = None, quiet: Shell | None = None,
        say: Callable[[str], None] | None = None,
        redeploy: Callable[[str, Callable[[str], None]], str] | None = None) -> int:
    """Run one step (or the whole rebuild) and return the exit code; shells default to real ones."""
    from pipeline.cluster import steps
    from pipeline.cluster.executor import Executor
    from pipeline.cluster.topology import VAGRANT_DIR, topology, vagrant_env

    if step != "rebuild" and step not in STEPS and step not in NODE_STEPS:
        raise BadInput(f"cluster: no step {step!r}", hint=f"the steps: {', '.join([*STEPS, *NODE_STEPS])}")
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
    step_context = steps.StepContext(config=config, topo=topo, executor=executor, environ=environ, force=force,
                                     redeploy=redeploy)
    if dry_run:
        say("dry run: nothing runs, not even the checks; each check is shown and assumed to find a fresh machine")

    if step in NODE_STEPS:
        executor.begin(f"{step} {node}")
        step_function(step)(step_context, node or "")
        return 0
    names = REBUILD if step == "rebuild" else (step,)
    timings: list[str] = []
    for name in names:
        executor.begin(name)
        started = time.monotonic()
        step_function(name)(step_context)
        timings.append(f"{name} {time.monotonic() - started:.1f} s")
    if len(names) > 1:
        say(f"==> cluster rebuild {'planned' if dry_run else 'done'}: {', '.join(timings)}")
    return 0
