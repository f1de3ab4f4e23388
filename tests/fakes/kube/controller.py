"""The fake cluster's controllers: what kube-controller-manager would do, and a kubelet's turn.

- Deployment controller: a new pod template makes a new ReplicaSet (``pod-template-hash``
  label, ``deployment.kubernetes.io/revision`` annotation; going back to an old template reuses
  its ReplicaSet under a new revision), rolling update within maxSurge / maxUnavailable,
  status counts, ``Available`` and ``Progressing`` conditions, ``ProgressDeadlineExceeded``.
- ReplicaSet controller: pods up or down to ``spec.replicas``; a pod that Pod Security admission
  refuses is not created, and the ReplicaSet (then the Deployment) shows ``ReplicaFailure``
  ``FailedCreate`` with the API server's message.
- the kubelet is handed in: ``memory_kubelet.py`` (nothing runs) or ``docker_kubelet.py``.
- Garbage collector: objects whose controller owner is gone are deleted.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import threading
import time
import uuid

from tests.fakes.kube import admission
from tests.fakes.kube import store as st
from tests.fakes.kube.store import KINDS, Object, Store

REVISION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"
NOT_COPIED = {REVISION, "deployment.kubernetes.io/revision-history", "deployment.kubernetes.io/desired-replicas",
              "deployment.kubernetes.io/max-replicas", "kubectl.kubernetes.io/last-applied-configuration"}
DEPLOYMENTS, REPLICA_SETS, PODS = KINDS["deployments"], KINDS["replicasets"], KINDS["pods"]


class Controller:
    """Reconcile Deployments, ReplicaSets and pods in a background thread."""

    def __init__(self, store: Store, *, kubelet):
        self.store = store
        self.kubelet = kubelet  # a MemoryKubelet or a DockerKubelet: what makes pods run
        self.progress: dict[str, tuple] = {}  # deployment uid -> (last progress signature, time)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="fake-kube-controller", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        with self.store.cond:
            self.store.cond.notify_all()
        self.thread.join(5)
        self.kubelet.stop()

    def _run(self) -> None:
        seen = -1
        while not self.stopped.is_set():
            with self.store.cond:
                if self.store.rv == seen:
                    self.store.cond.wait(0.05)
            try:
                self.reconcile()
            except st.ApiError:
                continue  # lost a race with an API write: the next pass sees the new state
            with self.store.cond:
                seen = self.store.rv

    def reconcile(self) -> None:
        """Run one pass of every controller."""
        synced = {}  # uid -> the generation this pass acted on: only that one may be reported observed
        for deployment in self.store.find(DEPLOYMENTS):
            self._deployment(deployment)
            synced[deployment["metadata"]["uid"]] = deployment["metadata"].get("generation", 1)
        for rs in self.store.find(REPLICA_SETS):
            self._replica_set(rs)
        self.kubelet.sync(self.store.find(PODS))
        self._collect_garbage()
        for deployment in self.store.find(DEPLOYMENTS):
            if synced.get(deployment["metadata"]["uid"]) == deployment["metadata"].get("generation", 1):
                self._deployment_status(deployment)

    # --- Deployment controller -------------------------------------------------

    def _owned(self, owner: Object, kind, namespace: str) -> list[Object]:
        uid = owner["metadata"]["uid"]
        return [o for o in self.store.find(kind, namespace)
                if any(r.get("uid") == uid and r.get("controller") for r in o["metadata"].get("ownerReferences") or ())]

    def _deployment(self, d: Object) -> None:
        meta, spec = d["metadata"], d["spec"]
        ns = meta["namespace"]
        if spec.get("paused"):
            return
        template = copy.deepcopy(spec["template"])
        template_hash = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
        sets = self._owned(d, REPLICA_SETS, ns)
        newest = max((_revision(rs) for rs in sets), default=0)
        new = next((rs for rs in sets if rs["metadata"].get("labels", {}).get(HASH_LABEL) == template_hash), None)
        annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in NOT_COPIED}
        if new is None:
            labels = {**(template.get("metadata", {}).get("labels") or {}), HASH_LABEL: template_hash}
            template.setdefault("metadata", {})["labels"] = labels
            new = self.store.create(REPLICA_SETS, ns, {
                "metadata": {"name": f"{meta['name']}-{template_hash}", "labels": labels,
                             "annotations": {**annotations, REVISION: str(newest + 1),
                                             "deployment.kubernetes.io/desired-replicas": str(spec["replicas"])},
                             "ownerReferences": [_owner_ref(d)]},
                "spec": {"replicas": 0, "selector": {"matchLabels": {**spec["selector"]["matchLabels"],
                                                                     HASH_LABEL: template_hash}},
                         "template": template}})
            self._mark_progress(d, ("created", new["metadata"]["name"]))
        elif _revision(new) < newest or new["metadata"].get("annotations", {}).get(REVISION) is None:
            new = self._write_rs(new, annotations={**new["metadata"].get("annotations", {}), **annotations,
                                                   REVISION: str(newest + 1)})
            self._mark_progress(d, ("reused", new["metadata"]["name"], _revision(new)))
        elif any(new["metadata"].get("annotations", {}).get(k) != v for k, v in annotations.items()):
            new = self._write_rs(new, annotations={**new["metadata"].get("annotations", {}), **annotations})
        if (meta.get("annotations") or {}).get(REVISION) != str(_revision(new)):
            d = self.store.get(DEPLOYMENTS, ns, meta["name"])
            d["metadata"].setdefault("annotations", {})[REVISION] = str(_revision(new))
            self.store.replace(DEPLOYMENTS, ns, meta["name"], d)
        self._scale(d, new, [rs for rs in sets if rs["metadata"]["uid"] != new["metadata"]["uid"]])
        self._prune_history(d, new, sets)

    def _scale(self, d: Object, new: Object, old: list[Object]) -> None:
        spec = d["spec"]
        desired = spec["replicas"]
        strategy = spec.get("strategy", {})
        if strategy.get("type") == "Recreate":
            for rs in old:
                if rs["spec"]["replicas"]:
                    self._write_rs(rs, replicas=0)
            if not any(self._pods(rs) for rs in old) and new["spec"]["replicas"] != desired:
                self._write_rs(new, replicas=desired)
            return
        rolling = strategy.get("rollingUpdate", {})
        surge = _resolve(rolling.get("maxSurge", "25%"), desired, up=True)
        unavailable = _resolve(rolling.get("maxUnavailable", "25%"), desired, up=False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        everything = [new] + old
        total = sum(rs["spec"]["replicas"] for rs in everything)
        if new["spec"]["replicas"] > desired:
            new = self._write_rs(new, replicas=desired)
        elif new["spec"]["replicas"] < desired:
            room = desired + surge - total
            if room > 0:
                new = self._write_rs(new, replicas=min(desired, new["spec"]["replicas"] + room))
        # scale old ReplicaSets down: unhealthy pods first, then as many available ones as the budget allows
        min_available = desired - unavailable
        new_unavailable = new["spec"]["replicas"] - self._available(new)
        total = new["spec"]["replicas"] + sum(rs["spec"]["replicas"] for rs in old)
        cleanup = total - min_available - new_unavailable
        for rs in sorted(old, key=_revision):
            unhealthy = rs["spec"]["replicas"] - self._available(rs)
            take = min(max(unhealthy, 0), max(cleanup, 0))
            if take:
                self._write_rs(rs, replicas=rs["spec"]["replicas"] - take)
                cleanup -= take
                rs["spec"]["replicas"] -= take
        budget = sum(self._available(rs) for rs in [new] + old) - min_available
        for rs in sorted(old, key=_revision):
            if budget <= 0:
                break
            take = min(rs["spec"]["replicas"], budget)
            if take:
                self._write_rs(rs, replicas=rs["spec"]["replicas"] - take)
                budget -= take

    def _prune_history(self, d: Object, new: Object, sets: list[Object]) -> None:
        limit = d["spec"].get("revisionHistoryLimit", 10)
        idle = sorted((rs for rs in sets if rs["metadata"]["uid"] != new["metadata"]["uid"]
                       and rs["spec"]["replicas"] == 0 and not self._pods(rs)), key=_revision)
        for rs in idle[:max(len(idle) - limit, 0)]:
            self.store.delete(REPLICA_SETS, rs["metadata"]["namespace"], rs["metadata"]["name"])

    def _write_rs(self, rs: Object, *, replicas: int | None = None, annotations: dict | None = None) -> Object:
        fresh = self.store.get(REPLICA_SETS, rs["metadata"]["namespace"], rs["metadata"]["name"])
        if replicas is not None:
            fresh["spec"]["replicas"] = replicas
        if annotations is not None:
            fresh["metadata"]["annotations"] = annotations
        return self.store.replace(REPLICA_SETS, rs["metadata"]["namespace"], rs["metadata"]["name"], fresh)

    def _mark_progress(self, d: Object, signature: tuple) -> None:
        self.progress[d["metadata"]["uid"]] = (signature, time.time(), st.now_rfc3339())

    def _deployment_status(self, d: Object) -> None:
        meta, spec = d["metadata"], d["spec"]
        ns, uid = meta["namespace"], meta["uid"]
        sets = self._owned(d, REPLICA_SETS, ns)
        revision = (meta.get("annotations") or {}).get(REVISION)
        new = next((rs for rs in sets if (rs["metadata"].get("annotations") or {}).get(REVISION) == revision), None)
        pods = [p for rs in sets for p in self._pods(rs)]
        new_pods = self._pods(new) if new else []
        ready = sum(1 for p in pods if _ready(p))
        desired = spec["replicas"]
        rolling = spec.get("strategy", {}).get("rollingUpdate", {})
        min_available = desired - _resolve(rolling.get("maxUnavailable", 0), desired, up=False)
        status = {"observedGeneration": meta.get("generation", 1), "replicas": len(pods),
                  "updatedReplicas": len(new_pods), "readyReplicas": ready, "availableReplicas": ready,
                  "unavailableReplicas": max(len(pods) - ready, desired - ready, 0)}
        status = {k: v for k, v in status.items() if v or k == "observedGeneration"}
        signature = (revision, len(new_pods), sum(1 for p in new_pods if _ready(p)), len(pods))
        previous = self.progress.get(uid)
        if previous is None or previous[0] != signature:
            self._mark_progress(d, signature)
        _, since, since_text = self.progress[uid]
        name = new["metadata"]["name"] if new else meta["name"]
        complete = new is not None and len(new_pods) == desired == sum(1 for p in new_pods if _ready(p)) \
            and len(pods) == desired and new["spec"]["replicas"] == desired
        old_conditions = {c["type"]: c for c in (d.get("status") or {}).get("conditions") or ()}
        timed_out = old_conditions.get("Progressing", {}).get("reason") == "ProgressDeadlineExceeded" \
            and previous is not None and previous[0] == signature
        if complete:
            progressing = ("True", "NewReplicaSetAvailable", f'ReplicaSet "{name}" has successfully progressed.')
        elif timed_out or time.time() - since > spec.get("progressDeadlineSeconds", 600):
            progressing = ("False", "ProgressDeadlineExceeded", f'ReplicaSet "{name}" has timed out progressing.')
        else:
            progressing = ("True", "ReplicaSetUpdated", f'ReplicaSet "{name}" is progressing.')
        available = ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.") \
            if ready >= min_available else \
            ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
        status["conditions"] = [
            _condition("Available", available, old_conditions.get("Available"), since_text),
            _condition("Progressing", progressing, old_conditions.get("Progressing"), since_text),
        ]
        failure = next((c for rs in ([new] if new else []) for c in (rs.get("status") or {}).get("conditions") or ()
                        if c["type"] == "ReplicaFailure"), None)
        if failure:  # the controller copies the new ReplicaSet's failure to create pods
            status["conditions"].append(_condition("ReplicaFailure", (failure["status"], failure["reason"],
                                                                      failure["message"]),
                                                   old_conditions.get("ReplicaFailure"), since_text))
        if d.get("status") != status:
            fresh = self.store.get(DEPLOYMENTS, ns, meta["name"])
            if fresh["metadata"].get("generation") != meta.get("generation"):
                return  # the spec moved on: the next pass judges the new one
            fresh["status"] = status
            self.store.replace(DEPLOYMENTS, ns, meta["name"], fresh)

    # --- ReplicaSet controller ---------------------------------------------------

    def _pods(self, rs: Object | None) -> list[Object]:
        return self._owned(rs, PODS, rs["metadata"]["namespace"]) if rs else []

    def _available(self, rs: Object) -> int:
        return sum(1 for p in self._pods(rs) if _ready(p))

    def _replica_set(self, rs: Object) -> None:
        meta, spec = rs["metadata"], rs["spec"]
        ns = meta["namespace"]
        pods = self._pods(rs)
        wanted = spec["replicas"]
        refused = None
        for _ in range(wanted - len(pods)):
            template = copy.deepcopy(spec["template"])
            pod_meta = template.get("metadata", {})
            pod = {"metadata": {"name": f"{meta['name']}-{uuid.uuid4().hex[:5]}", "labels": pod_meta.get("labels", {}),
                                "annotations": pod_meta.get("annotations", {}), "ownerReferences": [_owner_ref(rs)]},
                   "spec": template["spec"], "status": {"phase": "Pending", "qosClass": "Burstable"}}
            try:
                admission.pod_security(self.store, ns, pod)  # the controller creates pods through the API
            except st.ApiError as e:
                refused = e.message
                break
            self.store.create(PODS, ns, pod)
        if len(pods) > wanted:
            doomed = sorted(pods, key=lambda p: (_ready(p), p["metadata"]["creationTimestamp"]))[:len(pods) - wanted]
            for pod in doomed:
                self.store.delete(PODS, ns, pod["metadata"]["name"])
        pods = self._pods(rs)
        ready = sum(1 for p in pods if _ready(p))
        status = {"replicas": len(pods), "fullyLabeledReplicas": len(pods), "readyReplicas": ready,
                  "availableReplicas": ready, "observedGeneration": meta.get("generation", 1)}
        status = {k: v for k, v in status.items() if v or k in ("replicas", "observedGeneration")}
        failure = next((c for c in (rs.get("status") or {}).get("conditions") or () if c["type"] == "ReplicaFailure"),
                       None)
        if refused:
            status["conditions"] = [failure or {
                "type": "ReplicaFailure", "status": "True", "lastTransitionTime": st.now_rfc3339(),
                "reason": "FailedCreate", "message": refused}]
        elif failure and len(pods) < wanted:
            status["conditions"] = [failure]
        if rs.get("status") != status:
            fresh = self.store.get(REPLICA_SETS, ns, meta["name"])
            fresh["status"] = status
            self.store.replace(REPLICA_SETS, ns, meta["name"], fresh)

    # --- garbage collector -----------------------------------------------------------

    def _collect_garbage(self) -> None:
        with self.store.cond:
            uids = {obj["metadata"]["uid"] for obj in self.store.objects.values()}
            orphans = [(key, obj) for key, obj in self.store.objects.items()
                       if any(r.get("controller") and r.get("uid") not in uids
                              for r in obj["metadata"].get("ownerReferences") or ())]
            for (resource, ns, name), obj in orphans:
                self.store.delete(KINDS[resource], ns, name)


def _owner_ref(owner: Object) -> dict:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def _revision(rs: Object) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def _ready(pod: Object) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or ())


def _resolve(value, desired: int, *, up: bool) -> int:
    """Turn maxSurge / maxUnavailable (a count or a percentage) into a count, rounding as the controller does."""
    if isinstance(value, str) and value.endswith("%"):
        exact = desired * int(value[:-1]) / 100
        return math.ceil(exact) if up else math.floor(exact)
    return int(value)


def _condition(kind: str, value: tuple, old: dict | None, since: str) -> dict:
    status, reason, message = value
    changed = old is None or old.get("status") != status
    return {"type": kind, "status": status, "reason": reason, "message": message,
            "lastUpdateTime": since if kind == "Progressing" else (old or {}).get("lastUpdateTime", since),
            "lastTransitionTime": st.now_rfc3339() if changed else old.get("lastTransitionTime")}
