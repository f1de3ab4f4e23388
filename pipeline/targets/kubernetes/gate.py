"""The rollout gate: watch a Deployment, its ReplicaSets, pods and pod Events, and judge each change.

Four watch streams feed one queue (of the Events, only the kubelet's ``Unhealthy`` ones about
pods: they tell a readiness probe that keeps failing); every batch of changes updates what is
known and is judged by the pure ``pipeline.rollout.verdict`` until the rollout is done, has
failed, or the deadline passes. The API is never polled: the queue's timeout only re-judges
time-based rules.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from datetime import datetime, timezone
from pipeline import rollout
from pipeline.errors import ClusterError
from pipeline.targets import Progress
from pipeline.targets.kubernetes.api import KubeApi, cluster_error, path

WATCH_TIMEOUT_S = 290  # below API servers' request timeouts; the watch resumes from its resourceVersion
KINDS = ("deployments", "replicasets", "pods", "events")
UNHEALTHY_EVENTS = "involvedObject.kind=Pod,reason=Unhealthy"  # field selectors the API server supports on Events


def selector(deployment: dict) -> str:
    """Return the Deployment's label selector as a query string (``app=x,tier=y``)."""
    labels = deployment["spec"]["selector"]["matchLabels"]
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def gate(api: KubeApi, namespace: str, applied: dict, *, rollout_s: float, unschedulable_grace_s: float,
         progress: Progress) -> rollout.Verdict:
    """Watch the rollout of ``applied`` and judge every change until it is done, failed, or past rollout_s."""
    events: queue.Queue = queue.Queue()
    labels = selector(applied)
    streams = [
        _Watch(api, path("apps/v1", "deployments", namespace), events, "deployments",
               {"fieldSelector": f"metadata.name={applied['metadata']['name']}"}),
        _Watch(api, path("apps/v1", "replicasets", namespace), events, "replicasets", {"labelSelector": labels}),
        _Watch(api, path("v1", "pods", namespace), events, "pods", {"labelSelector": labels}),
        _Watch(api, path("v1", "events", namespace), events, "events", {"fieldSelector": UNHEALTHY_EVENTS}),
    ]
    seen: dict[str, dict[str, dict]] = {kind: {} for kind in KINDS}
    synced: set[str] = set()
    generation = applied["metadata"].get("generation", 0)
    deadline = time.monotonic() + rollout_s
    said = ""
    for stream in streams:
        stream.start()
    try:
        while True:
            _take(_next_batch(events, deadline), seen, synced)
            deployment = next(iter(seen["deployments"].values()), None)
            if len(synced) == len(KINDS) and deployment is not None:
                if deployment["metadata"].get("generation", 0) < generation:
                    verdict: rollout.Verdict = rollout.Waiting("Waiting for the applied spec to be stored...")
                else:
                    verdict = rollout.verdict(deployment, seen["replicasets"].values(), seen["pods"].values(),
                                              seen["events"].values(), now=datetime.now(timezone.utc),
                                              unschedulable_grace_s=unschedulable_grace_s)
                if verdict.message != said:
                    progress(verdict.message)
                    said = verdict.message
                if not isinstance(verdict, rollout.Waiting):
                    return verdict
            if time.monotonic() >= deadline:
                return rollout.Failed("DeadlineExceeded", f"the rollout did not finish within "
                                                          f"{rollout_s:g} s (deadlines.rollout_s)")
    finally:
        for stream in streams:
            stream.stop()


def _next_batch(events: queue.Queue, deadline: float) -> list[tuple]:
    """Wait up to a second (or the deadline) for one event, then take every event already queued."""
    batch = []
    try:
        batch.append(events.get(timeout=max(0.0, min(1.0, deadline - time.monotonic()))))
        while True:
            batch.append(events.get_nowait())
    except queue.Empty:
        pass
    return batch


def _take(batch: list[tuple], seen: dict[str, dict[str, dict]], synced: set[str]) -> None:
    """Fold a batch of (kind, event, payload) into what is known; a stream's error is raised."""
    for kind, event, payload in batch:
        if event == "ERROR":
            raise payload
        if event == "SYNC":
            seen[kind] = {o["metadata"]["uid"]: o for o in payload}
            synced.add(kind)
        elif event == "DELETED":
            seen[kind].pop(payload["metadata"]["uid"], None)
        else:
            seen[kind][payload["metadata"]["uid"]] = payload


class _Watch(threading.Thread):
    """List, then watch from the list's resourceVersion; put (kind, SYNC|ADDED|MODIFIED|DELETED, obj) events."""

    def __init__(self, api: KubeApi, resources: str, events: queue.Queue, kind: str, selectors: dict[str, str]):
        super().__init__(name=f"pinotage-watch-{kind}", daemon=True)
        self.api, self.resources, self.events, self.kind = api, resources, events, kind
        self.selectors = selectors
        self.stopping = threading.Event()
        self.response = None

    def run(self) -> None:
        from kubernetes.client import ApiException

        try:
            self._stream()
        except ApiException as e:
            if not self.stopping.is_set():
                self.events.put((self.kind, "ERROR", cluster_error("watch", self.kind, e)))
        except ClusterError as e:
            self.events.put((self.kind, "ERROR", e))
        except Exception as e:  # the connection was shut down by stop(), or broke
            if not self.stopping.is_set():
                self.events.put((self.kind, "ERROR", ClusterError(f"watching {self.kind}: {e}")))

    def _stream(self) -> None:
        from kubernetes.watch.watch import iter_resp_lines

        version = ""
        while not self.stopping.is_set():
            if not version:
                listed = self.api.list(self.resources, self.selectors)
                self.events.put((self.kind, "SYNC", listed["items"]))
                version = listed["metadata"]["resourceVersion"]
            self.response = self.api.watch(self.resources, {**self.selectors, "resourceVersion": version,
                                                            "allowWatchBookmarks": True,
                                                            "timeoutSeconds": WATCH_TIMEOUT_S})
            if self.stopping.is_set():
                self._hang_up()  # stop() came while the watch was being opened: close it, never leave it open
                break
            for line in iter_resp_lines(self.response):
                if not line:
                    continue
                event = json.loads(line)
                obj = event["object"]
                if event["type"] == "ERROR":
                    if obj.get("code") == 410:
                        version = ""  # expired: list again
                        break
                    raise ClusterError(f"watching {self.kind}: {obj.get('message')}")
                version = obj["metadata"].get("resourceVersion", version)
                if event["type"] != "BOOKMARK":
                    self.events.put((self.kind, event["type"], obj))

    def stop(self) -> None:
        self.stopping.set()
        self._hang_up()
        self.join(5)

    def _hang_up(self) -> None:
        if self.response is not None:
            try:
                self.response.shutdown()
                self.response.release_conn()
            except Exception:  # already closed
                pass
