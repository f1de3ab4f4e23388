"""The installed kubectl against the API server: the fake in tests/fakes/kube, or a real cluster.

An administrator's everyday verbs (get, describe, apply --server-side, diff, rollout status,
auth can-i, delete) run the real kubectl binary, so the fake's discovery, OpenAPI, tables,
dry runs, access reviews and admission answers are held to what kubectl needs. With
PINOTAGE_TEST_KUBECONFIG set (an admin kubeconfig) the same tests run against that cluster; then
PINOTAGE_TEST_KUBE_IMAGES names an image by digest that serves /healthz on 8080 as a non-root user.
Otherwise the fake (in-memory kubelet) serves HTTPS on loopback, as kubectl sends a token only over TLS.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, need
from tests.integration.kube_setup import repointed

pytestmark = pytest.mark.integration

DEPLOYMENT = yaml.safe_load((ROOT / "k8s/presentation/deployment.yaml").read_text())
RBAC = ROOT / "k8s/presentation/rbac.yaml"


@dataclasses.dataclass
class Kubectl:
    kubeconfig: str
    cache: Path
    image: str
    fake: object | None

    def __call__(self, *args: str, stdin: str | None = None, token: str | None = None,
                 check: bool = True) -> subprocess.CompletedProcess:
        """Run kubectl with this cluster's kubeconfig (as the admin, or as the holder of token)."""
        extra = [f"--token={token}"] if token else []
        done = subprocess.run(["kubectl", f"--kubeconfig={self.kubeconfig}", f"--cache-dir={self.cache}", *extra,
                               *args], input=stdin, capture_output=True, text=True, timeout=90)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
        return done

    def apply(self, *docs: dict, namespace: str, check: bool = True) -> subprocess.CompletedProcess:
        return self("apply", "--server-side", "-n", namespace, "-f", "-", check=check,
                    stdin=yaml.safe_dump_all(list(docs)))


@pytest.fixture(scope="module")
def kubectl(tmp_path_factory):
    if shutil.which("kubectl") is None:
        need("kubectl", "the installed kubectl is what these tests drive")
    cache = tmp_path_factory.mktemp("kubectl-cache")
    real = os.environ.get("PINOTAGE_TEST_KUBECONFIG")
    if real:
        refs = [r for r in os.environ.get("PINOTAGE_TEST_KUBE_IMAGES", "").split(",") if "@sha256:" in r]
        if not refs:
            need("an image for the real cluster", "PINOTAGE_TEST_KUBE_IMAGES must list an image by digest")
        yield Kubectl(real, cache, refs[0], None)
        return
    from tests.fakes.kube import FakeKube

    fake = FakeKube(token=secrets.token_urlsafe(16), tls=True, pod_start_s=0.1).start()
    path = fake.kubeconfig(tmp_path_factory.mktemp("kube") / "admin.yaml")
    try:
        yield Kubectl(str(path), cache, "127.0.0.1:5000/pinotage/presentation@sha256:" + "1" * 64, fake)
    finally:
        fake.stop()
        path.unlink()


@pytest.fixture
def namespace(kubectl):
    name = f"pinotage-kubectl-{secrets.token_hex(4)}"
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}, namespace=name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def _deployment(kubectl: Kubectl, namespace: str, replicas: int = 2) -> dict:
    doc = copy.deepcopy(DEPLOYMENT)
    doc["metadata"]["namespace"] = namespace
    doc["spec"]["replicas"] = replicas
    doc["spec"]["template"]["spec"]["containers"][0]["image"] = kubectl.image
    return doc


def _live(kubectl: Kubectl, namespace: str) -> dict:
    return json.loads(kubectl("get", "deployment", "presentation", "-n", namespace, "-o", "json",
                              "--show-managed-fields").stdout)


def test_discovery_and_openapi_name_what_is_served(kubectl):
    names = set(kubectl("api-resources", "-o", "name").stdout.split())
    assert {"deployments.apps", "pods", "leases.coordination.k8s.io", "roles.rbac.authorization.k8s.io",
            "clusterroles.rbac.authorization.k8s.io"} <= names
    index = json.loads(kubectl("get", "--raw", "/openapi/v3").stdout)
    assert {"api/v1", "apis/apps/v1"} <= set(index["paths"])
    explained = kubectl("explain", "deployment.spec.selector").stdout
    assert "LabelSelector" in explained and "matchLabels" in explained


def test_apply_rollout_status_get_and_describe(kubectl, namespace):
    applied = kubectl.apply(_deployment(kubectl, namespace), namespace=namespace)
    assert applied.stdout.strip() == "deployment.apps/presentation serverside-applied"
    status = kubectl("rollout", "status", "deployment/presentation", "-n", namespace, "--timeout=120s")
    assert 'deployment "presentation" successfully rolled out' in status.stdout
    table = kubectl("get", "deployment", "presentation", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert table[1].split()[:4] == ["presentation", "2/2", "2", "2"]
    described = kubectl("describe", "deployment", "presentation", "-n", namespace).stdout
    assert re.search(r"Replicas:\s+2 desired \| 2 updated \| 2 total \| 2 available \| 0 unavailable", described)
    assert re.search(r"Readiness:\s+http-get http://:http/healthz delay=0s timeout=1s period=5s #success=1 "
                     r"#failure=2", described), described
    managers = {(m["manager"], m["operation"]) for m in _live(kubectl, namespace)["metadata"]["managedFields"]}
    assert ("kubectl", "Apply") in managers


def test_a_misspelt_field_is_refused(kubectl, namespace):
    doc = _deployment(kubectl, namespace)
    doc["spec"]["replica"] = doc["spec"].pop("replicas")
    refused = kubectl.apply(doc, namespace=namespace, check=False)
    assert refused.returncode == 1
    assert ".spec.replica: field not declared in schema" in refused.stderr, refused.stderr
    assert kubectl("get", "deployments", "-n", namespace, "-o", "name").stdout.strip() == ""


def test_get_watch_prints_each_change_as_a_row(kubectl, namespace):
    watching = subprocess.Popen(["kubectl", f"--kubeconfig={kubectl.kubeconfig}", f"--cache-dir={kubectl.cache}",
                                 "get", "deployments", "-n", namespace, "-w", "--request-timeout=4s"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1)  # the watch is open
        kubectl.apply(_deployment(kubectl, namespace), namespace=namespace)
        out, _ = watching.communicate(timeout=30)
    finally:
        watching.kill()
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"], out
    assert [r[0] for r in rows[1:]] and {r[0] for r in rows[1:]} == {"presentation"}, out
    assert rows[-1][1] == "2/2", "the last change shown is the rollout done"


def test_diff_shows_the_change_and_writes_nothing(kubectl, namespace):
    kubectl.apply(_deployment(kubectl, namespace), namespace=namespace)
    kubectl("rollout", "status", "deployment/presentation", "-n", namespace, "--timeout=120s")  # status settles
    before = _live(kubectl, namespace)["metadata"]["resourceVersion"]
    same = kubectl("diff", "--server-side", "-f", "-", check=False,
                   stdin=yaml.safe_dump(_deployment(kubectl, namespace)))
    assert (same.returncode, same.stdout) == (0, ""), same.stderr
    changed = kubectl("diff", "--server-side", "-f", "-", check=False,
                      stdin=yaml.safe_dump(_deployment(kubectl, namespace, replicas=3)))
    assert changed.returncode == 1, changed.stderr
    assert "-  replicas: 2" in changed.stdout and "+  replicas: 3" in changed.stdout
    live = _live(kubectl, namespace)
    assert (live["spec"]["replicas"], live["metadata"]["resourceVersion"]) == (2, before)


def test_auth_can_i_follows_role_cluster_role_and_group_bindings(kubectl, namespace):
    docs = repointed(RBAC, namespace)
    reader = f"pinotage-test-reader-{namespace}"
    docs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": reader},
                 "rules": [{"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list"]}]})
    docs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                 "metadata": {"name": "service-readers", "namespace": namespace},
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": reader},
                 "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                               "name": f"system:serviceaccounts:{namespace}"}]})
    kubectl.apply(*docs, namespace=namespace)
    try:
        token = kubectl("create", "token", "pinotage-deployer", "-n", namespace).stdout.strip()
        asked = {}
        for question in ("patch deployments/presentation", "patch deployments", "list pods", "delete pods",
                         "list services", "list services -n default", "delete namespaces"):
            done = kubectl("auth", "can-i", *question.split(), *(["-n", namespace] if "-n" not in question else []),
                           token=token, check=False)
            asked[question] = done.stdout.strip()
        assert asked == {"patch deployments/presentation": "yes", "patch deployments": "no", "list pods": "yes",
                         "delete pods": "no", "list services": "yes", "list services -n default": "no",
                         "delete namespaces": "no"}
        assert kubectl("auth", "can-i", "delete", "namespaces").stdout.strip() == "yes"  # the admin
    finally:
        kubectl("delete", "clusterrole", reader, check=False)


def test_pod_security_refuses_a_pod_with_the_api_servers_message(kubectl, namespace):
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "root", "namespace": namespace},
           "spec": {"containers": [{"name": "app", "image": kubectl.image}]}}
    refused = kubectl.apply(pod, namespace=namespace, check=False)
    assert refused.returncode == 1
    assert (f'pods "root" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false '
            f'(container "app" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities '
            f'(container "app" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or '
            f'container "app" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "app" '
            f'must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")') in refused.stderr
    # the presentation Deployment's pods meet restricted: its rollout completes in that namespace
    kubectl.apply(_deployment(kubectl, namespace), namespace=namespace)
    kubectl("rollout", "status", "deployment/presentation", "-n", namespace, "--timeout=120s")


def test_delete_removes_the_deployment_and_its_pods(kubectl, namespace):
    kubectl.apply(_deployment(kubectl, namespace), namespace=namespace)
    kubectl("rollout", "status", "deployment/presentation", "-n", namespace, "--timeout=120s")
    deleted = kubectl("delete", "deployment", "presentation", "-n", namespace)
    assert deleted.stdout.strip() == 'deployment.apps "presentation" deleted'
    gone = kubectl("get", "deployment", "presentation", "-n", namespace, check=False)
    assert gone.returncode == 1
    assert 'deployments.apps "presentation" not found' in gone.stderr
    deadline = time.monotonic() + 60
    while kubectl("get", "pods", "-n", namespace, "-o", "name").stdout.strip() and time.monotonic() < deadline:
        time.sleep(0.2)  # the garbage collector removes the ReplicaSet, then its pods
    assert kubectl("get", "pods", "-n", namespace, "-o", "name").stdout.strip() == ""


def test_a_failing_readiness_probe_is_a_kubelet_event_that_get_and_describe_show(kubectl, namespace):
    """The kubelet records each failed readiness probe as one Warning Unhealthy Event, counted, about the container."""
    probe = {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1, "failureThreshold": 1}
    image = kubectl.image
    if kubectl.fake is not None:
        image = kubectl.image.replace("presentation@", "never-ready@")
        kubectl.fake.unready_images.add(image)  # the in-memory kubelet's probe fails (503)
    else:
        probe["httpGet"]["path"] = "/no-such-path"  # the real app answers 404 there
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "unready", "namespace": namespace},
           "spec": {"containers": [{"name": "app", "image": image, "readinessProbe": probe}]}}
    kubectl.apply(pod, namespace=namespace)
    selector = "involvedObject.kind=Pod,involvedObject.name=unready,reason=Unhealthy,type=Warning,source=kubelet"
    deadline, events = time.monotonic() + 60, []
    while time.monotonic() < deadline:
        events = json.loads(kubectl("get", "events", "-n", namespace, "--field-selector", selector,
                                    "-o", "json").stdout)["items"]
        if events and events[0].get("count", 1) >= 3:
            break
        time.sleep(0.5)
    [event] = events  # one Event, aggregated: the same failure counted, not written again
    assert event["count"] >= 3, event
    assert event["involvedObject"]["fieldPath"] == "spec.containers{app}"
    assert event["involvedObject"]["uid"] == json.loads(kubectl("get", "pod", "unready", "-n", namespace,
                                                                "-o", "json").stdout)["metadata"]["uid"]
    assert event["message"].startswith("Readiness probe failed: HTTP probe failed with statuscode: "), event
    assert event["firstTimestamp"] <= event["lastTimestamp"]
    described = kubectl("describe", "pod", "unready", "-n", namespace).stdout
    assert re.search(r"Warning\s+Unhealthy\s+\S+ \(x\d+ over \S+\)\s+kubelet\s+Readiness probe failed: HTTP probe "
                     r"failed with statuscode: ", described), described
    other = kubectl("get", "events", "-n", namespace, "--field-selector", "involvedObject.name=unready,reason=Pulled",
                    "-o", "name").stdout
    assert "unready" not in other  # the selector filters on the server
    refused = kubectl("get", "events", "-n", namespace, "--field-selector", "message=x", check=False)
    assert refused.returncode == 1 and "field label not supported: message" in refused.stderr, refused.stderr
