"""The rollout gate against pods that never serve: the fake (in-memory kubelet) or a real cluster.

Uses the cluster and namespace fixtures of test_kubernetes.py (same environment variables). Two
breakages the old fake could not produce: a pod that runs but never becomes ready, and pods that
Pod Security admission refuses. Each must fail the deploy, roll back, and name its cause in well
under the progress deadline. A watch whose resourceVersion expires mid-gate is re-listed.
"""

from __future__ import annotations

import time

import pytest

from pipeline.errors import DeployFailed
from tests.conftest import need
from tests.integration.test_kubernetes import (COMMITS, PROGRESS_DEADLINE_S, cluster, env,  # noqa: F401 - fixtures
                                               outcomes)

pytestmark = pytest.mark.integration

# pods that violate Pod Security's restricted level: root allowed, privilege escalation allowed
LAX = {"runAsNonRoot": False}


def _short_probes(target) -> None:
    """Make a container started once it listens and its readiness probe spent at one failure (1 s period).

    So a pod that listens but never answers /healthz fails quickly; the startup probe covers the
    app's boot, since the kubelet probes readiness only once a container has started.
    """
    container = target.manifest["spec"]["template"]["spec"]["containers"][0]
    container["startupProbe"] = {"tcpSocket": {"port": "http"}, "periodSeconds": 1, "failureThreshold": 30}
    container["readinessProbe"] = {**container["readinessProbe"], "periodSeconds": 1, "failureThreshold": 1,
                                   "timeoutSeconds": 1}


def _lax(target) -> None:
    pod = target.manifest["spec"]["template"]["spec"]
    pod["securityContext"] = {**pod["securityContext"], **LAX}
    pod["containers"][0].pop("securityContext", None)


@pytest.mark.parametrize("breakage", ["never-ready", "pod-security"])
def test_the_gate_names_why_new_pods_never_serve_and_rolls_back(env, breakage):
    from kubernetes import client

    target = env.target()
    _short_probes(target)
    bad_image = None
    if breakage == "never-ready":
        bad_image = env.cluster.unready()
        if bad_image is None:
            need("an image that never becomes ready", "set PINOTAGE_TEST_KUBE_UNREADY_IMAGE for the real cluster")
        # the kubelet's reported failures decide, not the time backstop (whose message says "has not passed")
        expected = "not ready: its readiness probe (http-get :http/healthz) failed 1 time since the container started"
    else:
        _lax(target)  # admitted while the namespace enforces nothing
        expected = 'violates PodSecurity "restricted:latest"'
    _, good = env.deploy(target, 0)
    if breakage == "pod-security":  # the cluster's administrator tightens the namespace
        client.CoreV1Api(env.cluster.admin).patch_namespace(env.namespace, {"metadata": {"labels": {
            "pod-security.kubernetes.io/enforce": "restricted"}}})
    started = time.monotonic()
    with pytest.raises(DeployFailed) as failed:
        env.deploy(target, 1, bad_image)
    elapsed = time.monotonic() - started

    assert expected in failed.value.message, failed.value.message
    assert elapsed < PROGRESS_DEADLINE_S / 10, f"failure took {elapsed:.1f} s"
    assert failed.value.rolled_back is True
    assert env.serving_images() == {env.release(0).image.pinned}
    assert outcomes(target) == [("deployed", COMMITS[0]), ("rolled-back", COMMITS[1])]
    assert env.live()["metadata"]["annotations"]["pinotage.dev/ledger-id"] == good.id


def test_an_expired_watch_is_listed_again_and_the_gate_still_decides(env):
    fake = env.cluster.fake
    if fake is None:
        pytest.skip("needs the fake's watch window to expire the gate's watch at a chosen moment")
    from kubernetes import client

    core = client.CoreV1Api(env.cluster.admin)
    window = 3

    def churn():
        # between the gate's list and its watch, more changes than the window holds
        fake.store.event_window = window
        for n in range(window + 2):
            core.create_namespaced_config_map(env.namespace, {"apiVersion": "v1", "kind": "ConfigMap",
                                                              "metadata": {"name": f"churn-{n}"}})

    target = env.target()
    fake.before("watch", "deployments", churn)  # the stream the gate's verdict waits on
    try:
        env.deploy(target, 0)
    finally:
        fake.store.event_window = 20000
    lists = [r for r in env.deployer_requests() if (r.verb, r.resource) == ("list", "deployments")]
    assert len(lists) == 2, "the expired watch made the gate list the Deployment again"
    assert outcomes(target) == [("deployed", COMMITS[0])]
