"""The fake Kubernetes with its Docker-backed kubelet: pods are real containers on the test engine.

Every test here uses that mode (``FakeKube(docker_client=...)``); the other Kubernetes tests use
the in-memory kubelet. The app is a few lines of Node.js on the local runtime base image, pushed
to the authenticated test registry, so pulls need the pod's own pull secret. Its /healthz answers
with the status in the image's PINOTAGE_TEST_HEALTH (default 200), so one image never gets ready;
/livez answers 200 once it serves.
The gate test deploys through the runner as test_kubernetes.py does, with the same fixtures.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import secrets
import time

import pytest
import yaml

from pipeline.errors import DeployFailed
from tests.conftest import ROOT
from tests.integration.test_kubernetes import COMMITS, PROGRESS_DEADLINE_S, Cluster, env, outcomes  # noqa: F401

pytestmark = pytest.mark.integration

APP = ("const code = +(process.env.PINOTAGE_TEST_HEALTH || 200);"
       "require('http').createServer((q, s) => {"
       " s.statusCode = q.url === '/healthz' ? code : q.url === '/livez' ? 200 : 404; s.end(); })"
       ".listen(8080)")
MANIFEST = yaml.safe_load((ROOT / "k8s/presentation/deployment.yaml").read_text())


def _image(docker_client, registry, base: str, repository: str, health: int, built: list[str]) -> str:
    """Build a one-line image on base (only an ENV), push it, and return it by digest (its id joins built)."""
    dockerfile = f"FROM {base}\nENV PINOTAGE_TEST_HEALTH={health}\n".encode()
    image, _ = docker_client.images.build(fileobj=io.BytesIO(dockerfile), rm=True, labels={"pinotage-test": "kubelet"})
    built.append(image.id)
    tag = f"h{health}-{secrets.token_hex(3)}"
    image.tag(f"{registry.url}/{repository}", tag)
    digest = ""
    for line in docker_client.images.push(f"{registry.url}/{repository}", tag, stream=True, decode=True,
                                          auth_config={"username": registry.user, "password": registry.password}):
        if "error" in line:
            raise AssertionError(line["error"])
        digest = (line.get("aux") or {}).get("Digest", digest)
    docker_client.images.remove(f"{registry.url}/{repository}:{tag}")
    return f"{registry.url}/{repository}@{digest}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, docker_client, registry, base_images):
    import kubernetes

    from tests.fakes.kube import FakeKube

    repository = f"pinotage-test/kubelet-{secrets.token_hex(3)}"
    built: list[str] = []
    healthy = _image(docker_client, registry, base_images.runtime, repository, 200, built)
    images = {0: healthy, 1: healthy}
    unready = _image(docker_client, registry, base_images.runtime, repository, 503, built)
    fake = FakeKube(token=secrets.token_urlsafe(16), docker_client=docker_client, backoff_s=1.0).start()
    admin = kubernetes.config.new_client_from_config(
        config_file=str(fake.kubeconfig(tmp_path_factory.mktemp("kube") / "admin.yaml")), persist_config=False)
    try:
        yield Cluster(admin, lambda n: images[n % 2], f"{registry.url}/{repository}@sha256:{'0' * 64}",
                      lambda: None, fake, fake.url, None, registry.url,
                      {"PINOTAGE_REGISTRY_USER": registry.user, "PINOTAGE_REGISTRY_PASSWORD": registry.password,
                       "HOME": "/nonexistent"}, unready=lambda: unready)
    finally:
        admin.close()
        fake.stop()
        for image_id in built:
            docker_client.images.remove(image_id, force=True)


def _pod(env, name: str, *, image: str, secret: str | None, command: list[str] | None = None) -> dict:
    spec = copy.deepcopy(MANIFEST["spec"]["template"]["spec"])
    container = spec["containers"][0]
    container.update(image=image, command=command or ["node", "-e", APP])
    container.pop("startupProbe")
    container["readinessProbe"] = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1}
    if secret:
        spec["imagePullSecrets"] = [{"name": secret}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": env.namespace}, "spec": spec}


def _secret(env, registry) -> str:
    from kubernetes import client

    login = base64.b64encode(f"{registry.user}:{registry.password}".encode()).decode()
    config = json.dumps({"auths": {registry.url: {"auth": login}}}).encode()
    client.CoreV1Api(env.cluster.admin).create_namespaced_secret(env.namespace, {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pull"}, "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(config).decode()}})
    return "pull"


def _wait(env, name: str, test, timeout_s: float = 60) -> dict:
    from kubernetes import client

    core = client.CoreV1Api(env.cluster.admin)
    deadline = time.monotonic() + timeout_s
    while True:
        pod = json.loads(core.read_namespaced_pod(name, env.namespace, _preload_content=False).data)
        if test(pod) or time.monotonic() > deadline:
            return pod
        time.sleep(0.2)


def _container(pod: dict) -> dict:
    return ((pod.get("status") or {}).get("containerStatuses") or [{}])[0]


def test_a_pod_runs_with_its_security_context_and_its_probe_decides_ready(env, registry, docker_client):
    from kubernetes import client

    client.CoreV1Api(env.cluster.admin).create_namespaced_pod(env.namespace, _pod(
        env, "app", image=env.cluster.images(0), secret=_secret(env, registry)))
    pod = _wait(env, "app", lambda p: _container(p).get("ready"))
    assert _container(pod)["ready"] is True, _container(pod)
    engine = docker_client.containers.get(f"fake-kubelet-{pod['metadata']['uid']}-presentation")
    host = engine.attrs["HostConfig"]
    assert engine.attrs["Config"]["User"] == "10001:10001"
    assert (host["ReadonlyRootfs"], host["CapDrop"], host["SecurityOpt"]) == (True, ["ALL"], ["no-new-privileges"])
    assert host["Tmpfs"] == {"/tmp": "size=64m"}
    assert engine.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostIp"] == "127.0.0.1"


def test_without_a_pull_secret_the_pull_is_refused(env):
    from kubernetes import client

    client.CoreV1Api(env.cluster.admin).create_namespaced_pod(env.namespace, _pod(
        env, "anonymous", image=env.cluster.images(0), secret=None))
    pod = _wait(env, "anonymous", lambda p: (_container(p).get("state", {}).get("waiting") or {}).get("reason")
                == "ImagePullBackOff", timeout_s=20)
    waiting = _container(pod)["state"]["waiting"]
    assert waiting == {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{env.cluster.images(0)}"'}
    assert pod["status"]["phase"] == "Pending"


@pytest.mark.parametrize("how", ["exit", "liveness"])
def test_a_container_that_dies_is_restarted_counted_and_backed_off(env, registry, how):
    from kubernetes import client

    if how == "exit":
        pod = _pod(env, "dies", image=env.cluster.images(0), secret=_secret(env, registry),
                   command=["node", "-e", "process.exit(3)"])
    else:  # runs, but its liveness probe gets 503: the kubelet kills it
        pod = _pod(env, "dies", image=env.cluster.unready(), secret=_secret(env, registry))
        pod["spec"]["containers"][0]["livenessProbe"] = {"httpGet": {"path": "/healthz", "port": "http"},
                                                         "periodSeconds": 1, "failureThreshold": 1}
    client.CoreV1Api(env.cluster.admin).create_namespaced_pod(env.namespace, pod)
    # backoff_s is 1: the second restart waits 2 s in CrashLoopBackOff
    pod = _wait(env, "dies", lambda p: _container(p).get("restartCount", 0) == 2 and (
        _container(p)["state"].get("waiting") or {}).get("reason") == "CrashLoopBackOff", timeout_s=30)
    status = _container(pod)
    assert (status["restartCount"], status["ready"]) == (2, False), status
    assert status["state"]["waiting"]["message"].startswith("back-off 2s restarting failed container=presentation")
    if how == "exit":
        assert status["lastState"]["terminated"]["exitCode"] == 3
    else:
        assert status["lastState"]["terminated"]["message"] == "Container presentation failed liveness probe"


def test_the_gate_fails_a_release_that_runs_but_never_gets_ready(env):
    target = env.target()
    container = target.manifest["spec"]["template"]["spec"]["containers"][0]
    container["command"] = ["node", "-e", APP]
    # started once it serves (/livez), ready once /healthz answers 200: the unready image answers 503 there
    container["startupProbe"] = {"httpGet": {"path": "/livez", "port": "http"}, "periodSeconds": 1,
                                 "failureThreshold": 30}
    container["readinessProbe"] = {**container["readinessProbe"], "periodSeconds": 1, "failureThreshold": 1}
    _, good = env.deploy(target, 0)
    started = time.monotonic()
    with pytest.raises(DeployFailed) as failed:
        env.deploy(target, 1, env.cluster.unready())
    elapsed = time.monotonic() - started
    assert ("not ready: its readiness probe (http-get :http/healthz) failed 1 time since the container started "
            "(failureThreshold 1): Readiness probe failed: HTTP probe failed with statuscode: 503") \
        in failed.value.message, failed.value.message
    assert elapsed < PROGRESS_DEADLINE_S / 10, f"failure took {elapsed:.1f} s"
    assert failed.value.rolled_back is True
    assert env.serving_images() == {env.release(0).image.pinned}
    assert outcomes(target) == [("deployed", COMMITS[0]), ("rolled-back", COMMITS[1])]


def test_a_deployment_that_never_gets_ready_exceeds_its_progress_deadline(env, registry):
    from kubernetes import client

    pod = _pod(env, "x", image=env.cluster.unready(), secret=_secret(env, registry))
    labels = {"app": "never-ready"}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "never-ready"},
                  "spec": {"replicas": 1, "progressDeadlineSeconds": 3, "selector": {"matchLabels": labels},
                           "template": {"metadata": {"labels": labels}, "spec": pod["spec"]}}}
    apps = client.AppsV1Api(env.cluster.admin)
    apps.create_namespaced_deployment(env.namespace, deployment)
    deadline = time.monotonic() + 30
    conditions = {}
    while time.monotonic() < deadline:
        status = json.loads(apps.read_namespaced_deployment("never-ready", env.namespace,
                                                            _preload_content=False).data).get("status") or {}
        conditions = {c["type"]: c for c in status.get("conditions") or ()}
        if conditions.get("Progressing", {}).get("reason") == "ProgressDeadlineExceeded":
            break
        time.sleep(0.3)
    assert (conditions["Progressing"]["status"], conditions["Progressing"]["reason"]) == (
        "False", "ProgressDeadlineExceeded"), conditions
    assert (conditions["Available"]["status"], status.get("readyReplicas", 0)) == ("False", 0)
