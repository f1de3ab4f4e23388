"""The in-memory kubelet: pods "run" without any container, their states chosen by the test.

A pod starts when its image exists (asked of a callable, e.g. the test registry, with the
``auths`` of the pod's ``kubernetes.io/dockerconfigjson`` imagePullSecrets), shows
``ErrImagePull`` then ``ImagePullBackOff`` when it does not, ``CrashLoopBackOff`` when the test
marks its image as crashing, and runs without ever becoming Ready (``ContainersNotReady``) when
the test marks it as unready: its startup probe passes at once, and its readiness probe fails at
``initialDelaySeconds`` after the start and every ``periodSeconds`` after that, each failure
recorded as the kubelet records it (a ``Warning`` ``Unhealthy`` Event, "Readiness probe failed:
...", aggregated; ``recorder.py``). ``docker_kubelet.py`` is the one that runs containers.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import time
import uuid
from typing import Callable

from tests.fakes.kube import recorder
from tests.fakes.kube import store as st
from tests.fakes.kube.store import KINDS, Object, Store

PODS, SECRETS = KINDS["pods"], KINDS["secrets"]


class MemoryKubelet:
    """Advance every pod's status a step each time the controller passes."""

    def __init__(self, store: Store, *, image_exists: Callable[[str, list[dict]], bool],
                 crashing: Callable[[str], bool], unready: Callable[[str], bool], pod_start_s: float):
        self.store = store
        self.image_exists, self.crashing, self.unready = image_exists, crashing, unready
        self.pod_start_s = pod_start_s
        self.started: dict[str, float] = {}  # pod uid -> monotonic time it was first seen
        self.next_probe: dict[tuple[str, str], float] = {}  # (pod uid, container) -> when its readiness probe is due

    def sync(self, pods: list[Object]) -> None:
        for pod in pods:
            self._kubelet(pod)
        live = {p["metadata"]["uid"] for p in pods}
        for uid in set(self.started) - live:
            del self.started[uid]
        for key in [k for k in self.next_probe if k[0] not in live]:
            del self.next_probe[key]

    def stop(self) -> None:
        pass


    def _kubelet(self, pod: Object) -> None:
        uid = pod["metadata"]["uid"]
        now = time.monotonic()
        started = self.started.setdefault(uid, now)
        age = now - started
        containers = pod["spec"]["containers"]
        status = copy.deepcopy(pod.get("status") or {})
        stamp = st.now_rfc3339()
        if not status.get("containerStatuses"):
            status.update(phase="Pending", hostIP="10.0.0.2", startTime=stamp, conditions=[
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp},
                {"type": "Initialized", "status": "True", "lastTransitionTime": stamp},
                {"type": "ContainersReady", "status": "False", "lastTransitionTime": stamp},
                {"type": "Ready", "status": "False", "lastTransitionTime": stamp}])
            status["containerStatuses"] = [
                {"name": c["name"], "image": c["image"], "imageID": "", "ready": False, "started": False,
                 "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}} for c in containers]
        elif age >= self.pod_start_s:
            for container, cs in zip(containers, status["containerStatuses"]):
                self._advance(pod, container, cs, age, stamp)
            all_ready = all(cs["ready"] for cs in status["containerStatuses"])
            if any("running" in cs["state"] or cs["restartCount"] for cs in status["containerStatuses"]):
                status["phase"] = "Running"
                status.setdefault("podIP", f"10.244.{uuid.UUID(uid).int % 250}.{uuid.UUID(uid).int % 251 + 2}")
            unready = [cs["name"] for cs in status["containerStatuses"] if not cs["ready"]]
            for cond in status["conditions"]:
                if cond["type"] in ("Ready", "ContainersReady"):
                    value = "True" if all_ready else "False"
                    if cond["status"] != value:
                        cond.update(status=value, lastTransitionTime=stamp)
                    if unready:
                        cond.update(reason="ContainersNotReady",
                                    message=f"containers with unready status: [{' '.join(unready)}]")
                    else:
                        cond.pop("reason", None)
                        cond.pop("message", None)
        if status != pod.get("status"):
            fresh = self.store.get(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])
            fresh["status"] = status
            pod = self.store.replace(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"], fresh)
        self._probe_readiness(pod, now)

    def _probe_readiness(self, pod: Object, now: float) -> None:
        """Fail the due readiness probes of running, started, unready containers, recording each failure."""
        statuses = {cs["name"]: cs for cs in (pod.get("status") or {}).get("containerStatuses") or ()}
        for container in pod["spec"]["containers"]:
            cs, probe = statuses.get(container["name"]) or {}, container.get("readinessProbe")
            if not probe or cs.get("ready") or not cs.get("started") or "running" not in cs.get("state", {}):
                continue
            key = (pod["metadata"]["uid"], container["name"])
            due = self.next_probe.setdefault(key, now + probe.get("initialDelaySeconds", 0))
            if now < due:
                continue
            self.next_probe[key] = due + probe.get("periodSeconds", 10)
            recorder.record(self.store, pod, container["name"], reason="Unhealthy",
                            message=f"Readiness probe failed: {_failure(probe, pod)}")

    def _pull_auths(self, pod: Object) -> list[dict]:
        """Return the ``auths`` of the pod's imagePullSecrets that exist and are dockerconfigjson, as a kubelet reads them."""
        found = []
        namespace = pod["metadata"]["namespace"]
        for ref in pod["spec"].get("imagePullSecrets") or ():
            if not self.store.exists(SECRETS, namespace, ref.get("name", "")):
                continue
            secret = self.store.get(SECRETS, namespace, ref["name"])
            if secret.get("type") == "kubernetes.io/dockerconfigjson":
                payload = (secret.get("data") or {}).get(".dockerconfigjson", "")
                found.append(json.loads(base64.b64decode(payload)).get("auths") or {})
        return found

    def _advance(self, pod: Object, container: Object, cs: Object, age: float, stamp: str) -> None:
        image = container["image"]
        reason = (cs["state"].get("waiting") or {}).get("reason")
        if reason in ("ContainerCreating", "ErrImagePull", "ImagePullBackOff"):
            if not self.image_exists(image, self._pull_auths(pod)):
                if reason == "ContainerCreating":
                    cs["state"] = {"waiting": {"reason": "ErrImagePull", "message": (
                        f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": '
                        f'failed to resolve reference "{image}": {image}: not found')}}
                elif age >= 2 * self.pod_start_s:
                    cs["state"] = {"waiting": {"reason": "ImagePullBackOff",
                                               "message": f'Back-off pulling image "{image}"'}}
                return
            cs["imageID"] = image if "@" in image else f"{image}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"
            cs["state"] = {"running": {"startedAt": stamp}}
            crash = self.crashing(image)
            cs.update(ready=not crash and not self.unready(image), started=True)
        elif "running" in cs["state"] and self.crashing(image) and age >= 2 * self.pod_start_s:
            cs["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error", "startedAt":
                                              cs["state"]["running"]["startedAt"], "finishedAt": stamp}}
            cs["restartCount"] += 1
            cs["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": (
                f"back-off 10s restarting failed container={container['name']} pod={pod['metadata']['name']}_"
                f"{pod['metadata']['namespace']}({pod['metadata']['uid']})")}}
            cs.update(ready=False, started=False)


def _failure(probe: Object, pod: Object) -> str:
    """Say why a probe of a container that never serves failed, in the prober's words."""
    if "httpGet" in probe:
        return "HTTP probe failed with statuscode: 503"
    if "tcpSocket" in probe:
        address = f"{(pod.get('status') or {}).get('podIP', '')}:{probe['tcpSocket'].get('port')}"
        return f"dial tcp {address}: connect: connection refused"
    return ""  # an exec probe's output: the command printed nothing
