"""The steps of 'pinotage cluster': each detects the state it finds, then converges.

A step never calls another step; ``rebuild.py`` puts them in order. Every command runs on
the host (vagrant, packer) or on a node through ``vagrant ssh NODE -c`` (kubeadm, kubectl),
always through the step's ``Executor``. Files reach the nodes on standard input, so the
cluster needs no shared folder, and a join token only ever lives in memory and in a pipe.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import ipaddress
import json
import shlex
import tarfile
from pathlib import Path
from typing import Callable, Mapping

from pipeline.cluster import facts
from pipeline.cluster.executor import Executor
from pipeline.cluster.topology import (BOX_DIR, CONTROL_PLANE, KUBEADM_INIT, KUBEADM_JOIN, PACKER_TEMPLATE,
                                       Node, Topology, box_file_stem, render_init, render_join)
from pipeline.config import Config
from pipeline.errors import BadInput, ClusterCheckFailed, CommandFailed

BOX_BUILD_S = 3600
BOX_ADD_S = 900
UP_S = 1800
INIT_S = 900
JOIN_S = 600
RESET_S = 300
WAIT_S = 300  # kubectl's own --timeout for rollouts, node readiness and drains
SMOKE_S = 180
JOIN_TOKEN_TTL = "15m"
SMOKE_NAMESPACE = "pinotage-smoke"
FLANNEL_MANIFEST = "k8s/network/flannel.yaml"
STORAGE_NAMESPACE = "local-path-storage"  # k8s/storage
MANIFESTS_ON_NODE = "pinotage/k8s"  # under the vagrant user's home on the control plane

# One word on the last line says what a node holds; the steps decide from it.
CONTROL_PLANE_STATE = ("if sudo test -f /etc/kubernetes/admin.conf; then echo initialised; "
                       "elif sudo test -e /etc/kubernetes/manifests/kube-apiserver.yaml; then echo partial; "
                       "else echo fresh; fi")
WORKER_STATE = "if sudo test -f /etc/kubernetes/kubelet.conf; then echo joined; else echo fresh; fi"

# What a dry run assumes a fresh machine answers: a placeholder, never a real token.
DRY_RUN_JOIN = ("kubeadm join {endpoint} --token abcdef.0123456789abcdef "
                "--discovery-token-ca-cert-hash sha256:" + "0" * 64)


@dataclasses.dataclass(frozen=True)
class StepContext:
    config: Config
    topo: Topology
    executor: Executor  # runs (or, in a dry run, shows) every command of the step
    environ: Mapping[str, str]
    force: bool = False  # box: build again even when that name and version are installed
    # redeploy: deploy the last good release with the new cluster's admin kubeconfig (held in memory),
    # saying progress; return what happened. The CLI hands in the runner's (cli.cluster_redeployer).
    redeploy: Callable[[str, Callable[[str], None]], str] | None = None


def ssh(node: str, script: str) -> list[str]:
    """Build the argv that runs a shell line on a node."""
    return ["vagrant", "ssh", node, "--no-tty", "-c", script]


def kubectl(*args: str) -> list[str]:
    """Build the argv that runs kubectl on the control plane (as the vagrant user, with admin.conf)."""
    return ssh(CONTROL_PLANE, shlex.join(["kubectl", *args]))


def kubectl_encoded(*args: str) -> list[str]:
    """Build a kubectl argv whose whole output comes back as one base64 line.

    The shell keeps only the last lines of a command's output; JSON listings are longer.
    """
    return ssh(CONTROL_PLANE, f"set -o pipefail; {shlex.join(['kubectl', *args])} | base64 -w0")


def decode(output: str) -> str:
    """Undo kubectl_encoded's base64."""
    lines = [line for line in output.splitlines() if line.strip()]
    return base64.b64decode(lines[-1]).decode() if lines else ""


def encode(text: str) -> str:
    """Encode what a dry run assumes a kubectl_encoded command answers."""
    return base64.b64encode(text.encode()).decode()


# --- box -------------------------------------------------------------------

def box(step: StepContext) -> None:
    """Build the node box with Packer and add it to Vagrant, unless that name and version are there.

    With ``step.force`` it builds the box again from scratch and replaces the installed one.
    """
    cluster, run = step.config.cluster, step.executor
    out_dir = step.config.path(BOX_DIR) / box_file_stem(step.config)
    package = out_dir / "package.box"
    if step.force:
        run.note(f"--force: building box {cluster.box_name} {cluster.box_version} again")
        run.remove(str(package))
    else:
        installed = facts.installed_boxes(run.check(["vagrant", "box", "list", "--machine-readable"],
                                                    assume="").output)
        if (cluster.box_name, cluster.box_version) in installed:
            run.note(f"box {cluster.box_name} {cluster.box_version} is installed (--force builds it again)")
            return
    if package.is_file() and not step.force:
        run.note(f"reusing {package} (delete it to build it again)")
    else:
        run.act(["packer", "build", "-force",
                 "-var", f"base_box={cluster.base_box}",
                 "-var", f"kubernetes_version={cluster.kubernetes_version}",
                 "-var", f"output_dir={out_dir}",
                 str(step.config.path(PACKER_TEMPLATE))], timeout_s=BOX_BUILD_S)
        if not run.dry_run and not package.is_file():
            raise ClusterCheckFailed(f"packer build finished without making {package}",
                                     hint="see packer's output above")
    metadata = out_dir / "metadata.json"
    run.write(str(metadata), box_metadata(step.config, package))
    run.act(["vagrant", "box", "add", "--force", str(metadata)], timeout_s=BOX_ADD_S)


def box_metadata(config: Config, package: Path) -> str:
    """Describe the built box as Vagrant box metadata, which carries its name and version."""
    provider = {"name": "virtualbox", "url": package.resolve().as_uri()}
    if package.is_file():
        digest = hashlib.sha256()
        with package.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        provider.update(checksum_type="sha256", checksum=digest.hexdigest())
    return json.dumps({
        "name": config.cluster.box_name,
        "description": f"Debian kubeadm node, Kubernetes {config.cluster.kubernetes_version}",
        "versions": [{"version": config.cluster.box_version, "providers": [provider]}],
    }, indent=2) + "\n"


# --- up --------------------------------------------------------------------

def up(step: StepContext) -> None:
    """Start the VMs that are not running (Vagrant creates the missing ones)."""
    states = facts.machine_states(step.executor.check(["vagrant", "status", "--machine-readable"], assume="").output)
    down = [node.name for node in step.topo.nodes if states.get(node.name) != "running"]
    if not down:
        step.executor.note("every VM is running")
        return
    step.executor.act(["vagrant", "up", "--provider", "virtualbox", *down], timeout_s=UP_S)


# --- init ------------------------------------------------------------------

def init(step: StepContext) -> None:
    """Initialise the control plane from scripts/kubeadm/init.yaml, unless it is; reset a half-done one."""
    run = step.executor
    state = facts.state_word(run.check(ssh(CONTROL_PLANE, CONTROL_PLANE_STATE), assume="fresh").output,
                             ("initialised", "partial", "fresh"))
    if state == "initialised":
        run.note("the control plane is initialised")
    else:
        if state == "partial":
            run.note("an earlier kubeadm init stopped half-way: resetting the control plane")
            run.act(ssh(CONTROL_PLANE, "sudo kubeadm reset --force"), timeout_s=RESET_S)
        # --skip-token-print: kubeadm init would print its own bootstrap token otherwise
        run.act(ssh(CONTROL_PLANE, "sudo kubeadm init --config /dev/stdin --skip-token-print"),
                input_text=render_init(step.config, step.topo), input_label=f"{KUBEADM_INIT} (filled in)",
                timeout_s=INIT_S)
    # kubectl on the control plane runs as the vagrant user; give it the admin kubeconfig every time,
    # since a reset and a new init replace the cluster's CA.
    run.act(ssh(CONTROL_PLANE, 'mkdir -p "$HOME/.kube" && sudo install -m 0600 -o "$(id -u)" -g "$(id -g)" '
                               '/etc/kubernetes/admin.conf "$HOME/.kube/config"'))


# --- join ------------------------------------------------------------------

def join(step: StepContext) -> None:
    """Join each worker that is not a node yet, with a token made at that moment."""
    run = step.executor
    joined = facts.node_names(run.check(kubectl("get", "nodes", "-o", "name"),
                                        assume=f"node/{CONTROL_PLANE}\n").output)
    for worker in step.topo.workers:
        if worker.name in joined:
            run.note(f"{worker.name} is a node")
            continue
        state = facts.state_word(run.check(ssh(worker.name, WORKER_STATE), assume="fresh").output,
                                 ("joined", "fresh"))
        if state == "joined":
            run.note(f"{worker.name} holds a kubelet.conf but is not a node: resetting it")
            run.act(ssh(worker.name, "sudo kubeadm reset --force"), timeout_s=RESET_S)
        _join_worker(step, worker)


def _join_worker(step: StepContext, worker: Node) -> None:
    run = step.executor
    argv = ssh(worker.name, "sudo kubeadm join --config /dev/stdin")
    for attempt in (1, 2):
        made = run.secret(ssh(CONTROL_PLANE, f"sudo kubeadm token create --print-join-command --ttl {JOIN_TOKEN_TTL}"),
                          assume=DRY_RUN_JOIN.format(endpoint=step.topo.api_server_endpoint))
        ticket = facts.join_ticket(made.output)
        config_text = render_join(step.config, step.topo, worker, token=ticket.token,
                                  ca_cert_hash=ticket.ca_cert_hash, api_server_endpoint=ticket.api_server_endpoint)
        try:
            done = run.act(argv, input_text=config_text, check=False, timeout_s=JOIN_S,
                           input_label=f"{KUBEADM_JOIN} (filled in with the fresh token)")
        finally:
            # One token per join, gone right after it: nothing is left to steal or to expire later.
            run.act(ssh(CONTROL_PLANE, f"sudo kubeadm token delete {ticket.token_id}"), check=False, quiet=True)
        if done.ok:
            return
        if attempt == 1 and facts.token_rejected(done.output):
            run.note(f"{worker.name}: the control plane refused the token (expired?); joining with a fresh one")
            continue
        raise CommandFailed(argv, done.returncode, done.output,
                            hint=f"see the output above; 'pinotage cluster join' again resets {worker.name} if needed")


# --- network ---------------------------------------------------------------

def network(step: StepContext) -> None:
    """Apply the pinned flannel add-on unless it runs already, then wait for it and for every node."""
    run = step.executor
    from pipeline import files

    manifest = step.config.path(FLANNEL_MANIFEST)
    image, pod_network = flannel_facts(files.read_text(manifest, what="network add-on manifest",
                                                       hint="k8s/network/ holds the pinned flannel manifest"),
                                       FLANNEL_MANIFEST)
    if pod_network != step.config.cluster.pod_subnet:
        raise BadInput(f"cluster.pod_subnet: {step.config.cluster.pod_subnet} differs from the Network "
                       f"{pod_network} of {FLANNEL_MANIFEST}", hint="the two must be the same network")
    current = run.check(kubectl("-n", "kube-flannel", "get", "daemonset", "kube-flannel-ds", "--ignore-not-found",
                                "-o", "jsonpath={.spec.template.spec.containers[0].image}"), assume="").output.strip()
    if current == image:
        run.note(f"flannel runs {image}")
    else:
        _upload_manifests(step)
        run.act(kubectl("apply", "-f", f"{MANIFESTS_ON_NODE}/network/flannel.yaml"))
    run.act(kubectl("-n", "kube-flannel", "rollout", "status", "daemonset/kube-flannel-ds", f"--timeout={WAIT_S}s"),
            timeout_s=WAIT_S + 30)
    run.act(kubectl("wait", "--for=condition=Ready", "node", "--all", f"--timeout={WAIT_S}s"), timeout_s=WAIT_S + 30)


def flannel_facts(manifest_text: str, where: str = FLANNEL_MANIFEST) -> tuple[str, str]:
    """Return the flanneld image and the pod Network from flannel's manifest; BadInput when it holds neither."""
    import yaml

    image = network_cidr = ""
    try:
        for doc in yaml.safe_load_all(manifest_text):
            if not isinstance(doc, dict):
                continue
            if doc.get("kind") == "DaemonSet":
                image = next(c["image"] for c in doc["spec"]["template"]["spec"]["containers"]
                             if c["name"] == "kube-flannel")
            if doc.get("kind") == "ConfigMap" and "net-conf.json" in (doc.get("data") or {}):
                network_cidr = json.loads(doc["data"]["net-conf.json"])["Network"]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise BadInput(f"{where}{f':{mark.line + 1}' if mark else ''}: not valid YAML") from None
    except (KeyError, TypeError, StopIteration, ValueError, AttributeError):
        raise BadInput(f"{where}: not flannel's manifest (no kube-flannel DaemonSet container or net-conf.json"
                       " Network where flannel puts them)") from None
    if not image or not network_cidr:
        raise BadInput(f"{where}: holds no kube-flannel DaemonSet or no net-conf.json Network")
    return image, network_cidr


def _upload_manifests(step: StepContext) -> None:
    """Copy k8s/ to the control plane, replacing what an earlier run copied."""
    payload = "" if step.executor.dry_run else manifests_archive(step.config.path("k8s"))
    step.executor.act(ssh(CONTROL_PLANE, f"rm -rf {MANIFESTS_ON_NODE} && mkdir -p {MANIFESTS_ON_NODE} && "
                                   f"base64 -d | tar -xzf - -C {MANIFESTS_ON_NODE}"),
                input_text=payload, input_label="k8s/ (tar.gz, base64)")


def manifests_archive(folder: Path) -> str:
    """Pack a folder as a base64 tar.gz, the form that crosses 'vagrant ssh' standard input."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(folder)))
    return base64.b64encode(buffer.getvalue()).decode() + "\n"


# --- label -----------------------------------------------------------------

def label(step: StepContext) -> None:
    """Give every worker the worker role label, unless it has it."""
    run = step.executor
    labelled = facts.node_names(run.check(kubectl("get", "nodes", "-l", "node-role.kubernetes.io/worker",
                                                  "-o", "name"), assume="").output)
    for worker in step.topo.workers:
        if worker.name in labelled:
            run.note(f"{worker.name} is labelled")
            continue
        run.act(kubectl("label", "node", worker.name, "node-role.kubernetes.io/worker=", "--overwrite"))


# --- smoke -----------------------------------------------------------------

def storage(step: StepContext) -> None:
    """Install the default StorageClass (k8s/storage: the pinned local-path provisioner) and wait for it."""
    _upload_manifests(step)
    step.executor.act(kubectl("apply", "-k", f"{MANIFESTS_ON_NODE}/storage"))
    step.executor.act(kubectl("-n", STORAGE_NAMESPACE, "rollout", "status", "deployment/local-path-provisioner",
                        f"--timeout={WAIT_S}s"), timeout_s=WAIT_S + 30)


def smoke(step: StepContext) -> None:
    """Run k8s/smoke on the workers, check pod-to-pod traffic across nodes, CoreDNS and a bound claim; delete it."""
    run = step.executor
    workers = [w.name for w in step.topo.workers]
    _upload_manifests(step)
    run.act(kubectl("apply", "-k", f"{MANIFESTS_ON_NODE}/smoke"))
    try:
        run.act(kubectl("-n", SMOKE_NAMESPACE, "rollout", "status", "deployment/hello", f"--timeout={SMOKE_S}s"),
                timeout_s=SMOKE_S + 30)
        # the default StorageClass binds a claim once its pod is scheduled (WaitForFirstConsumer)
        run.act(kubectl("-n", SMOKE_NAMESPACE, "wait", "--for=jsonpath={.status.phase}=Bound", "pvc/smoke-claim",
                        f"--timeout={SMOKE_S}s"), timeout_s=SMOKE_S + 30)
        listing = run.check(kubectl_encoded("-n", SMOKE_NAMESPACE, "get", "pods", "-l", "app=hello", "-o", "json"),
                            assume=encode(_dry_run_pods(workers)))
        a, b = facts.smoke_pods(decode(listing.output), workers)
        run.note(f"{a.name} runs on {a.node}, {b.name} on {b.node}")

        def exec_in_a(*argv: str) -> str:
            done = run.act(kubectl("-n", SMOKE_NAMESPACE, "exec", a.name, "--", *argv), check=False,
                           timeout_s=60)
            return done.output if done.ok else ""

        kubernetes_ip = str(ipaddress.IPv4Network(step.topo.service_subnet)[1])
        checks = [
            (f"pod-to-pod from {a.node} to {b.node}", f"hello from {b.name}",
             exec_in_a("wget", "-qO-", "-T", "5", f"http://{b.ip}:8080/")),
            ("CoreDNS", kubernetes_ip, exec_in_a("nslookup", "kubernetes.default.svc.cluster.local")),
            ("the Service by its DNS name", "hello from",
             exec_in_a("wget", "-qO-", "-T", "5", f"http://hello.{SMOKE_NAMESPACE}.svc.cluster.local/")),
        ]
        if not run.dry_run:
            for what, expected, answer in checks:
                if expected not in answer:
                    raise ClusterCheckFailed(f"smoke: {what} failed (expected {expected!r} in the answer)",
                                             hint="check that flannel uses eth1 and that CoreDNS runs: "
                                                  "kubectl -n kube-system get pods -o wide")
                run.note(f"{what}: ok")
    finally:
        run.act(kubectl("delete", "namespace", SMOKE_NAMESPACE, "--ignore-not-found", "--wait=true",
                        f"--timeout={SMOKE_S}s"), timeout_s=SMOKE_S + 30)


def _dry_run_pods(workers: list[str]) -> str:
    ready = [{"type": "Ready", "status": "True"}]
    items = [{"metadata": {"name": f"hello-{i}"}, "spec": {"nodeName": node},
              "status": {"phase": "Running", "podIP": f"10.244.{i}.2", "conditions": ready}}
             for i, node in enumerate(workers[:2], start=1)]
    return json.dumps({"items": items})


# --- redeploy --------------------------------------------------------------

KUBECONFIG_ON_NODE = 'cat "$HOME/.kube/config"'  # the admin kubeconfig the init step installed


def redeploy(step: StepContext) -> None:
    """Apply the app's manifests, then deploy the last good release through the Kubernetes target."""
    run, config = step.executor, step.config
    _upload_manifests(step)
    # The kustomization holds the namespace, the deployer ServiceAccount, Role and RoleBinding
    # (the credentials the pipeline deploys with), the Deployment and the Service.
    run.act(kubectl("apply", "-k", f"{MANIFESTS_ON_NODE}/{config.app}"))
    admin = run.secret(ssh(CONTROL_PLANE, KUBECONFIG_ON_NODE), assume="")
    if run.dry_run:
        run.note("then deploy the last good release (the cluster's ledger, else the newest backup) through the"
                 " Kubernetes target: Lease, rollout gate, rollback, a ledger record")
        return
    if step.redeploy is None:
        raise RuntimeError("the redeploy step was given no deploy to run")  # a bug: rebuild.run is always given one
    run.note(step.redeploy(admin.output, run.note))
