"""The cluster steps through the one command runner: the exact command sequences.

The shell is a double that answers from a script, in order, and refuses any command it was
not told about; the steps, the executor and the fact readers are the real ones. The redeploy
step's deploy talks to the Kubernetes API double (tests/fakes/kube), whose admin kubeconfig the
scripted control plane hands over.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import json
import shutil
import time
from pathlib import Path

import pytest
import yaml

from pipeline import cli
from pipeline import config as config_module
from pipeline.cluster import rebuild, steps, upkeep
from pipeline.cluster.executor import Executor
from pipeline.cluster.steps import CONTROL_PLANE_STATE, WORKER_STATE
from pipeline.cluster.topology import topology
from pipeline.errors import BadInput, ClusterCheckFailed, CommandFailed
from pipeline.ledger import Record
from pipeline.shell import Completed

ROOT = Path(__file__).resolve().parents[2]
TOKEN_1 = "abcdef.0123456789abcdef"
TOKEN_2 = "ghijkl.ghijklmnopqrstuv"
CA_HASH = "sha256:" + "3" * 64
IMAGE = "127.0.0.1:5000/pinotage/presentation@sha256:" + "4" * 64
OLD_IMAGE = "127.0.0.1:5000/pinotage/presentation@sha256:" + "5" * 64


class Refused(AssertionError):
    pass


@dataclasses.dataclass
class Call:
    argv: tuple[str, ...]
    channel: str  # "loud" (progress shown) or "quiet"
    input_text: str | None


class ScriptedShell:
    """Answer the scripted commands in order; refuse a command out of order or not in the script."""

    def __init__(self, script: list[tuple]):
        # each item: (argv, output[, exit code[, effect]]); effect() does what the real command leaves behind
        self.script = [(tuple(item[0]), item[1], item[2] if len(item) > 2 else 0, item[3] if len(item) > 3 else None)
                       for item in script]
        self.calls: list[Call] = []

    def channel(self, name: str):
        outer = self

        class Channel:
            def run(self, argv, *, timeout_s=600, check=True, input_text=None):
                return outer._run(list(argv), name, check, input_text)
        return Channel()

    def _run(self, argv, channel, check, input_text):
        if not self.script:
            raise Refused(f"unexpected command (the script is done): {argv}")
        want, output, code, effect = self.script.pop(0)
        if tuple(argv) != want:
            raise Refused(f"unexpected command:\n  got  {argv}\n  want {list(want)}")
        if effect is not None:
            effect()
        self.calls.append(Call(tuple(argv), channel, input_text))
        done = Completed(tuple(argv), code, output)
        if check and not done.ok:
            raise CommandFailed(list(argv), code, output)
        return done


def ssh(node, script):
    return ["vagrant", "ssh", node, "--no-tty", "-c", script]


def kubectl(line):
    return ssh("control", "kubectl " + line)


def encoded(line, value):
    return (ssh("control", f"set -o pipefail; kubectl {line} | base64 -w0"),
            base64.b64encode(json.dumps(value).encode()).decode() + "\n")


def join_command(token):
    return f"kubeadm join 192.168.56.10:6443 --token {token} \\\n\t--discovery-token-ca-cert-hash {CA_HASH} \n"


UPLOAD = ssh("control", "rm -rf pinotage/k8s && mkdir -p pinotage/k8s && base64 -d | tar -xzf - -C pinotage/k8s")
TOKEN_CREATE = ssh("control", "sudo kubeadm token create --print-join-command --ttl 15m")
FLANNEL_IMAGE_CHECK = kubectl("-n kube-flannel get daemonset kube-flannel-ds --ignore-not-found "
                              "-o 'jsonpath={.spec.template.spec.containers[0].image}'")
KUBECONFIG_READ = ssh("control", 'cat "$HOME/.kube/config"')
KUBECONFIG = ssh("control", 'mkdir -p "$HOME/.kube" && sudo install -m 0600 -o "$(id -u)" -g "$(id -g)" '
                            '/etc/kubernetes/admin.conf "$HOME/.kube/config"')
NO_BOXES = "1700000000,,ui,info,There are no installed boxes! Use `vagrant box add` to add some.\n"
OUR_BOX = ("1700000000,,box-name,debian/bookworm64\n1700000000,,box-provider,virtualbox\n"
           "1700000000,,box-version,12.20240905.1\n1700000000,,box-name,pinotage/kubeadm\n"
           "1700000000,,box-provider,virtualbox\n1700000000,,box-version,1.31.4\n")


def status(**states):
    return "".join(f"1700000000,{name},provider-name,virtualbox\n1700000000,{name},state,{state}\n"
                   for name, state in states.items())


def pods(*placed):
    ready = [{"type": "Ready", "status": "True"}]
    return {"items": [{"metadata": {"name": name}, "spec": {"nodeName": node},
                       "status": {"phase": "Running", "podIP": ip, "conditions": ready}}
                      for name, node, ip in placed]}


def join_worker(name, token, *, fails_with="", code=1):
    token_id = token.split(".")[0]
    join = (ssh(name, "sudo kubeadm join --config /dev/stdin"), fails_with or "This node has joined the cluster",
            code if fails_with else 0)
    return [(TOKEN_CREATE, join_command(token)), join,
            (ssh("control", f"sudo kubeadm token delete {token_id}"), f'bootstrap token "{token_id}" deleted')]


def network_and_after(flannel_running: bool, labelled: str, admin_kubeconfig: str):
    image = "docker.io/flannel/flannel:v0.26.1"
    seq = [(FLANNEL_IMAGE_CHECK, image if flannel_running else "")]
    if not flannel_running:
        seq += [(UPLOAD, ""), (kubectl("apply -f pinotage/k8s/network/flannel.yaml"), "daemonset.apps/kube-flannel-ds created")]
    seq += [
        (kubectl("-n kube-flannel rollout status daemonset/kube-flannel-ds --timeout=300s"), "successfully rolled out"),
        (kubectl("wait --for=condition=Ready node --all --timeout=300s"), "node/control condition met"),
        (kubectl("get nodes -l node-role.kubernetes.io/worker -o name"), labelled),
    ]
    seq += [(kubectl(f"label node {w} node-role.kubernetes.io/worker= --overwrite"), f"node/{w} labeled")
            for w in ("worker1", "worker2") if f"node/{w}" not in labelled]
    return seq + storage_commands() + smoke_ok() + redeploy_commands(admin_kubeconfig)


def storage_commands():
    return [
        (UPLOAD, ""),
        (kubectl("apply -k pinotage/k8s/storage"), "storageclass.storage.k8s.io/local-path created"),
        (kubectl("-n local-path-storage rollout status deployment/local-path-provisioner --timeout=300s"),
         'deployment "local-path-provisioner" successfully rolled out'),
    ]


def redeploy_commands(admin_kubeconfig: str):
    return [
        (UPLOAD, ""),
        (kubectl("apply -k pinotage/k8s/presentation"), "deployment.apps/presentation configured"),
        (KUBECONFIG_READ, admin_kubeconfig),
    ]


def smoke_ok(*, cross_node_answer="hello from hello-b"):
    return [
        (UPLOAD, ""),
        (kubectl("apply -k pinotage/k8s/smoke"), "deployment.apps/hello created"),
        (kubectl("-n pinotage-smoke rollout status deployment/hello --timeout=180s"), "successfully rolled out"),
        (kubectl("-n pinotage-smoke wait '--for=jsonpath={.status.phase}=Bound' pvc/smoke-claim --timeout=180s"),
         "persistentvolumeclaim/smoke-claim condition met"),
        encoded("-n pinotage-smoke get pods -l app=hello -o json",
                pods(("hello-a", "worker1", "10.244.1.2"), ("hello-b", "worker2", "10.244.2.2"))),
        (kubectl("-n pinotage-smoke exec hello-a -- wget -qO- -T 5 http://10.244.2.2:8080/"), cross_node_answer),
        (kubectl("-n pinotage-smoke exec hello-a -- nslookup kubernetes.default.svc.cluster.local"),
         "Server:\t\t10.96.0.10\n\nName:\tkubernetes.default.svc.cluster.local\nAddress: 10.96.0.1\n"),
        (kubectl("-n pinotage-smoke exec hello-a -- wget -qO- -T 5 http://hello.pinotage-smoke.svc.cluster.local/"),
         "hello from hello-b"),
        (kubectl("delete namespace pinotage-smoke --ignore-not-found --wait=true --timeout=180s"),
         'namespace "pinotage-smoke" deleted'),
    ]


def ledger_records() -> list[dict]:
    """The app's deploys: the newest good one is IMAGE (a later attempt failed)."""
    return [dataclasses.asdict(Record(id=at, app="presentation", commit=commit * 40, image=image, target="kubernetes",
                                      build_url="", started_at=at, finished_at=at, outcome=outcome))
            for image, commit, outcome, at in ((OLD_IMAGE, "a", "deployed", "2026-01-01T10:00:00+00:00"),
                                               (IMAGE, "c", "deployed", "2026-01-02T10:00:00+00:00"),
                                               (OLD_IMAGE, "d", "failed", "2026-01-03T10:00:00+00:00"))]


LEDGER_CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "pinotage-ledger-presentation", "namespace": "presentation"},
                    "data": {"records.json": json.dumps(ledger_records())}}


@dataclasses.dataclass
class Cluster:
    fake: object
    admin: object  # a kubernetes ApiClient
    kubeconfig: str  # the admin kubeconfig's text, as the control plane hands it over


@pytest.fixture
def cluster(tmp_path):
    """The new cluster's API (the double), with the app's namespace and its ledger of deploys."""
    import kubernetes

    from tests.fakes.kube import FakeKube

    fake = FakeKube(token="admin-" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:12], pod_start_s=0.05).start()
    path = fake.kubeconfig(tmp_path / "admin.yaml")
    text = path.read_text()
    path.unlink()
    admin = kubernetes.config.new_client_from_config_dict(yaml.safe_load(text), persist_config=False)
    core = kubernetes.client.CoreV1Api(admin)
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "presentation"}})
    core.create_namespaced_config_map("presentation", LEDGER_CONFIGMAP)
    try:
        yield Cluster(fake, admin, text)
    finally:
        admin.close()
        fake.stop()


def cluster_ledger(cluster) -> list[dict]:
    import kubernetes

    found = kubernetes.client.CoreV1Api(cluster.admin).read_namespaced_config_map("pinotage-ledger-presentation",
                                                                                  "presentation")
    return json.loads(found.data["records.json"])


def logged(fake, expected: set[tuple[str, str]], *, wait_s: float = 5.0) -> set[tuple[str, str]]:
    """Return the (verb, resource) of each request the double logged, waiting up to wait_s for ``expected``.

    The double logs a watch when it ends, and notices a client that hung up within half a second,
    so the gate's last watches may not be logged yet when the deploy returns.
    """
    deadline = time.monotonic() + wait_s
    while True:
        made = {(r.verb, r.resource) for r in fake.requests}
        if expected <= made or time.monotonic() >= deadline:
            return made
        time.sleep(0.05)


def live(cluster) -> dict:
    import kubernetes

    return json.loads(kubernetes.client.AppsV1Api(cluster.admin).read_namespaced_deployment(
        "presentation", "presentation", _preload_content=False).data)


@pytest.fixture
def project(tmp_path, environ):
    """A copy of the files the steps read (templates, manifests)."""
    for folder in ("scripts/kubeadm", "scripts/packer", "scripts/vagrant", "k8s"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    return tmp_path


def load(project, environ, *overrides):
    return config_module.load(environ=environ, cwd=str(project), overrides=list(overrides))


def execute(step, project, environ, script, *, node=None, dry_run=False, force=False, overrides=()):
    shell = ScriptedShell(script)
    said: list[str] = []
    config = load(project, environ, *overrides)
    try:
        rebuild.run(step, config=config, environ=environ, node=node, dry_run=dry_run, force=force,
                    shell=shell.channel("loud"), quiet=shell.channel("quiet"), say=said.append,
                    redeploy=cli.cluster_redeployer(config))
    finally:
        shell.said = said
    assert not shell.script, f"scripted commands never ran: {[list(s[0]) for s in shell.script]}"
    return shell


def fresh_rebuild(project, admin_kubeconfig: str):
    box_dir = project / "build/box/pinotage-kubeadm-1.31.4"
    return [
        (["vagrant", "box", "list", "--machine-readable"], NO_BOXES),
        (["packer", "build", "-force", "-var", "base_box=debian/bookworm64", "-var", "kubernetes_version=1.31.4",
          "-var", f"output_dir={box_dir}", str(project / "scripts/packer/box.json")], "Build 'vagrant' finished",
         0, lambda: (box_dir.mkdir(parents=True), (box_dir / "package.box").write_bytes(b"box"))),
        (["vagrant", "box", "add", "--force", str(box_dir / "metadata.json")], "Successfully added box"),
        (["vagrant", "status", "--machine-readable"], status(control="not_created", worker1="not_created",
                                                            worker2="not_created")),
        (["vagrant", "up", "--provider", "virtualbox", "control", "worker1", "worker2"], ""),
        (ssh("control", CONTROL_PLANE_STATE), "fresh\n"),
        (ssh("control", "sudo kubeadm init --config /dev/stdin --skip-token-print"),
         "Your Kubernetes control-plane has initialized successfully!"),
        (KUBECONFIG, ""),
        (kubectl("get nodes -o name"), "node/control\n"),
        (ssh("worker1", WORKER_STATE), "fresh\n"),
        *join_worker("worker1", TOKEN_1),
        (ssh("worker2", WORKER_STATE), "fresh\n"),
        *join_worker("worker2", TOKEN_2),
        *network_and_after(False, "", admin_kubeconfig),
    ]


def test_fresh_rebuild_runs_every_command_in_order(project, environ, cluster):
    shell = execute("rebuild", project, environ, fresh_rebuild(project, cluster.kubeconfig))
    by_argv = {c.argv: c for c in shell.calls}
    init = yaml.safe_load_all(by_argv[tuple(ssh("control", "sudo kubeadm init --config /dev/stdin "
                                                           "--skip-token-print"))].input_text)
    init_doc = next(iter(init))
    assert init_doc["localAPIEndpoint"]["advertiseAddress"] == "192.168.56.10"
    joins = [c for c in shell.calls if "kubeadm join" in c.argv[-1]]
    assert [yaml.safe_load(c.input_text)["discovery"]["bootstrapToken"]["token"] for c in joins] == [TOKEN_1, TOKEN_2]
    assert [yaml.safe_load(c.input_text)["nodeRegistration"]["kubeletExtraArgs"] for c in joins] == [
        [{"name": "node-ip", "value": "192.168.56.11"}], [{"name": "node-ip", "value": "192.168.56.12"}]]
    metadata = json.loads((project / "build/box/pinotage-kubeadm-1.31.4/metadata.json").read_text())
    assert (metadata["name"], metadata["versions"][0]["version"]) == ("pinotage/kubeadm", "1.31.4")
    assert metadata["versions"][0]["providers"][0]["checksum"] == hashlib.sha256(b"box").hexdigest()


def box_commands(project, *, listed: str | None, packer: bool, added: bool, new_box: bytes = b"new box"):
    """Script the box step: the installed-box probe (unless forced), packer, vagrant box add."""
    box_dir = project / "build/box/pinotage-kubeadm-1.31.4"

    def build():
        # packer -force starts from an empty output folder: the old package must be gone by now
        assert not (box_dir / "package.box").exists(), "the old package.box was not removed first"
        box_dir.mkdir(parents=True, exist_ok=True)
        (box_dir / "package.box").write_bytes(new_box)

    return [
        *([(["vagrant", "box", "list", "--machine-readable"], listed)] if listed is not None else []),
        *([(["packer", "build", "-force", "-var", "base_box=debian/bookworm64", "-var", "kubernetes_version=1.31.4",
             "-var", f"output_dir={box_dir}", str(project / "scripts/packer/box.json")], "Build 'vagrant' finished",
            0, build)] if packer else []),
        *([(["vagrant", "box", "add", "--force", str(box_dir / "metadata.json")], "Successfully added box")]
          if added else []),
    ]


@pytest.mark.parametrize("force, old_package, listed, packer, added, checksum_of", [
    (False, True, OUR_BOX, False, False, None),
    (False, True, NO_BOXES, False, True, b"old box"),
    (True, True, None, True, True, b"new box"),
    (True, False, None, True, True, b"new box"),
], ids=["installed-box-is-kept", "old-package-is-reused", "force-rebuilds-an-installed-box-and-its-package",
        "force-with-no-old-package"])
def test_the_box_step(project, environ, force, old_package, listed, packer, added, checksum_of):
    box_dir = project / "build/box/pinotage-kubeadm-1.31.4"
    if old_package:
        box_dir.mkdir(parents=True)
        (box_dir / "package.box").write_bytes(b"old box")
    execute("box", project, environ, box_commands(project, listed=listed, packer=packer, added=added), force=force)
    if checksum_of is not None:
        metadata = json.loads((box_dir / "metadata.json").read_text())
        assert metadata["versions"][0]["providers"][0]["checksum"] == hashlib.sha256(checksum_of).hexdigest()


def test_a_resumed_rebuild_skips_what_is_done(project, environ, cluster):
    script = [
        (["vagrant", "box", "list", "--machine-readable"], OUR_BOX),
        (["vagrant", "status", "--machine-readable"], status(control="running", worker1="running", worker2="poweroff")),
        (["vagrant", "up", "--provider", "virtualbox", "worker2"], ""),
        (ssh("control", CONTROL_PLANE_STATE), "initialised\n"),
        (KUBECONFIG, ""),
        (kubectl("get nodes -o name"), "node/control\nnode/worker1\n"),
        # worker2 stopped half-way through an earlier join: it is reset, then joins afresh
        (ssh("worker2", WORKER_STATE), "joined\n"),
        (ssh("worker2", "sudo kubeadm reset --force"), "[reset] Deleted contents of the etcd data directory"),
        *join_worker("worker2", TOKEN_2),
        *network_and_after(True, "node/worker1\n", cluster.kubeconfig),
    ]
    shell = execute("rebuild", project, environ, script)
    assert any("control plane is initialised" in line for line in shell.said)


def test_a_half_initialised_control_plane_is_reset_first(project, environ):
    script = [
        (ssh("control", CONTROL_PLANE_STATE), "partial\n"),
        (ssh("control", "sudo kubeadm reset --force"), ""),
        (ssh("control", "sudo kubeadm init --config /dev/stdin --skip-token-print"), "initialized successfully"),
        (KUBECONFIG, ""),
    ]
    execute("init", project, environ, script)


def test_an_expired_token_is_replaced_by_a_fresh_one(project, environ):
    expired = ('error execution phase preflight: couldn\'t validate the identity of the API Server: could not find '
               'a JWS signature in the cluster-info ConfigMap for token ID "abcdef"')
    script = [
        (kubectl("get nodes -o name"), "node/control\nnode/worker1\n"),
        (ssh("worker2", WORKER_STATE), "fresh\n"),
        *join_worker("worker2", TOKEN_1, fails_with=expired),
        *join_worker("worker2", TOKEN_2),
    ]
    shell = execute("join", project, environ, script)
    assert any("refused the token" in line for line in shell.said)


def test_a_join_that_fails_for_another_reason_stops_and_still_deletes_its_token(project, environ):
    script = [
        (kubectl("get nodes -o name"), "node/control\nnode/worker1\n"),
        (ssh("worker2", WORKER_STATE), "fresh\n"),
        *join_worker("worker2", TOKEN_1, fails_with="[ERROR Swap]: running with swap on is not supported"),
    ]
    with pytest.raises(CommandFailed, match="Swap"):
        execute("join", project, environ, script)


def test_tokens_are_never_shown_nor_passed_as_arguments(project, environ, cluster):
    shell = execute("rebuild", project, environ, fresh_rebuild(project, cluster.kubeconfig))
    admin_token = yaml.safe_load(cluster.kubeconfig)["users"][0]["user"]["token"]
    for token in (TOKEN_1, TOKEN_2, admin_token):
        assert not [line for line in shell.said if token in line]
        assert not [c.argv for c in shell.calls if any(token in arg for arg in c.argv)]
        assert not list((project / "build").rglob("*")) or all(
            token not in p.read_text() for p in (project / "build").rglob("*") if p.is_file())
    token_commands = [c for c in shell.calls if "token create" in c.argv[-1] or c.argv[-1].startswith("cat ")]
    assert {c.channel for c in token_commands} == {"quiet"}, "a join command or a kubeconfig must not be streamed"
    assert not [p for p in project.rglob("*") if p.is_file() and admin_token in p.read_text(errors="replace")]


# --- redeploy ----------------------------------------------------------------

def test_a_claim_that_does_not_bind_fails_the_smoke_step_and_cleans_up(project, environ):
    script = smoke_ok()[:3] + [
        (kubectl("-n pinotage-smoke wait '--for=jsonpath={.status.phase}=Bound' pvc/smoke-claim --timeout=180s"),
         "error: timed out waiting for the condition on persistentvolumeclaims/smoke-claim", 1),
        smoke_ok()[-1],
    ]
    with pytest.raises(CommandFailed, match="smoke-claim"):
        execute("smoke", project, environ, script)


def test_redeploy_deploys_the_last_good_release_of_the_clusters_ledger_through_the_target(project, environ, cluster):
    shell = execute("redeploy", project, environ, redeploy_commands(cluster.kubeconfig))
    deployment = live(cluster)
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
    assert deployment["metadata"]["annotations"]["pinotage.dev/commit"] == "c" * 40
    records = cluster_ledger(cluster)
    assert [(r["outcome"], r["image"]) for r in records[3:]] == [("deployed", IMAGE)], "one record for the redeploy"
    assert records[3]["id"] == deployment["metadata"]["annotations"]["pinotage.dev/ledger-id"]
    expected = {("create", "leases"), ("patch", "deployments"), ("watch", "pods")}
    assert expected <= logged(cluster.fake, expected), "Lease, apply, gate"
    assert any("from the cluster's ledger" in line for line in shell.said)
    assert any("passed the rollout gate" in line for line in shell.said)


def test_redeploy_of_a_release_that_is_live_already_deploys_nothing(project, environ, cluster):
    execute("redeploy", project, environ, redeploy_commands(cluster.kubeconfig))
    shell = execute("redeploy", project, environ, redeploy_commands(cluster.kubeconfig))
    assert len(cluster_ledger(cluster)) == 4
    assert any("live" in line for line in shell.said[-2:]), shell.said[-3:]


def test_redeploy_on_a_new_cluster_reads_the_newest_backup(project, environ, cluster):
    import kubernetes

    kubernetes.client.CoreV1Api(cluster.admin).delete_namespaced_config_map("pinotage-ledger-presentation",
                                                                            "presentation")
    older, newer = project / ".pinotage/backups/20260101T000000Z", project / ".pinotage/backups/20260102T000000Z"
    older.mkdir(parents=True), newer.mkdir(parents=True)
    stale = {**LEDGER_CONFIGMAP, "data": {"records.json": json.dumps(ledger_records()[:1])}}
    (older / "presentation.yaml").write_text(yaml.safe_dump_all([{"kind": "Namespace"}, stale]))
    (newer / "presentation.yaml").write_text(yaml.safe_dump_all([{"kind": "Namespace"}, LEDGER_CONFIGMAP]))
    shell = execute("redeploy", project, environ, redeploy_commands(cluster.kubeconfig))
    assert live(cluster)["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
    assert [r["outcome"] for r in cluster_ledger(cluster)] == ["deployed"], "the new cluster's ledger starts afresh"
    assert any(f"from {newer / 'presentation.yaml'}" in line for line in shell.said)


def test_redeploy_without_a_good_release_anywhere_deploys_nothing(project, environ, cluster):
    import kubernetes

    kubernetes.client.CoreV1Api(cluster.admin).delete_namespaced_config_map("pinotage-ledger-presentation",
                                                                            "presentation")
    shell = execute("redeploy", project, environ, redeploy_commands(cluster.kubeconfig))
    assert "nothing to redeploy" in shell.said[-1]
    assert not [r for r in cluster.fake.requests if r.resource == "deployments" and r.verb == "patch"]


@pytest.mark.parametrize("answer, message", [
    ("hello from hello-a", "pod-to-pod from worker1 to worker2 failed"),
    ("", "pod-to-pod from worker1 to worker2 failed"),
], ids=["answered-by-the-wrong-pod", "no-answer"])
def test_a_failed_smoke_check_fails_the_step_and_still_deletes_the_namespace(project, environ, answer, message):
    script = smoke_ok(cross_node_answer=answer)
    with pytest.raises(ClusterCheckFailed, match=message):
        execute("smoke", project, environ, script)


def test_smoke_pods_not_spread_over_two_workers_fail_and_clean_up(project, environ):
    script = smoke_ok()[:4] + [
        encoded("-n pinotage-smoke get pods -l app=hello -o json",
                pods(("hello-a", "worker1", "10.244.1.2"), ("hello-b", "worker1", "10.244.1.3"))),
        smoke_ok()[-1],
    ]
    with pytest.raises(ClusterCheckFailed, match="not Running and ready on 2 workers"):
        execute("smoke", project, environ, script)


@pytest.mark.parametrize("step, node, script", [
    ("drain", "worker1", [(kubectl("get nodes -o name"), "node/control\nnode/worker1\n"),
                          (kubectl("drain worker1 --ignore-daemonsets --delete-emptydir-data --timeout=300s"),
                           "node/worker1 drained")]),
    ("drain", "worker2", [(kubectl("get nodes -o name"), "node/control\nnode/worker1\n")]),
    ("remove", "worker2", [
        (kubectl("get nodes -o name"), "node/control\nnode/worker2\n"),
        (kubectl("drain worker2 --ignore-daemonsets --delete-emptydir-data --timeout=300s"), "drained"),
        (kubectl("delete node worker2 --ignore-not-found"), 'node "worker2" deleted'),
        (["vagrant", "status", "--machine-readable", "worker2"], status(worker2="running")),
        (ssh("worker2", "sudo kubeadm reset --force"), ""),
        (["vagrant", "destroy", "--force", "worker2"], "Destroying VM and associated drives..."),
    ]),
    ("remove", "worker2", [
        (kubectl("get nodes -o name"), "node/control\nnode/worker1\n"),
        (["vagrant", "status", "--machine-readable", "worker2"], status(worker2="not_created")),
    ]),
], ids=["drain-a-node", "drain-an-absent-node", "remove-a-worker", "remove-a-worker-already-gone"])
def test_drain_and_remove_converge(project, environ, step, node, script):
    execute(step, project, environ, script, node=node)


@pytest.mark.parametrize("step, node, message", [
    ("remove", "control", "the control plane cannot be removed"),
    ("remove", "worker9", "no such node"),
    ("drain", "db1", "no such node"),
], ids=["remove-control-plane", "remove-unknown-worker", "drain-unknown-node"])
def test_bad_node_names_are_refused_before_any_command(project, environ, step, node, message):
    with pytest.raises(BadInput, match=message):
        execute(step, project, environ, [], node=node)


@pytest.mark.parametrize("override, message", [
    ("cluster.kubernetes_version=1.31", "cluster.kubernetes_version: expected a version like 1.31.4, got '1.31'"),
    ("cluster.control_plane_ip=192.168.56", "cluster.control_plane_ip: expected an IPv4 address"),
    ("cluster.control_plane_ip=192.168.56.253", "leaves no room for 2 workers"),
    ("cluster.pod_subnet=10.200.0.0/16", "cluster.pod_subnet: 10.200.0.0/16 differs from the Network 10.244.0.0/16"),
], ids=["short-version", "bad-address", "no-room-for-workers", "pod-subnet-not-flannel's"])
def test_bad_cluster_settings_are_refused_before_changing_anything(project, environ, override, message):
    # the pod subnet is checked by the network step before it runs its first command
    with pytest.raises(BadInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        execute("network", project, environ, [], overrides=[override])


def test_a_dry_run_runs_nothing_and_lists_a_fresh_rebuild(project, environ):
    shell = execute("rebuild", project, environ, [], dry_run=True)
    listing = "\n".join(shell.said)
    for expected in ("packer build", "vagrant up --provider virtualbox control worker1 worker2",
                     "kubeadm init --config /dev/stdin", "kubeadm token create --print-join-command",
                     "kubectl apply -f pinotage/k8s/network/flannel.yaml", "kubectl apply -k pinotage/k8s/smoke",
                     "-c 'cat \"$HOME/.kube/config\"'  (output kept in memory)",
                     "through the Kubernetes target: Lease, rollout gate, rollback, a ledger record"):
        assert expected in listing
    assert not (project / "build").exists(), "a dry run writes no file"


@pytest.mark.parametrize("step, node", [(s, None) for s in rebuild.STEPS] + [("drain", "worker1"),
                                                                            ("remove", "worker1")],
                         ids=list(rebuild.STEPS) + ["drain", "remove"])
def test_every_step_has_a_dry_run(project, environ, step, node):
    shell = execute(step, project, environ, [], node=node, dry_run=True)
    assert shell.said[1].startswith("==> cluster ") and len(shell.said) > 2


def test_backup_exports_the_app_namespaces_without_secrets(project, environ):
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "presentation", "namespace": "presentation", "uid": "u1",
                               "resourceVersion": "42", "creationTimestamp": "2026-01-01T00:00:00Z",
                               "managedFields": [{"manager": "pinotage"}],
                               "annotations": {"deployment.kubernetes.io/revision": "3",
                                               "pinotage.dev/commit": "c" * 40}},
                  "spec": {"replicas": 2}, "status": {"readyReplicas": 2}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "presentation", "namespace": "presentation"},
               "spec": {"clusterIP": "10.96.4.4", "clusterIPs": ["10.96.4.4"], "type": "NodePort"}}
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "deployer-token"},
              "data": {"token": "c2VjcmV0"}}
    owned = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
             "metadata": {"name": "presentation-1", "ownerReferences": [{"kind": "Deployment"}]}}
    default_sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}
    script = [
        (ssh("control", "set -o pipefail; kubectl api-resources --verbs=list --namespaced -o name | base64 -w0"),
         base64.b64encode(b"configmaps\nevents\npods\nsecrets\nserviceaccounts\nservices\ndeployments.apps\n"
                          b"replicasets.apps\n").decode()),
        (kubectl("get namespaces -o name"), "namespace/default\nnamespace/presentation\nnamespace/logging\n"),
        encoded("-n presentation get configmaps,serviceaccounts,services,deployments.apps -o json",
                {"items": [deployment, service, secret, owned, default_sa]}),
        encoded("-n logging get configmaps,serviceaccounts,services,deployments.apps -o json", {"items": []}),
    ]
    shell = execute("backup", project, environ, script)
    folders = list((project / ".pinotage/backups").iterdir())
    assert len(folders) == 1
    exported = list(yaml.safe_load_all((folders[0] / "presentation.yaml").read_text()))
    assert [(o["kind"], o["metadata"]["name"]) for o in exported] == [
        ("Namespace", "presentation"), ("Deployment", "presentation"), ("Service", "presentation")]
    assert exported[1]["metadata"] == {"name": "presentation", "namespace": "presentation",
                                       "annotations": {"pinotage.dev/commit": "c" * 40}}
    assert "status" not in exported[1] and "clusterIP" not in exported[2]["spec"]
    assert "c2VjcmV0" not in (folders[0] / "presentation.yaml").read_text()
    assert (folders[0] / "logging.yaml").is_file() and not (folders[0] / "sharelatex.yaml").exists()
    assert any("sharelatex does not exist" in line for line in shell.said)


def test_backup_folders_are_named_by_utc_time(project, environ):
    config = load(project, environ)
    shell = ScriptedShell([])
    step = steps.StepContext(config, topology(config),
                             Executor(shell.channel("loud"), shell.channel("quiet"), dry_run=True,
                                      say=lambda line: None), environ)
    when = datetime.datetime(2026, 3, 4, 5, 6, 7, tzinfo=datetime.timezone.utc)
    assert upkeep.backup(step, now=when) == project / ".pinotage/backups/20260304T050607Z"


@pytest.mark.parametrize("name, takes_node", [(name, False) for name in rebuild.STEPS]
                         + [(name, True) for name in rebuild.NODE_STEPS],
                         ids=[*rebuild.STEPS, *rebuild.NODE_STEPS])
def test_each_named_step_is_a_step_function_and_a_subcommand(name, takes_node):
    import inspect

    from pipeline import cli

    function = rebuild.step_function(name)
    required = [p.name for p in inspect.signature(function).parameters.values() if p.default is p.empty]
    assert required[0] == "step" and len(required) == (2 if takes_node else 1)
    args = cli.build_parser().parse_args(["cluster", name] + (["worker1"] if takes_node else []))
    assert (args.handler, args.cluster_step) == (cli._cluster, name)


def test_rebuild_runs_named_steps_only():
    assert set(rebuild.REBUILD) <= set(rebuild.STEPS)
    assert rebuild.REBUILD_HELP.endswith(", ".join(rebuild.REBUILD))


@pytest.mark.parametrize("argv, code, stream, text", [
    (["cluster", "rebuild", "--dry-run"], 0, "out", "kubeadm init --config /dev/stdin"),
    (["cluster", "box", "--force", "--dry-run"], 0, "out", "remove {project}/build/box/pinotage-kubeadm-1.31.4/package.box"),
    (["cluster", "remove", "control", "--dry-run"], 2, "err", "the control plane cannot be removed"),
    (["cluster", "up", "--dry-run", "--set", "cluster.workers=0"], 2, "err", "cluster.workers: expected a number above 0"),
    (["cluster", "init", "--dry-run", "--set", "cluster.kubernetes_version=latest"], 2, "err",
     "cluster.kubernetes_version: expected a version like 1.31.4, got 'latest'"),
], ids=["dry-run-rebuild", "forced-box-dry-run", "remove-control", "no-workers", "bad-version"])
def test_the_cluster_command(project, environ, capsys, monkeypatch, argv, code, stream, text):
    from pipeline import cli

    monkeypatch.chdir(project)
    assert cli.main(argv, environ) == code
    captured = capsys.readouterr()
    assert text.format(project=project) in (captured.out if stream == "out" else captured.err)


def test_vagrant_keeps_its_state_where_the_caller_says(project, environ):
    # docs/cluster.md "Vagrant's state": one VAGRANT_DOTFILE_PATH for the first rebuild and the job's
    from pipeline.cluster.topology import vagrant_env

    caller = {**environ, "VAGRANT_DOTFILE_PATH": "/var/lib/pinotage-agent/vagrant"}
    env = vagrant_env(load(project, environ), caller)
    assert env["VAGRANT_DOTFILE_PATH"] == "/var/lib/pinotage-agent/vagrant"
    assert env["PINOTAGE_CLUSTER_WORKERS"] == "2"
