"""The upkeep steps of 'pinotage cluster': drain and remove a node, back up the app's namespaces.

Like the rebuild's steps (``steps.py``), each detects the state it finds before it changes
anything, and every command runs through the step's ``Executor``.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from pipeline.cluster import facts
from pipeline.cluster.steps import (CONTROL_PLANE, RESET_S, UP_S, WAIT_S, StepContext, decode, encode, kubectl,
                                    kubectl_encoded, ssh)
from pipeline.errors import BadInput


# --- drain, remove ---------------------------------------------------------

def drain(step: StepContext, name: str) -> None:
    """Evict a node's pods and mark it unschedulable, unless it is not in the cluster."""
    step.topo.node(name)
    if _is_node(step, name):
        _drain(step, name)


def remove(step: StepContext, name: str) -> None:
    """Drain a worker, delete its Node, reset kubeadm on it and destroy its VM; each only if still there."""
    if name == CONTROL_PLANE:
        raise BadInput(f"NODE {name!r}: the control plane cannot be removed",
                       hint="to start over, destroy every VM (docs/cluster.md) and rebuild")
    step.topo.node(name)
    run = step.executor
    if _is_node(step, name):
        _drain(step, name)
        run.act(kubectl("delete", "node", name, "--ignore-not-found"))
    states = facts.machine_states(run.check(["vagrant", "status", "--machine-readable", name],
                                            assume=f"0,{name},state,running\n").output)
    state = states.get(name, "not_created")
    if state == "running":
        run.act(ssh(name, "sudo kubeadm reset --force"), timeout_s=RESET_S)
    if state != "not_created":
        run.act(["vagrant", "destroy", "--force", name], timeout_s=UP_S)
    else:
        run.note(f"{name} has no VM")


def _is_node(step: StepContext, name: str) -> bool:
    names = facts.node_names(step.executor.check(kubectl("get", "nodes", "-o", "name"), assume=f"node/{name}\n").output)
    if name not in names:
        step.executor.note(f"{name} is not a node of the cluster")
    return name in names


def _drain(step: StepContext, name: str) -> None:
    step.executor.act(kubectl("drain", name, "--ignore-daemonsets", "--delete-emptydir-data", f"--timeout={WAIT_S}s"),
                timeout_s=WAIT_S + 30)


# --- backup ----------------------------------------------------------------

def backup(step: StepContext, *, now: datetime.datetime | None = None) -> Path:
    """Export the app's namespaces as YAML, one file each, into a new folder under state_dir/backups."""
    import yaml

    run, config = step.executor, step.config
    namespaces = list(dict.fromkeys([config.deploy.namespace, *config.cluster.backup_namespaces]))
    listed = run.check(kubectl_encoded("api-resources", "--verbs=list", "--namespaced", "-o", "name"),
                       assume=encode("configmaps\nservices\ndeployments.apps\nsecrets\n"))
    types = facts.backup_types(decode(listed.output))
    present = {line.strip().removeprefix("namespace/") for line in
               run.check(kubectl("get", "namespaces", "-o", "name"),
                         assume="".join(f"namespace/{ns}\n" for ns in namespaces)).output.splitlines()}
    stamp = (now or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    folder = config.path(config.state_dir) / "backups" / stamp
    if not run.dry_run:
        folder.mkdir(parents=True, exist_ok=True)
    for namespace in namespaces:
        if namespace not in present:
            run.note(f"namespace {namespace} does not exist: nothing to export")
            continue
        listing = run.check(kubectl_encoded("-n", namespace, "get", ",".join(types), "-o", "json"),
                            assume=encode('{"items": []}'))
        objects = facts.exportable(decode(listing.output))
        header = (f"# {namespace}: {len(objects)} objects exported by 'pinotage cluster backup' on {stamp}.\n"
                  "# Secrets are left out on purpose; re-create them from their source. Apply with kubectl apply -f.\n")
        namespace_object = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
        run.write(str(folder / f"{namespace}.yaml"),
                  header + yaml.safe_dump_all([namespace_object, *objects], sort_keys=False))
    return folder
