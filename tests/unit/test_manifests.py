"""The k8s/presentation manifests: valid for the pinned Kubernetes version, and the issue's rules.

kubernetes-validate ships the OpenAPI-derived JSON schemas inside the package, so these tests
run offline. The version is pinned so a new schema release cannot change what passes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.config import ClusterConfig

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "k8s" / "presentation"
# the kubeadm cluster's version (cluster.kubernetes_version), so the schemas move with the cluster
KUBERNETES_VERSION = ClusterConfig().kubernetes_version


def _documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _all() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(APP.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in _documents(path):
            out.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return out


def _one(kind: str) -> dict:
    found = [doc for _, doc in _all() if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


@pytest.mark.parametrize("doc", [doc for _, doc in _all()], ids=[name for name, _ in _all()])
def test_manifest_validates_against_the_pinned_schema(doc):
    import kubernetes_validate

    major_minor = ".".join(KUBERNETES_VERSION.split(".")[:2])
    assert kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True) == major_minor


def test_validation_rejects_a_misspelt_field():
    # proves the validator is live and strict, so the test above can fail
    import kubernetes_validate

    doc = _one("Deployment")
    broken = {**doc, "spec": {**doc["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((APP / "kustomization.yaml").read_text())
    files = {p.name for p in APP.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    assert kustomization["namespace"] == _one("Namespace")["metadata"]["name"]


def _pod_spec() -> dict:
    return _one("Deployment")["spec"]["template"]["spec"]


DEPLOYMENT_RULES = [
    ("image-by-digest", lambda d: all("@sha256:" in c["image"] for c in d["spec"]["template"]["spec"]["containers"])),
    ("two-or-more-replicas", lambda d: d["spec"]["replicas"] >= 2),
    ("rolling-update", lambda d: d["spec"]["strategy"]["type"] == "RollingUpdate"),
    ("max-unavailable-zero", lambda d: d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0),
    ("selector-matches-template", lambda d: d["spec"]["selector"]["matchLabels"].items()
     <= d["spec"]["template"]["metadata"]["labels"].items()),
    ("probes", lambda d: all({"readinessProbe", "livenessProbe", "startupProbe"} <= c.keys()
                             for c in d["spec"]["template"]["spec"]["containers"])),
    ("probes-use-healthz", lambda d: all(c[p]["httpGet"]["path"] == "/healthz"
                                         for c in d["spec"]["template"]["spec"]["containers"]
                                         for p in ("readinessProbe", "livenessProbe", "startupProbe"))),
    ("port-8080", lambda d: [p["containerPort"] for p in d["spec"]["template"]["spec"]["containers"][0]["ports"]]
     == [8080]),
    # A terminating pod keeps serving while endpoints drain, and SIGTERM's grace covers that pause.
    ("prestop-sleep-covered-by-grace", lambda d: all(
        0 < c["lifecycle"]["preStop"]["sleep"]["seconds"] < d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        for c in d["spec"]["template"]["spec"]["containers"])),
    ("requests-and-limits", lambda d: all({"cpu", "memory"} <= c["resources"]["requests"].keys()
                                          and {"cpu", "memory"} <= c["resources"]["limits"].keys()
                                          for c in d["spec"]["template"]["spec"]["containers"])),
]


@pytest.mark.parametrize("rule", [r for _, r in DEPLOYMENT_RULES], ids=[n for n, _ in DEPLOYMENT_RULES])
def test_deployment_follows_the_rule(rule):
    assert rule(_one("Deployment"))


def _restricted_violations(pod: dict) -> list[str]:
    """List what breaks Pod Security's "restricted" profile (the checks of its v1.31 definition)."""
    problems = []
    pod_ctx = pod.get("securityContext", {})
    if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
        problems.append("host namespaces")
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                         "persistentVolumeClaim", "projected", "secret"}:
            problems.append(f"volume {volume['name']} of kind {kinds}")
    if (pod_ctx.get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
        problems.append("pod seccompProfile")
    for container in pod.get("initContainers", []) + pod["containers"]:
        ctx = container.get("securityContext", {})
        name = container["name"]
        if ctx.get("privileged"):
            problems.append(f"{name}: privileged")
        if ctx.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation must be false")
        if "ALL" not in (ctx.get("capabilities") or {}).get("drop", []):
            problems.append(f"{name}: capabilities must drop ALL")
        if set((ctx.get("capabilities") or {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities")
        if not (ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is True):
            problems.append(f"{name}: runAsNonRoot")
        uid = ctx.get("runAsUser", pod_ctx.get("runAsUser"))
        if not isinstance(uid, int) or uid == 0:
            problems.append(f"{name}: needs a numeric non-root runAsUser")
        for port in container.get("ports", []):
            if port.get("hostPort"):
                problems.append(f"{name}: hostPort")
    return problems


def test_pod_meets_the_restricted_profile():
    assert _restricted_violations(_pod_spec()) == []


@pytest.mark.parametrize("change, expected", [
    (lambda p: p["containers"][0]["securityContext"].update(allowPrivilegeEscalation=True), "allowPrivilegeEscalation"),
    (lambda p: p["containers"][0]["securityContext"].update(runAsUser=0), "runAsUser"),
    (lambda p: p["containers"][0]["securityContext"]["capabilities"].update(drop=[]), "drop ALL"),
    (lambda p: p["securityContext"].pop("seccompProfile"), "seccompProfile"),
    (lambda p: p["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "hostPath"),
], ids=["escalation", "root-uid", "keeps-capabilities", "no-seccomp", "host-path"])
def test_restricted_check_catches_a_violation(change, expected):
    pod = _pod_spec()
    change(pod)
    assert any(expected in problem for problem in _restricted_violations(pod))


def test_root_filesystem_is_read_only_with_a_tmp_volume():
    pod = _pod_spec()
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_namespace_enforces_the_restricted_profile():
    labels = _one("Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_service_is_a_node_port_to_the_app():
    service = _one("Service")
    deployment = _one("Deployment")
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def _role_rules() -> list[dict]:
    return _one("Role")["rules"]


@pytest.mark.parametrize("check", [
    lambda r: "*" not in r["verbs"] and "*" not in r["resources"] and "*" not in r["apiGroups"],
    # of the secrets only the pull secret, by name, and never read (get/list/watch)
    lambda r: "secrets" not in r["resources"] or (r["resourceNames"] == ["pinotage-pull-presentation"]
                                                  and set(r["verbs"]) <= {"patch", "create"}),
    lambda r: not any(res.startswith("pods/") for res in r["resources"]),
    lambda r: not {"escalate", "bind", "impersonate", "delete", "deletecollection"} & set(r["verbs"]),
], ids=["no-wildcards", "only-the-pull-secret-unread", "no-exec-or-subresources-of-pods", "no-delete-or-escalation"])
def test_deployer_role_rule(check):
    assert all(check(rule) for rule in _role_rules())


def test_deployer_binding_is_namespaced_and_binds_the_service_account():
    # the one cluster-scoped grant is pinotage doctor's: reads of the app's namespace and the StorageClasses
    [cluster_role] = [doc for _, doc in _all() if doc["kind"] == "ClusterRole"]
    assert cluster_role["rules"] == [
        {"apiGroups": [""], "resources": ["namespaces"], "resourceNames": ["presentation"], "verbs": ["get"]},
        {"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"], "verbs": ["list"]}]
    [cluster_binding] = [doc for _, doc in _all() if doc["kind"] == "ClusterRoleBinding"]
    assert cluster_binding["roleRef"]["name"] == cluster_role["metadata"]["name"]
    assert cluster_binding["subjects"] == [{"kind": "ServiceAccount", "name": "pinotage-deployer",
                                            "namespace": "presentation"}]
    binding = _one("RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": _one("Role")["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": _one("ServiceAccount")["metadata"]["name"],
                                    "namespace": _one("Namespace")["metadata"]["name"]}]
