"""The rollout gate's rules: a Deployment, its ReplicaSets and pods in; a verdict out.

Pure functions over the API server's JSON (camelCase dicts, as ``kubectl get -o json`` shows
them), so they are tested from fixtures and the target only has to feed them what it watches.

The rules are ``kubectl rollout status``'s (its ``DeploymentStatusViewer``), in its order:

1. until ``status.observedGeneration`` reaches ``metadata.generation`` the controller has not
   seen the new spec: wait;
2. a ``Progressing`` condition with reason ``ProgressDeadlineExceeded``: failed;
3. fewer updated replicas than asked for, old replicas still present, or fewer available
   replicas than updated ones: wait;
4. otherwise: done.

Three additions. A Deployment that asks for zero replicas never passes, because zero pods prove
nothing. A ``ReplicaFailure`` condition saying Pod Security refused the pods fails at once: no
pod of that template will ever be admitted. And the new ReplicaSet's pods are read for states
that will not heal by themselves (``ErrImagePull``, ``ImagePullBackOff``, ``CrashLoopBackOff``,
``CreateContainerConfigError``…, ``Unschedulable`` for longer than a grace period, or a container
that cannot get ready), so a broken release fails in seconds rather than at the progress deadline.

A container "cannot get ready" when it is running, not ready, and the kubelet has reported its
readiness probe failing ``failureThreshold`` times since the container's current start: the
manifest's own tolerance is spent (the kubelet records each failure as a ``Warning`` ``Unhealthy``
Event, "Readiness probe failed: …", counted in ``count``). The kubelet probes readiness only once
the container has started, so the boot is the startup probe's to cover; a container without one
is started at once, and its readiness probe's tolerance runs from then. Both the Events' and the container's
times come from the node's clock, so no clock skew enters. Events are best-effort (the kubelet's
recorder drops them under its rate limit and spam filter), so when they never show the failures,
a backstop judges by time alone: running longer than its startup and readiness probes' whole
budgets, the latest a healthy container could need. The two judge the same thing; with events the
first decides as soon as the ``failureThreshold``-th failure is reported, long before the backstop.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import Any, Iterable, Union

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
DEADLINE_REASON = "ProgressDeadlineExceeded"
UNSCHEDULABLE_GRACE_S = 60.0
NOT_READY_SLACK_S = 5.0  # past the probes' own budget: clock skew between the node and us, one probe's latency
READINESS_FAILED = "Readiness probe failed"  # the prober's message (an "errored" probe is not counted)
COMBINED = "(combined from similar events): "  # the recorder's prefix once it aggregates differing messages
REFUSED_FOR_GOOD = ("violates PodSecurity",)  # admission refusals no retry of the same template can pass

# waiting reasons that only a new release (or an operator) can clear
POD_FAILURE_REASONS = (
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
)


@dataclasses.dataclass(frozen=True)
class Waiting:
    message: str


@dataclasses.dataclass(frozen=True)
class Done:
    message: str


@dataclasses.dataclass(frozen=True)
class Failed:
    reason: str  # a Kubernetes reason word: ProgressDeadlineExceeded, ImagePullBackOff, …
    message: str


Verdict = Union[Waiting, Done, Failed]
Object = dict[str, Any]


def verdict(deployment: Object, replica_sets: Iterable[Object] = (), pods: Iterable[Object] = (),
            events: Iterable[Object] = (), *, now: datetime,
            unschedulable_grace_s: float = UNSCHEDULABLE_GRACE_S) -> Verdict:
    """Judge a rollout: ``kubectl rollout status``'s rules plus the new pods' failures."""
    name = deployment["metadata"]["name"]
    spec = deployment.get("spec", {})
    status = deployment.get("status", {})
    if deployment["metadata"].get("generation", 0) > status.get("observedGeneration", 0):
        return Waiting("Waiting for deployment spec update to be observed...")
    progressing = condition(status, "Progressing")
    if progressing and progressing.get("reason") == DEADLINE_REASON:
        return Failed(DEADLINE_REASON, f'deployment "{name}" exceeded its progress deadline')
    failure = condition(status, "ReplicaFailure")
    if failure and failure.get("status") == "True" and any(r in failure.get("message", "") for r in REFUSED_FOR_GOOD):
        return Failed(failure.get("reason") or "ReplicaFailure", f'deployment "{name}" cannot create its pods: '
                                                                 f'{failure.get("message")}')
    wanted = spec.get("replicas", 1)
    if wanted == 0:
        return Failed("ZeroReplicas", f'deployment "{name}" asks for 0 replicas; zero pods prove nothing')

    new = new_replica_set(deployment, replica_sets)
    if new is not None:
        unhealthy = readiness_failures(events)
        for pod in pods_of(new, pods):
            failure = pod_failure(pod, unhealthy.get(pod["metadata"].get("uid"), ()), now=now,
                                  unschedulable_grace_s=unschedulable_grace_s)
            if failure is not None:
                return failure

    updated = status.get("updatedReplicas", 0)
    replicas = status.get("replicas", 0)
    available = status.get("availableReplicas", 0)
    if updated < wanted:
        return Waiting(f'Waiting for deployment "{name}" rollout to finish: '
                       f"{updated} out of {wanted} new replicas have been updated...")
    if replicas > updated:
        return Waiting(f'Waiting for deployment "{name}" rollout to finish: '
                       f"{replicas - updated} old replicas are pending termination...")
    if available < updated:
        return Waiting(f'Waiting for deployment "{name}" rollout to finish: '
                       f"{available} of {updated} updated replicas are available...")
    if available == 0:
        return Waiting(f'Waiting for deployment "{name}" rollout to finish: no replica is available yet...')
    return Done(f'deployment "{name}" successfully rolled out')


def condition(status: Object, kind: str) -> Object | None:
    """Return the condition of that type from a status, if present."""
    for item in status.get("conditions") or ():
        if item.get("type") == kind:
            return item
    return None


def revision(obj: Object) -> int:
    """Return the revision a Deployment or ReplicaSet carries (0 when it has none yet)."""
    raw = (obj["metadata"].get("annotations") or {}).get(REVISION_ANNOTATION, "0")
    try:
        return int(raw)
    except ValueError:
        return 0


def new_replica_set(deployment: Object, replica_sets: Iterable[Object]) -> Object | None:
    """Find the ReplicaSet of the Deployment's current revision, among those it owns."""
    wanted = revision(deployment)
    uid = deployment["metadata"].get("uid")
    if not wanted:
        return None
    for rs in replica_sets:
        owners = rs["metadata"].get("ownerReferences") or ()
        if any(o.get("uid") == uid and o.get("controller") for o in owners) and revision(rs) == wanted:
            return rs
    return None


def pods_of(replica_set: Object, pods: Iterable[Object]) -> list[Object]:
    """Return the pods the ReplicaSet controls."""
    uid = replica_set["metadata"].get("uid")
    return [pod for pod in pods
            if any(o.get("uid") == uid and o.get("controller") for o in pod["metadata"].get("ownerReferences") or ())]


def pod_failure(pod: Object, unhealthy: Iterable[Object] = (), *, now: datetime,
                unschedulable_grace_s: float = UNSCHEDULABLE_GRACE_S) -> Failed | None:
    """Return why a pod will not become ready by itself, or None while it still might.

    ``unhealthy`` are the kubelet's readiness-failure Events about this pod (``readiness_failures``).
    """
    name = pod["metadata"]["name"]
    status = pod.get("status", {})
    if pod["metadata"].get("deletionTimestamp"):
        return None  # on its way out: its state says nothing about the release
    for container in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in POD_FAILURE_REASONS:
            detail = f": {waiting['message']}" if waiting.get("message") else ""
            return Failed(waiting["reason"], f"pod {name} container {container.get('name')}: "
                                             f"{waiting['reason']}{detail}")
    not_ready = _not_ready(pod, list(unhealthy), now)
    if not_ready is not None:
        return not_ready
    scheduled = condition(status, "PodScheduled")
    if scheduled and scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        since = parse_time(scheduled.get("lastTransitionTime"))
        if since is not None and (now - since).total_seconds() >= unschedulable_grace_s:
            return Failed("Unschedulable", f"pod {name} unschedulable for {unschedulable_grace_s:.0f} s: "
                                           f"{scheduled.get('message', '')}".rstrip(": "))
    return None


def probe_budget_s(probe: Object | None) -> float:
    """Return how long a probe may fail before the kubelet acts: delay + period × failures + timeout."""
    if not probe:
        return 0.0
    return (probe.get("initialDelaySeconds", 0) + probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)
            + probe.get("timeoutSeconds", 1))


def _not_ready(pod: Object, unhealthy: list[Object], now: datetime) -> Failed | None:
    """Fail a running container that is not ready and has spent its readiness probe's failureThreshold."""
    containers = {c.get("name"): c for c in (pod.get("spec") or {}).get("containers") or ()}
    for status in (pod.get("status") or {}).get("containerStatuses") or ():
        spec = containers.get(status.get("name")) or {}
        running = (status.get("state") or {}).get("running") or {}
        started = parse_time(running.get("startedAt"))
        probe = spec.get("readinessProbe")
        if status.get("ready") or started is None or not probe:
            continue
        where = f"pod {pod['metadata']['name']} container {status.get('name')}: not ready"
        failed, last = _failures_since(unhealthy, status.get("name"), started)
        threshold = probe.get("failureThreshold", 3)
        if failed >= threshold:
            return Failed("Unhealthy", f"{where}: its readiness probe ({describe_probe(probe)}) failed {failed} "
                                       f"time{'s' * (failed != 1)} since the container started "
                                       f"(failureThreshold {threshold}): {last}")
        budget = probe_budget_s(spec.get("startupProbe")) + probe_budget_s(probe)
        ran = (now - started).total_seconds()
        if ran > budget + NOT_READY_SLACK_S:
            return Failed("NotReady", f"{where} after {ran:.0f} s running, past its startup and readiness probes' "
                                      f"budget ({budget:g} s: delay + period x failureThreshold + timeout each), "
                                      f"and no failure of its readiness probe ({describe_probe(probe)}) was reported")
    return None


def readiness_failures(events: Iterable[Object]) -> dict[str, list[Object]]:
    """Group the kubelet's "Readiness probe failed" Events by the uid of the pod they are about."""
    found: dict[str, list[Object]] = {}
    for event in events:
        involved = event.get("involvedObject") or {}
        message = event.get("message") or ""
        if (event.get("reason") == "Unhealthy" and involved.get("kind") == "Pod"
                and message.removeprefix(COMBINED).startswith(READINESS_FAILED)):
            found.setdefault(involved.get("uid", ""), []).append(event)
    return found


def _failures_since(unhealthy: list[Object], container: str, started: datetime) -> tuple[int, str]:
    """Count one container's readiness failures since it started; return the count and the latest message.

    An aggregated Event first seen before the start (a previous run of the container) and seen again
    since counts once: how many of its occurrences are this run's is not known.
    """
    count, latest, latest_at = 0, "", None
    for event in unhealthy:
        if (event.get("involvedObject") or {}).get("fieldPath") != f"spec.containers{{{container}}}":
            continue
        series = event.get("series") or {}
        first = parse_time(event.get("firstTimestamp")) or parse_time(event.get("eventTime"))
        last = parse_time(series.get("lastObservedTime")) or parse_time(event.get("lastTimestamp")) or first
        if last is None or last < started:
            continue
        count += (series.get("count") or event.get("count") or 1) if first is not None and first >= started else 1
        if latest_at is None or last >= latest_at:
            latest, latest_at = event.get("message", ""), last
    return count, latest.removeprefix(COMBINED)


def describe_probe(probe: Object) -> str:
    """Say what a probe checks, as kubectl describe does: "http-get :http/healthz", "tcp-socket :8080", "exec"."""
    if "httpGet" in probe:
        return f"http-get :{probe['httpGet'].get('port')}{probe['httpGet'].get('path', '/')}"
    if "tcpSocket" in probe:
        return f"tcp-socket :{probe['tcpSocket'].get('port')}"
    if "grpc" in probe:
        return f"grpc :{probe['grpc'].get('port')}"
    return "exec " + " ".join(probe.get("exec", {}).get("command") or [])


def parse_time(value: str | None) -> datetime | None:
    """Parse the API's RFC 3339 timestamps ("2024-05-01T10:00:00Z")."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(timezone.utc)
