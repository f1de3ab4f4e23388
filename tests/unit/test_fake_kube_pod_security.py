"""The Kubernetes double's Pod Security admission, as a table of pods and the refusal each gets.

The messages are the API server's (pod-security-admission's forbidden reasons and details, in
check order); test_kubectl.py holds the full restricted message to a real kubectl run.
"""

from __future__ import annotations

import pytest

from tests.fakes.kube.admission import pod_security
from tests.fakes.kube.store import KINDS, ApiError, Store

GOOD = {"securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "app", "image": "x", "securityContext": {
            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}]}


def _with(**changes):
    spec = {**GOOD, "containers": [{**GOOD["containers"][0]}]}
    for key, value in changes.items():
        if key.startswith("c_"):
            spec["containers"][0][key[2:]] = value
        else:
            spec[key] = value
    return spec


CASES = [
    # id, level, pod spec, expected reason and detail fragments ("" = admitted)
    ("restricted-good", "restricted", GOOD, ""),
    ("baseline-allows-root", "baseline", {"containers": [{"name": "app", "image": "x"}]}, ""),
    ("host-network", "baseline", _with(hostNetwork=True, hostPID=True), "host namespaces (hostNetwork=true, hostPID=true)"),
    ("privileged", "restricted", _with(c_securityContext={"privileged": True, "allowPrivilegeEscalation": False,
                                                          "capabilities": {"drop": ["ALL"]}}),
     'privileged (container "app" must not set securityContext.privileged=true)'),
    ("host-path", "restricted", _with(volumes=[{"name": "root", "hostPath": {"path": "/"}}]),
     'hostPath volumes ("root"), restricted volume types (volume "root" uses restricted volume type "hostPath")'),
    ("host-port", "baseline", _with(c_ports=[{"containerPort": 80, "hostPort": 80}]),
     'hostPort (container "app" uses hostPort 80)'),
    ("added-capability", "restricted", _with(c_securityContext={"allowPrivilegeEscalation": False, "capabilities": {
        "drop": ["ALL"], "add": ["SYS_ADMIN"]}}),
     'unrestricted capabilities (container "app" must not include "SYS_ADMIN" in securityContext.capabilities.add)'),
    ("root-user", "restricted", _with(securityContext={**GOOD["securityContext"], "runAsUser": 0}),
     "runAsUser=0 (pod must not set runAsUser=0)"),
    ("pod-says-root-ok", "restricted", _with(securityContext={"runAsNonRoot": False,
                                                              "seccompProfile": {"type": "RuntimeDefault"}}),
     "runAsNonRoot != true (pod must not set securityContext.runAsNonRoot=false)"),
    ("unconfined", "restricted", _with(securityContext={"runAsNonRoot": True}),
     'seccompProfile (pod or container "app" must set securityContext.seccompProfile.type to "RuntimeDefault" or '
     '"Localhost")'),
]


@pytest.mark.parametrize("level, spec, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_pod_security_levels(level, spec, expected):
    store = Store()
    store.create(KINDS["namespaces"], "", {"metadata": {"name": "ns", "labels": {
        "pod-security.kubernetes.io/enforce": level}}})
    pod = {"metadata": {"name": "p"}, "spec": spec}
    if not expected:
        pod_security(store, "ns", pod)
        return
    with pytest.raises(ApiError) as refused:
        pod_security(store, "ns", pod)
    assert (refused.value.code, refused.value.reason) == (403, "Forbidden")
    assert refused.value.message.startswith(f'pods "p" is forbidden: violates PodSecurity "{level}:latest": ')
    assert expected in refused.value.message


def test_an_unlabelled_namespace_admits_anything():
    store = Store()
    store.create(KINDS["namespaces"], "", {"metadata": {"name": "ns"}})
    pod_security(store, "ns", {"metadata": {"name": "p"}, "spec": _with(hostNetwork=True)})
