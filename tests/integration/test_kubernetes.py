"""The Kubernetes target against an API server: the fake in tests/fakes/kube, or a real cluster.

With PINOTAGE_TEST_KUBECONFIG set (an admin kubeconfig) the same tests run against that cluster;
then PINOTAGE_TEST_KUBE_IMAGES names two or more images by digest that serve /healthz on 8080
as a non-root user, PINOTAGE_TEST_KUBE_CRASH_IMAGE (optional) one that exits at once, and
PINOTAGE_TEST_KUBE_UNREADY_IMAGE (optional) one that runs but never answers /healthz.
Otherwise the fake runs on loopback with its in-memory kubelet (nothing runs; it decides image
existence by asking the test registry); test_kube_docker_kubelet.py is where pods really run.

Every test gets a fresh namespace holding k8s/presentation/rbac.yaml, and deploys as the
deployer ServiceAccount (a TokenRequest token), so the Role is what authorizes each request.
Deploys and rollbacks go through the runner (``runner.deploy``, ``runner.rollback``), the
ledger's only writer, so the records checked here are the ones a real run writes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Callable

import pytest
import yaml

from pipeline import config as pinotage_config
from pipeline import context as pinotage_context
from pipeline import rollout, runner
from pipeline import services as services_module
from pipeline.errors import ClusterError, DeployFailed, DeployRefused
from pipeline.state import Image, Release
from tests.conftest import ROOT, need
from tests.integration.kube_setup import account_token, install_into

pytestmark = pytest.mark.integration

RBAC = ROOT / "k8s" / "presentation" / "rbac.yaml"
PROGRESS_DEADLINE_S = yaml.safe_load((ROOT / "k8s/presentation/deployment.yaml").read_text())["spec"][
    "progressDeadlineSeconds"]
COMMITS = [hashlib.sha1(f"commit {i}".encode()).hexdigest() for i in range(4)]  # oldest first


def is_ancestor(older: str, newer: str) -> bool:
    """Decide ancestry on the straight history COMMITS."""
    return COMMITS.index(older) < COMMITS.index(newer)


# --- the cluster: fake or real -----------------------------------------------------------

@dataclasses.dataclass
class Cluster:
    admin: object  # kubernetes.client.ApiClient with full rights
    images: Callable[[int], str]  # n -> a distinct image by digest that serves
    missing: str  # an image by digest that no registry holds
    crash: Callable[[], str | None]  # -> an image whose pods crash-loop, or None when unavailable
    fake: object | None  # the FakeKube, for its request log; None on a real cluster
    server: str
    ca_file: str | None
    registry_url: str = ""  # the registry the images are in, and its login: the pull secret's
    registry_env: dict = dataclasses.field(default_factory=dict)
    unready: Callable[[], str | None] = lambda: None  # -> an image whose pods run but never become ready


def _push_tiny_image(registry, repository: str, label: str) -> str:
    """Put a minimal OCI image (a config blob, no layers) into the registry; return it by digest."""
    import requests

    session = requests.Session()
    session.auth = (registry.user, registry.password)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"test": label}},
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    started = session.post(f"{registry.api}/v2/{repository}/blobs/uploads/", timeout=10)
    started.raise_for_status()
    location = started.headers["Location"]
    if location.startswith("/"):
        location = registry.api + location
    session.put(f"{location}{'&' if '?' in location else '?'}digest={config_digest}", data=config,
                headers={"Content-Type": "application/octet-stream"}, timeout=10).raise_for_status()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": config_digest, "size": len(config)}, "layers": []}).encode()
    put = session.put(f"{registry.api}/v2/{repository}/manifests/{label}", data=manifest,
                      headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, timeout=10)
    put.raise_for_status()
    return f"{registry.url}/{repository}@{put.headers['Docker-Content-Digest']}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, request):
    import kubernetes

    kubeconfig = os.environ.get("PINOTAGE_TEST_KUBECONFIG")
    if kubeconfig:
        admin = kubernetes.config.new_client_from_config(config_file=kubeconfig, persist_config=False)
        refs = [r for r in os.environ.get("PINOTAGE_TEST_KUBE_IMAGES", "").split(",") if "@sha256:" in r]
        if len(refs) < 3:
            need("images for the real cluster", "PINOTAGE_TEST_KUBE_IMAGES must list three images by digest")
        crash = os.environ.get("PINOTAGE_TEST_KUBE_CRASH_IMAGE") or None
        unready = os.environ.get("PINOTAGE_TEST_KUBE_UNREADY_IMAGE") or None
        yield Cluster(admin, lambda n: refs[n % len(refs)], refs[0].split("@")[0] + "@sha256:" + "0" * 64,
                      lambda: crash, None, admin.configuration.host, admin.configuration.ssl_ca_cert,
                      unready=lambda: unready)
        return

    from tests.fakes.kube import FakeKube, registry_lookup

    registry = request.getfixturevalue("registry")
    token = secrets.token_urlsafe(16)
    # the nodes have no login of their own: only the pull secret lets them pull
    fake = FakeKube(image_exists=registry_lookup(registry.api), token=token, pod_start_s=0.2).start()
    admin = kubernetes.config.new_client_from_config(
        config_file=str(fake.kubeconfig(tmp_path_factory.mktemp("kube") / "admin.yaml")), persist_config=False)
    repository = f"pinotage-test/kube-{secrets.token_hex(3)}"
    pushed: dict[int, str] = {}

    def image(n: int) -> str:
        if n not in pushed:
            pushed[n] = _push_tiny_image(registry, repository, f"v{n}")
        return pushed[n]

    def crash() -> str:
        ref = image(99)
        fake.crash_images.add(ref)
        return ref

    def unready() -> str:
        ref = image(98)
        fake.unready_images.add(ref)
        return ref

    try:
        yield Cluster(admin, image, f"{registry.url}/{repository}@sha256:{'0' * 64}", crash, fake, fake.url, None,
                      registry.url, {"PINOTAGE_REGISTRY_USER": registry.user,
                                     "PINOTAGE_REGISTRY_PASSWORD": registry.password, "HOME": "/nonexistent"},
                      unready=unready)
    finally:
        import requests

        for ref in pushed.values():
            requests.delete(f"{registry.api}/v2/{repository}/manifests/{ref.split('@')[1]}",
                            auth=(registry.user, registry.password), timeout=10)
        admin.close()
        fake.stop()


@dataclasses.dataclass
class Env:
    cluster: Cluster
    namespace: str
    kubeconfig: Path
    deployer: str  # the ServiceAccount's user name, as RBAC sees it
    lines: list[str]

    def config(self, **overrides):
        settings = {"deploy.target": "kubernetes", "deploy.namespace": self.namespace,
                    "kubeconfig": str(self.kubeconfig), "deadlines.rollout_s": "120", "deadlines.lock_s": "60",
                    **({"registry.url": self.cluster.registry_url,
                        "registry.user": self.cluster.registry_env["PINOTAGE_REGISTRY_USER"]}
                       if self.cluster.registry_url else {}),
                    **overrides}
        return pinotage_config.load(environ={}, overrides=[f"{k}={v}" for k, v in settings.items()], cwd=str(ROOT))

    def target(self, environ: dict | None = None, **overrides):
        """Build the target as 'pinotage deploy' does: services.make_target(config, environ, progress).

        The environment holds the registry login (the Jenkins deploy stage binds it), unless given.
        """
        return services_module.make_target(self.config(**overrides),
                                           self.cluster.registry_env if environ is None else environ, self.lines.append)

    def deploy(self, target, n: int, image: str | None = None, *, is_ancestor=is_ancestor, progress=None):
        """Deploy release n through the runner (the Jenkins deploy stage); return (deployment, record)."""
        release = self.release(n, image)
        context = pinotage_context.BuildContext(commit=release.commit, branch="master", event="default-branch",
                                                build_url=release.build_url)
        services = services_module.Services(make_client=_refused("an engine"), make_target=lambda: target,
                                   read_credentials=_refused("registry credentials"), report_status=None,
                                   is_ancestor=is_ancestor, phases=None)
        result = runner.deploy(self.config(), context, release.image, services,
                               say=self.lines.append, progress=progress or self.lines.append)
        assert result.deployment is not None, result.note
        return result.deployment, result.record

    def rollback(self, target, to_commit: str | None):
        """Roll back through the runner, as 'pinotage rollback' does; return (deployment, record)."""
        return runner.rollback(self.config(), target, to_commit=to_commit, say=self.lines.append,
                               progress=self.lines.append)

    def release(self, n: int, image: str | None = None) -> Release:
        ref = image or self.cluster.images(n)
        name, digest = ref.split("@")
        return Release(image=Image(name=name, tag=COMMITS[n][:12], digest=digest, commit=COMMITS[n]),
                       commit=COMMITS[n], build_url=f"http://127.0.0.1:8080/job/presentation/{n}/")

    def live(self) -> dict:
        from kubernetes import client

        api = client.AppsV1Api(self.cluster.admin)
        return json.loads(api.read_namespaced_deployment("presentation", self.namespace,
                                                         _preload_content=False).data)

    def serving_images(self) -> set[str]:
        from kubernetes import client

        pods = client.CoreV1Api(self.cluster.admin).list_namespaced_pod(
            self.namespace, label_selector="app.kubernetes.io/name=presentation").items
        return {c.image for p in pods if p.metadata.deletion_timestamp is None
                and any(cond.type == "Ready" and cond.status == "True" for cond in p.status.conditions or ())
                for c in p.spec.containers}

    def deployer_requests(self):
        return [r for r in self.cluster.fake.requests if r.user == self.deployer]


@pytest.fixture
def env(cluster, tmp_path):
    """A fresh namespace with the deployer RBAC, and a kubeconfig holding the deployer's token."""
    from kubernetes import client

    namespace = f"pinotage-test-{secrets.token_hex(4)}"
    core = client.CoreV1Api(cluster.admin)
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    try:
        install_into(cluster.admin, RBAC, namespace)
        token = account_token(cluster.admin, namespace)
        cluster_entry = {"server": cluster.server}
        if cluster.ca_file:
            cluster_entry["certificate-authority"] = cluster.ca_file
        kubeconfig = tmp_path / "deployer.yaml"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "deployer",
            "clusters": [{"name": "test", "cluster": cluster_entry}],
            "users": [{"name": "deployer", "user": {"token": token}}],
            "contexts": [{"name": "deployer", "context": {"cluster": "test", "user": "deployer"}}]}))
        kubeconfig.chmod(0o600)
        yield Env(cluster, namespace, kubeconfig, f"system:serviceaccount:{namespace}:pinotage-deployer", [])
    finally:
        core.delete_namespace(namespace)
        kubeconfig_file = tmp_path / "deployer.yaml"
        if kubeconfig_file.exists():
            kubeconfig_file.unlink()  # it holds a token


def _refused(what: str):
    def call(*args, **kwargs):
        raise AssertionError(f"a deploy must not use {what}")
    return call


def outcomes(target) -> list[tuple[str, str]]:
    return [(r.outcome, r.commit) for r in target.ledger().records()]


# --- deploys --------------------------------------------------------------------------------

def test_good_deploy_applies_by_digest_with_annotations_and_records_it(env):
    target = env.target()
    first, _ = env.deploy(target, 0)
    second, record = env.deploy(target, 1)

    live = env.live()
    annotations = live["metadata"]["annotations"]
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == env.release(1).image.pinned
    assert annotations["pinotage.dev/commit"] == COMMITS[1]
    assert annotations["pinotage.dev/build-url"] == env.release(1).build_url
    assert annotations["kubernetes.io/change-cause"].startswith(f"pinotage deploy {COMMITS[1][:12]}")
    assert annotations["pinotage.dev/ledger-id"] == record.id == target.ledger().records()[-1].id
    assert any(m["manager"] == "pinotage" and m["operation"] == "Apply" for m in live["metadata"]["managedFields"])
    assert (first.revision, second.revision) == ("1", "2")
    assert second.previous.commit == COMMITS[0]
    assert isinstance(rollout.verdict(live, now=rollout.parse_time("2100-01-01T00:00:00Z")), rollout.Done)
    assert env.serving_images() == {env.release(1).image.pinned}
    assert outcomes(target) == [("deployed", COMMITS[0]), ("deployed", COMMITS[1])]
    assert target.ledger().records()[-1] == record
    assert (record.image, record.target, record.revision) == (env.release(1).image.pinned, "kubernetes", "2")
    assert list(record.phases_s) == ["deploy"] and record.phases_s["deploy"] > 0
    assert target.deployed().commit == COMMITS[1]
    assert any("successfully rolled out" in line for line in env.lines)


def test_nodes_pull_with_the_pull_secret_the_deploy_applies_and_refreshes(env):
    """Without the registry login the nodes cannot pull (ErrImagePull); with it, one Secret, named in the template."""
    import base64

    from kubernetes import client

    if not env.cluster.registry_env:
        pytest.skip("the real cluster's images need no registry login here")
    with pytest.raises(DeployFailed, match="ErrImagePull|ImagePullBackOff"):
        env.deploy(env.target(environ={"HOME": "/nonexistent"}), 0)  # no login: no Secret, anonymous pulls
    assert "imagePullSecrets" not in env.live()["spec"]["template"]["spec"]

    env.deploy(env.target(), 1)
    spec = env.live()["spec"]["template"]["spec"]
    assert spec["imagePullSecrets"] == [{"name": "pinotage-pull-presentation"}]
    core = client.CoreV1Api(env.cluster.admin)
    secret = core.read_namespaced_secret("pinotage-pull-presentation", env.namespace)
    assert secret.type == "kubernetes.io/dockerconfigjson"
    auths = json.loads(base64.b64decode(secret.data[".dockerconfigjson"]))["auths"]
    user, password = env.config().registry.user, env.cluster.registry_env["PINOTAGE_REGISTRY_PASSWORD"]
    assert auths == {env.cluster.registry_url: {"username": user, "password": password, "auth": base64.b64encode(
        f"{user}:{password}".encode()).decode()}}
    assert env.serving_images() == {env.release(1).image.pinned}
    assert not any(password in line for line in env.lines)

    # a rotated login reaches the Secret with the next deploy: the same Secret, refreshed
    rotated = {**env.cluster.registry_env, "PINOTAGE_REGISTRY_PASSWORD": "a-rotated-token"}
    with pytest.raises(DeployFailed, match="ErrImagePull|ImagePullBackOff"):
        env.deploy(env.target(environ=rotated), 2)  # the registry refuses that login: the pull fails
    [only] = [s for s in core.list_namespaced_secret(env.namespace).items if s.type == "kubernetes.io/dockerconfigjson"]
    assert json.loads(base64.b64decode(only.data[".dockerconfigjson"]))["auths"][env.cluster.registry_url][
        "password"] == "a-rotated-token"


@pytest.mark.parametrize("breakage", ["missing-image", "crash-loop"])
def test_failed_rollout_is_caught_early_and_rolled_back(env, breakage):
    bad_image = env.cluster.missing if breakage == "missing-image" else env.cluster.crash()
    if bad_image is None:
        need("a crash-looping image", "set PINOTAGE_TEST_KUBE_CRASH_IMAGE for the real cluster")
    target = env.target()
    _, good = env.deploy(target, 0)
    started = time.monotonic()
    with pytest.raises(DeployFailed) as failed:
        env.deploy(target, 1, bad_image)
    elapsed = time.monotonic() - started

    assert failed.value.rolled_back is True
    expected = {"missing-image": ("ErrImagePull", "ImagePullBackOff"), "crash-loop": ("CrashLoopBackOff",)}[breakage]
    assert any(reason in failed.value.message for reason in expected), failed.value.message
    assert elapsed < PROGRESS_DEADLINE_S / 10, f"failure took {elapsed:.1f} s"
    live = env.live()
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == env.release(0).image.pinned
    assert live["metadata"]["annotations"]["pinotage.dev/commit"] == COMMITS[0]
    assert env.serving_images() == {env.release(0).image.pinned}
    # one record for the attempt: it names what serves again and the revision it runs as
    assert outcomes(target) == [("deployed", COMMITS[0]), ("rolled-back", COMMITS[1])]
    record = target.ledger().records()[-1]
    assert record.image == bad_image
    assert record.message.startswith(f"rolled back to {COMMITS[0][:12]} ({env.release(0).image.pinned}): ")
    assert record.revision == str(rollout.revision(live)) == failed.value.revision
    assert list(record.phases_s) == ["deploy"] and record.phases_s["deploy"] > 0
    assert live["metadata"]["annotations"]["pinotage.dev/ledger-id"] == good.id, "live names the restored deploy"
    assert any("rolling back" in line for line in env.lines)


def test_first_deploy_failing_says_there_is_nothing_to_roll_back_to(env):
    target = env.target()
    with pytest.raises(DeployFailed) as failed:
        env.deploy(target, 0, env.cluster.missing)
    assert failed.value.rolled_back is False
    assert "nothing to roll back to" in failed.value.message
    assert outcomes(target) == [("failed", COMMITS[0])]
    [record] = target.ledger().records()
    assert record.message == failed.value.message and list(record.phases_s) == ["deploy"]


def test_older_commit_is_refused_without_a_write(env):
    target = env.target()
    env.deploy(target, 2)
    before = env.live()["metadata"]["resourceVersion"]
    writes_before = len([r for r in env.deployer_requests() if r.resource == "deployments" and r.verb == "patch"]) \
        if env.cluster.fake else 0
    with pytest.raises(DeployRefused, match="older than the deployed"):
        env.deploy(target, 1)
    assert env.live()["metadata"]["resourceVersion"] == before
    if env.cluster.fake:
        writes = [r for r in env.deployer_requests() if r.resource == "deployments" and r.verb == "patch"]
        assert len(writes) == writes_before
    # the runner records the refusal (in the ledger only: the Deployment was not written)
    assert outcomes(target) == [("deployed", COMMITS[2]), ("refused", COMMITS[1])]
    assert "older than the deployed" in target.ledger().records()[-1].message


CONFLICTS = [
    # id, what lands between the deploy's read and its write, expected result
    ("unrelated-edit", {"metadata": {"annotations": {"team": "slides"}}}, "deployed"),
    ("newer-deploy", {"metadata": {"annotations": {"pinotage.dev/commit": COMMITS[3]}}}, "refused"),
]


@pytest.mark.parametrize("patch, expected", [c[1:] for c in CONFLICTS], ids=[c[0] for c in CONFLICTS])
def test_conflict_is_reread_and_redecided(env, patch, expected):
    from kubernetes import client

    target = env.target()
    env.deploy(target, 0)
    apps = client.AppsV1Api(env.cluster.admin)
    calls = []

    def is_ancestor_with_a_race(older: str, newer: str) -> bool:
        # the first decision is made on a Deployment that changes before the deploy writes
        if not calls:
            apps.patch_namespaced_deployment("presentation", env.namespace, patch, field_manager="someone-else",
                                             _content_type="application/merge-patch+json")
        calls.append((older, newer))
        return is_ancestor(older, newer)

    if expected == "refused":
        with pytest.raises(DeployRefused):
            env.deploy(target, 1, is_ancestor=is_ancestor_with_a_race)
        assert env.live()["metadata"]["annotations"]["pinotage.dev/commit"] == COMMITS[3]
    else:
        env.deploy(target, 1, is_ancestor=is_ancestor_with_a_race)
        assert env.live()["metadata"]["annotations"]["pinotage.dev/commit"] == COMMITS[1]
    assert outcomes(target) == [("deployed", COMMITS[0]), (expected, COMMITS[1])]
    assert calls == [(COMMITS[1], COMMITS[0]), (COMMITS[1], COMMITS[0] if expected == "deployed" else COMMITS[3])]
    assert any("reading it again" in line for line in env.lines)
    if env.cluster.fake:
        codes = [r.code for r in env.deployer_requests() if r.resource == "deployments" and r.verb == "patch"]
        assert codes[-2:] == [409, 200] if expected == "deployed" else codes[-1] == 409


def test_concurrent_deploys_take_turns_on_the_lease(env):
    first, second = env.target(), env.target()
    lines = {0: [], 1: []}
    finished = {}
    errors = []
    holding, waited = threading.Event(), threading.Event()

    def progress(n, line):
        lines[n].append((time.monotonic(), line))
        if n == 0 and line.startswith("applying"):
            holding.set()  # the first one holds the Lease: it stays in until the second one waits
            waited.wait(30)
        if n == 1 and "waiting for the deploy lock" in line:
            waited.set()

    def run(n, target):
        try:
            env.deploy(target, n + 1, is_ancestor=lambda a, b: False, progress=lambda line: progress(n, line))
            finished[n] = time.monotonic()
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(n, t)) for n, t in ((0, first), (1, second))]
    threads[0].start()
    assert holding.wait(60)
    threads[1].start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert waited.is_set()
    applied_second = min(t for t, line in lines[1] if line.startswith("applying"))
    assert applied_second >= finished[0]
    assert sorted(outcomes(first)) == sorted([("deployed", COMMITS[1]), ("deployed", COMMITS[2])])


def test_stale_lease_is_taken_over(env):
    from kubernetes import client

    stale = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() - 120))
    client.CoordinationV1Api(env.cluster.admin).create_namespaced_lease(env.namespace, {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "pinotage-deploy-presentation"},
        "spec": {"holderIdentity": "jenkins-agent-gone-1234", "leaseDurationSeconds": 15,
                 "acquireTime": stale, "renewTime": stale, "leaseTransitions": 3}})
    target = env.target()
    env.deploy(target, 0)
    assert any("taking over the deploy lock from jenkins-agent-gone-1234" in line for line in env.lines)
    lease = client.CoordinationV1Api(env.cluster.admin).read_namespaced_lease("pinotage-deploy-presentation",
                                                                              env.namespace)
    assert lease.spec.lease_transitions == 4
    assert not lease.spec.holder_identity  # released at the end


def test_rollback_returns_to_a_named_deploy(env):
    target = env.target()
    first = [env.deploy(target, n)[1] for n in (0, 1, 2)][0]
    deployment, record = env.rollback(target, COMMITS[0][:10])
    live = env.live()
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == env.release(0).image.pinned
    assert env.serving_images() == {env.release(0).image.pinned}
    # one record for the rollback, written by the runner: the release it returned to went live
    assert outcomes(target) == [("deployed", COMMITS[0]), ("deployed", COMMITS[1]), ("deployed", COMMITS[2]),
                                ("deployed", COMMITS[0])]
    assert target.ledger().records()[-1] == record
    assert (record.image, record.message) == (env.release(0).image.pinned, f"rollback from {COMMITS[2][:12]}")
    assert record.revision == deployment.revision == str(rollout.revision(live))
    assert list(record.phases_s) == ["rollback"] and record.phases_s["rollback"] > 0
    assert deployment.previous.commit == COMMITS[2]
    assert live["metadata"]["annotations"]["pinotage.dev/ledger-id"] == first.id, "live names the restored deploy"
    with pytest.raises(DeployRefused, match="already deployed"):
        env.rollback(target, COMMITS[0])
    assert len(target.ledger().records()) == 4, "a refused rollback tried nothing and is not recorded"


def test_rollback_is_refused_when_a_newer_deploy_lands_first(env):
    if env.cluster.fake is None:
        pytest.skip("needs the fake's request hook to land a deploy between the rollback's read and write")
    from kubernetes import client

    target = env.target()
    for n in (0, 1):
        env.deploy(target, n)
    apps = client.AppsV1Api(env.cluster.admin)
    env.cluster.fake.before("patch", "deployments", lambda: apps.patch_namespaced_deployment(
        "presentation", env.namespace, {"metadata": {"annotations": {"pinotage.dev/ledger-id": "someone-newer"}}},
        _content_type="application/merge-patch+json"))
    with pytest.raises(DeployRefused, match="newer deploy"):
        env.rollback(target, COMMITS[0])
    assert env.live()["spec"]["template"]["spec"]["containers"][0]["image"] == env.release(1).image.pinned
    assert outcomes(target) == [("deployed", COMMITS[0]), ("deployed", COMMITS[1])]


@pytest.mark.parametrize("breakage, raised, reported", [
    ("missing-image", DeployFailed, True),
    (None, ClusterError, False),
], ids=["release-refused-while-a-rollback-unwinds-keeps-the-deploy-error",
        "release-refused-after-a-good-deploy-is-the-error"])
def test_lease_release_refused(env, breakage, raised, reported):
    if env.cluster.fake is None:
        pytest.skip("needs the fake's request hook to make the API server refuse one Lease update")
    from tests.fakes.kube.store import ApiError

    def refuse():
        raise ApiError(500, "InternalError", "Internal error occurred: etcdserver: request timed out")

    target = env.target()
    target.lease_duration_s = 600  # no renewal during the test: the next Lease update is the release
    env.deploy(target, 0)
    # deploy 1 took the Lease before it applies; so the first Lease update after the apply is the release
    env.cluster.fake.before("patch", "deployments", lambda: env.cluster.fake.before("update", "leases", refuse))
    with pytest.raises(raised) as failed:
        env.deploy(target, 1, env.cluster.missing if breakage else None)

    assert ("etcdserver" in failed.value.message) is not reported, failed.value.message
    if reported:
        assert failed.value.rolled_back is True
        assert any("cannot release lease/" in line and "etcdserver" in line for line in env.lines), env.lines
    assert ("update", "leases", 500) in [(r.verb, r.resource, r.code) for r in env.deployer_requests()]


def _rules() -> list[tuple[str, str, str, str]]:
    """Expand the deployer Role into (group, resource, verb, resourceName or '') tuples."""
    role = next(d for d in yaml.safe_load_all(RBAC.read_text()) if d["kind"] == "Role")
    return [(g, res, verb, name) for rule in role["rules"] for g in rule["apiGroups"] for res in rule["resources"]
            for verb in rule["verbs"] for name in rule.get("resourceNames") or [""]]


def test_deployer_role_allows_exactly_what_deploy_gate_and_rollback_use(env):
    if env.cluster.fake is None:
        pytest.skip("the request log is the fake's; on a real cluster RBAC itself refuses what the Role lacks")
    target = env.target()
    env.deploy(target, 0)  # the first record creates the ledger ConfigMap; the next ones update it
    env.deploy(target, 1)
    with pytest.raises(DeployFailed):
        env.deploy(target, 2, env.cluster.missing)
    env.rollback(target, COMMITS[0])
    assert [o for o, _ in outcomes(target)] == ["deployed", "deployed", "rolled-back", "deployed"]

    made = env.deployer_requests()
    assert made, "the deployer made no request"
    rules = _rules()

    def allowed_by(request) -> list[tuple]:
        return [rule for rule in rules if rule[:3] == (request.group, request.resource, request.verb)
                and rule[3] in ("", request.name)]

    refused = [r for r in made if r.code == 403 or not allowed_by(r)]
    assert refused == []
    assert {r.namespace for r in made} == {env.namespace}
    used = {rule for r in made for rule in allowed_by(r)}
    assert set(rules) - used == set(), "the Role allows more than the deployer uses"
