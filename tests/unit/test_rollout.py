"""The gate's rules, as a table of Deployment + ReplicaSet + pod fixtures (API JSON shapes)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pipeline.rollout import Done, Failed, Waiting, describe_probe, verdict

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


def _stamp(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def deployment(*, generation=2, observed=2, replicas=2, updated=2, total=2, available=2, revision="2",
               progressing_reason="NewReplicaSetAvailable"):
    return {
        "metadata": {"name": "presentation", "uid": "d-1", "generation": generation,
                     "annotations": {"deployment.kubernetes.io/revision": revision}},
        "spec": {"replicas": replicas},
        "status": {"observedGeneration": observed, "replicas": total, "updatedReplicas": updated,
                   "availableReplicas": available,
                   "conditions": [{"type": "Available", "status": "True"},
                                  {"type": "Progressing", "status": "True" if progressing_reason !=
                                   "ProgressDeadlineExceeded" else "False", "reason": progressing_reason}]},
    }


def replica_set(uid, revision, owner="d-1"):
    return {"metadata": {"name": f"presentation-{uid}", "uid": uid,
                         "annotations": {"deployment.kubernetes.io/revision": revision},
                         "ownerReferences": [{"kind": "Deployment", "uid": owner, "controller": True}]}}


def pod(owner, *, waiting=None, message="", scheduled=None, deleting=False, init=False):
    status = {"phase": "Pending", "conditions": []}
    if waiting:
        key = "initContainerStatuses" if init else "containerStatuses"
        status[key] = [{"name": "presentation", "ready": False, "restartCount": 3,
                        "state": {"waiting": {"reason": waiting, "message": message}}}]
    if scheduled:
        status["conditions"].append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                     "message": "0/3 nodes are available", "lastTransitionTime": _stamp(scheduled)})
    meta = {"name": f"{owner}-pod", "ownerReferences": [{"kind": "ReplicaSet", "uid": owner, "controller": True}]}
    if deleting:
        meta["deletionTimestamp"] = _stamp(1)
    return {"metadata": meta, "status": status}


NEW, OLD = replica_set("rs-new", "2"), replica_set("rs-old", "1")

CASES = [
    # id, deployment, replica sets, pods, expected type, expected reason or message fragment
    ("spec-not-observed", deployment(generation=3, observed=2), [NEW], [], Waiting, "spec update to be observed"),
    ("complete", deployment(), [NEW, OLD], [], Done, "successfully rolled out"),
    ("progress-deadline", deployment(progressing_reason="ProgressDeadlineExceeded", updated=1, available=0),
     [NEW], [], Failed, "ProgressDeadlineExceeded"),
    ("deadline-not-read-before-observed", deployment(generation=3, observed=2,
                                                     progressing_reason="ProgressDeadlineExceeded"),
     [NEW], [], Waiting, "spec update to be observed"),
    ("new-replicas-not-updated", deployment(updated=1, total=3, available=2), [NEW, OLD], [], Waiting,
     "1 out of 2 new replicas have been updated"),
    ("old-replicas-pending", deployment(updated=2, total=3, available=2), [NEW, OLD], [], Waiting,
     "1 old replicas are pending termination"),
    ("updated-not-available", deployment(updated=2, total=2, available=1), [NEW], [], Waiting,
     "1 of 2 updated replicas are available"),
    ("zero-replicas-never-success", deployment(replicas=0, updated=0, total=0, available=0), [NEW], [], Failed,
     "ZeroReplicas"),
    ("image-pull-error", deployment(updated=1, total=3, available=2), [NEW, OLD],
     [pod("rs-new", waiting="ErrImagePull", message="manifest unknown")], Failed, "ErrImagePull"),
    ("image-pull-backoff", deployment(updated=1, total=3, available=2), [NEW, OLD],
     [pod("rs-new", waiting="ImagePullBackOff")], Failed, "ImagePullBackOff"),
    ("crash-loop", deployment(updated=1, total=3, available=2), [NEW, OLD],
     [pod("rs-new", waiting="CrashLoopBackOff")], Failed, "CrashLoopBackOff"),
    ("config-error", deployment(updated=1, total=3, available=2), [NEW, OLD],
     [pod("rs-new", waiting="CreateContainerConfigError")], Failed, "CreateContainerConfigError"),
    ("init-container-crash", deployment(updated=1, total=3, available=2), [NEW, OLD],
     [pod("rs-new", waiting="CrashLoopBackOff", init=True)], Failed, "CrashLoopBackOff"),
    ("creating-is-not-failure", deployment(updated=1, total=3, available=2), [NEW, OLD],
     [pod("rs-new", waiting="ContainerCreating")], Waiting, "1 out of 2"),
    ("old-replica-set-pod-ignored", deployment(updated=1, total=3, available=2), [NEW, OLD],
     [pod("rs-old", waiting="CrashLoopBackOff")], Waiting, "1 out of 2"),
    ("deleting-pod-ignored", deployment(updated=1, total=3, available=2), [NEW, OLD],
     [pod("rs-new", waiting="CrashLoopBackOff", deleting=True)], Waiting, "1 out of 2"),
    ("other-deployments-replica-set-ignored", deployment(updated=1, total=3, available=2),
     [replica_set("rs-x", "2", owner="d-other"), OLD], [pod("rs-x", waiting="ErrImagePull")], Waiting, "1 out of 2"),
    ("unschedulable-within-grace", deployment(updated=1, total=3, available=2), [NEW, OLD],
     [pod("rs-new", scheduled=30)], Waiting, "1 out of 2"),
    ("unschedulable-past-grace", deployment(updated=1, total=3, available=2), [NEW, OLD],
     [pod("rs-new", scheduled=61)], Failed, "Unschedulable"),
    ("pods-not-read-before-observed", deployment(generation=3, observed=2), [NEW],
     [pod("rs-new", waiting="ErrImagePull")], Waiting, "spec update to be observed"),
]


@pytest.mark.parametrize("dep, sets, pods, kind, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_verdict(dep, sets, pods, kind, expected):
    result = verdict(dep, sets, pods, now=NOW, unschedulable_grace_s=60)
    assert type(result) is kind, result
    text = result.reason if isinstance(result, Failed) else result.message
    assert expected in text


def test_failure_names_the_pod_and_the_registry_message():
    result = verdict(deployment(updated=1, total=3, available=2), [NEW, OLD],
                     [pod("rs-new", waiting="ErrImagePull", message="manifest unknown")], now=NOW)
    assert result.message == "pod rs-new-pod container presentation: ErrImagePull: manifest unknown"


PROBES = {"startupProbe": {"periodSeconds": 2, "failureThreshold": 30, "timeoutSeconds": 1},  # 61 s
          "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5,
                             "failureThreshold": 2, "timeoutSeconds": 1}}  # 11 s


def running_pod(owner, *, ran_s, ready=False, probes=PROBES, uid="pod-1"):
    status = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
              "containerStatuses": [{"name": "presentation", "ready": ready, "restartCount": 0, "started": True,
                                     "state": {"running": {"startedAt": _stamp(ran_s)}}}]}
    return {"metadata": {"name": f"{owner}-pod", "uid": uid,
                         "ownerReferences": [{"kind": "ReplicaSet", "uid": owner, "controller": True}]},
            "spec": {"containers": [{"name": "presentation", **probes}]}, "status": status}


def unhealthy(*, count, first_s, last_s, uid="pod-1", container="presentation",
              message="Readiness probe failed: HTTP probe failed with statuscode: 503", reason="Unhealthy"):
    """A kubelet's aggregated Event: count failures, the first first_s and the latest last_s ago."""
    return {"metadata": {"name": f"rs-new-pod.{count:x}", "uid": f"ev-{uid}-{first_s}-{message[:8]}"},
            "involvedObject": {"kind": "Pod", "name": "rs-new-pod", "uid": uid, "apiVersion": "v1",
                               "fieldPath": f"spec.containers{{{container}}}"},
            "reason": reason, "type": "Warning", "message": message, "source": {"component": "kubelet"},
            "count": count, "firstTimestamp": _stamp(first_s), "lastTimestamp": _stamp(last_s)}


def series_event(*, count, first_s, last_s):
    """The same, as the events.k8s.io recorder writes it, seen through core/v1: eventTime and series."""
    event = unhealthy(count=0, first_s=first_s, last_s=last_s)
    for key in ("count", "firstTimestamp", "lastTimestamp"):
        del event[key]
    event.update(eventTime=_stamp(first_s).replace("Z", ".000000Z"),
                 series={"count": count, "lastObservedTime": _stamp(last_s).replace("Z", ".000000Z")})
    return event


def refused(message):
    dep = deployment(updated=0, total=2, available=2)
    dep["status"]["conditions"].append({"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                                        "message": message})
    return dep


PSA = ('pods "presentation-abc-x1" is forbidden: violates PodSecurity "restricted:latest": runAsNonRoot != true '
       '(pod or container "presentation" must set securityContext.runAsNonRoot=true)')

LIVENESS = "Liveness probe failed: HTTP probe failed with statuscode: 503"
MORE_CASES = [
    # id, pods, the kubelet's events, expected type, expected reason or message fragment
    ("failure-threshold-spent", [running_pod("rs-new", ran_s=8)], [unhealthy(count=2, first_s=6, last_s=1)],
     Failed, "Unhealthy"),
    ("one-failure-of-two-waits", [running_pod("rs-new", ran_s=8)], [unhealthy(count=1, first_s=6, last_s=6)],
     Waiting, "1 out of 2"),
    ("failures-before-this-start-do-not-count", [running_pod("rs-new", ran_s=8)],
     [unhealthy(count=9, first_s=60, last_s=20)], Waiting, "1 out of 2"),
    ("aggregated-across-a-restart-counts-once", [running_pod("rs-new", ran_s=8)],
     [unhealthy(count=9, first_s=60, last_s=2)], Waiting, "1 out of 2"),
    ("separate-events-add-up", [running_pod("rs-new", ran_s=8)],
     [unhealthy(count=1, first_s=6, last_s=6), unhealthy(count=1, first_s=1, last_s=1, message=(
         "Readiness probe failed: Get \"http://10.244.1.5:8080/healthz\": connection refused"))], Failed, "Unhealthy"),
    ("combined-by-the-recorder", [running_pod("rs-new", ran_s=8)], [unhealthy(
        count=2, first_s=6, last_s=1, message="(combined from similar events): Readiness probe failed: x")],
     Failed, "Unhealthy"),
    ("events-k8s-io-series", [running_pod("rs-new", ran_s=8)], [series_event(count=2, first_s=6, last_s=1)],
     Failed, "Unhealthy"),
    ("liveness-failures-are-not-readiness", [running_pod("rs-new", ran_s=8)],
     [unhealthy(count=5, first_s=6, last_s=1, message=LIVENESS)], Waiting, "1 out of 2"),
    ("another-pods-events", [running_pod("rs-new", ran_s=8)], [unhealthy(count=5, first_s=6, last_s=1, uid="pod-2")],
     Waiting, "1 out of 2"),
    ("another-containers-events", [running_pod("rs-new", ran_s=8)],
     [unhealthy(count=5, first_s=6, last_s=1, container="sidecar")], Waiting, "1 out of 2"),
    ("ready-now-is-fine", [running_pod("rs-new", ran_s=8, ready=True)], [unhealthy(count=5, first_s=6, last_s=1)],
     Waiting, "1 out of 2"),
    ("no-readiness-probe-no-rule", [running_pod("rs-new", ran_s=500, probes={})],
     [unhealthy(count=5, first_s=6, last_s=1)], Waiting, "1 out of 2"),
    # the backstop, when no failure was reported: the probes' whole budget from the container's start
    ("no-events-past-probe-budget", [running_pod("rs-new", ran_s=78)], [], Failed, "NotReady"),
    ("no-events-within-probe-budget", [running_pod("rs-new", ran_s=70)], [], Waiting, "1 out of 2"),
    ("ready-pod-is-fine", [running_pod("rs-new", ran_s=500, ready=True)], [], Waiting, "1 out of 2"),
]


@pytest.mark.parametrize("pods, events, kind, expected", [c[1:] for c in MORE_CASES], ids=[c[0] for c in MORE_CASES])
def test_not_ready_rule(pods, events, kind, expected):
    result = verdict(deployment(updated=1, total=3, available=2), [NEW, OLD], pods, events, now=NOW)
    assert type(result) is kind, result
    assert expected in (result.reason if isinstance(result, Failed) else result.message)


def test_not_ready_names_the_probe_its_failures_and_the_kubelets_message():
    result = verdict(deployment(updated=1, total=3, available=2), [NEW, OLD], [running_pod("rs-new", ran_s=12)],
                     [unhealthy(count=3, first_s=10, last_s=0)], now=NOW)
    assert result.message == ("pod rs-new-pod container presentation: not ready: its readiness probe "
                              "(http-get :http/healthz) failed 3 times since the container started "
                              "(failureThreshold 2): Readiness probe failed: HTTP probe failed with statuscode: 503")


def test_not_ready_without_reported_failures_names_the_probe_budget():
    result = verdict(deployment(updated=1, total=3, available=2), [NEW, OLD], [running_pod("rs-new", ran_s=80)],
                     now=NOW)
    assert result.message == ("pod rs-new-pod container presentation: not ready after 80 s running, past its "
                              "startup and readiness probes' budget (72 s: delay + period x failureThreshold + "
                              "timeout each), and no failure of its readiness probe (http-get :http/healthz) "
                              "was reported")


@pytest.mark.parametrize("probe, said", [
    ({"httpGet": {"path": "/healthz", "port": 8080}}, "http-get :8080/healthz"),
    ({"tcpSocket": {"port": "http"}}, "tcp-socket :http"),
    ({"exec": {"command": ["cat", "/tmp/ready"]}}, "exec cat /tmp/ready"),
], ids=["http", "tcp", "exec"])
def test_describe_probe(probe, said):
    assert describe_probe(probe) == said


def test_pod_security_refusal_fails_at_once_and_quota_waits():
    result = verdict(refused(PSA), [NEW, OLD], [], now=NOW)
    assert (type(result), result.reason) == (Failed, "FailedCreate")
    assert result.message == f'deployment "presentation" cannot create its pods: {PSA}'
    quota = refused('pods "presentation-abc-x1" is forbidden: exceeded quota: pods, requested: pods=1')
    assert isinstance(verdict(quota, [NEW, OLD], [], now=NOW), Waiting)
