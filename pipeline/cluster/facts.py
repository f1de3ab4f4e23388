"""Read the answers of the commands the cluster steps run: pure functions, text in, values out.

Each function takes a command's output exactly as printed and returns a small value;
the tests feed them recorded outputs. Nothing here runs a command.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Iterable

from pipeline.errors import ClusterCheckFailed


@dataclasses.dataclass(frozen=True)
class JoinTicket:
    api_server_endpoint: str
    token: str = dataclasses.field(repr=False)  # a bootstrap token is a credential: never shown
    ca_cert_hash: str = ""

    @property
    def token_id(self) -> str:
        """Return the public half of the token, which 'kubeadm token delete' takes."""
        return self.token.split(".", 1)[0]


@dataclasses.dataclass(frozen=True)
class Pod:
    name: str
    node: str
    ip: str


def installed_boxes(output: str) -> set[tuple[str, str]]:
    """Read ``vagrant box list --machine-readable`` into {(name, version)}."""
    boxes: set[tuple[str, str]] = set()
    name = ""
    for fields in _machine_readable(output):
        if fields[2] == "box-name":
            name = fields[3]
        elif fields[2] == "box-version" and name:
            boxes.add((name, fields[3]))
    return boxes


def machine_states(output: str) -> dict[str, str]:
    """Read ``vagrant status --machine-readable`` into {machine: state} (running, poweroff, not_created, …)."""
    return {fields[1]: fields[3] for fields in _machine_readable(output) if fields[2] == "state" and fields[1]}


def _machine_readable(output: str) -> Iterable[list[str]]:
    # timestamp,target,type,data... ; data may hold escaped commas, which these readers never need
    for line in output.splitlines():
        fields = line.strip().split(",", 3)
        if len(fields) == 4:
            yield fields


def join_ticket(output: str) -> JoinTicket:
    """Read ``kubeadm token create --print-join-command`` into a JoinTicket."""
    text = output.replace("\\\n", " ")
    found = re.search(r"kubeadm join\s+(\S+)\s+--token\s+([a-z0-9]{6}\.[a-z0-9]{16})\s+"
                      r"--discovery-token-ca-cert-hash\s+(sha256:[0-9a-f]{64})", text)
    if not found:
        # the output may hold a token: it is not quoted back
        raise ClusterCheckFailed("kubeadm token create printed no join command",
                                 hint="run 'kubeadm token create --print-join-command' on the control plane to see why")
    return JoinTicket(found.group(1), found.group(2), found.group(3))


def token_rejected(output: str) -> bool:
    """Tell whether kubeadm join failed because its bootstrap token expired or is unknown."""
    return bool(re.search(r"could not find a JWS signature in the cluster-info ConfigMap"
                          r"|invalid for this cluster or it has expired", output))


def node_names(output: str) -> set[str]:
    """Read ``kubectl get nodes -o name`` into {node name}."""
    return {line.strip().removeprefix("node/") for line in output.splitlines() if line.strip()}


def state_word(output: str, allowed: Iterable[str]) -> str:
    """Read the one word a state probe prints as its last line, or raise ClusterCheckFailed."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    word = lines[-1] if lines else ""
    allowed = tuple(allowed)
    if word not in allowed:
        raise ClusterCheckFailed(f"a node state probe printed {word!r}, expected one of {', '.join(allowed)}")
    return word


def smoke_pods(pods_json: str, workers: Iterable[str]) -> tuple[Pod, Pod]:
    """Pick two Running, ready smoke pods on two different workers, or raise ClusterCheckFailed."""
    workers = set(workers)
    ready: dict[str, Pod] = {}
    seen = []
    for item in json.loads(pods_json).get("items", []):
        status = item.get("status", {})
        node = item.get("spec", {}).get("nodeName", "")
        name = item["metadata"]["name"]
        seen.append(f"{name} {status.get('phase', '?')} on {node or 'no node'}")
        conditions = {c.get("type"): c.get("status") for c in status.get("conditions", [])}
        if status.get("phase") == "Running" and conditions.get("Ready") == "True" and node in workers \
                and status.get("podIP"):
            ready.setdefault(node, Pod(name, node, status["podIP"]))
    if len(ready) < min(2, len(workers)):
        raise ClusterCheckFailed(f"smoke pods are not Running and ready on {min(2, len(workers))} workers: "
                                 f"{'; '.join(seen) or 'no pods'}",
                                 hint="kubectl -n pinotage-smoke describe pods (on the control plane)")
    pods = sorted(ready.values(), key=lambda p: p.node)
    return pods[0], pods[-1]


# Kinds a backup leaves out: made again by the cluster (events, endpoints, leases, tokens),
# owned by another object, or holding secrets (never written to a file).
BACKUP_SKIPPED_TYPES = frozenset({
    "events", "events.events.k8s.io", "endpoints", "endpointslices.discovery.k8s.io", "pods",
    "replicasets.apps", "controllerrevisions.apps", "leases.coordination.k8s.io", "secrets",
    "localsubjectaccessreviews.authorization.k8s.io", "bindings", "pods.metrics.k8s.io",
})
_BACKUP_DROPPED_METADATA = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields",
                            "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds")
_BACKUP_DROPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",
                               "deployment.kubernetes.io/revision")


def backup_types(api_resources: str) -> list[str]:
    """Read ``kubectl api-resources --verbs=list --namespaced -o name`` into the types a backup exports."""
    names = [line.strip() for line in api_resources.splitlines() if line.strip()]
    return [name for name in names if name not in BACKUP_SKIPPED_TYPES]


def exportable(list_json: str) -> list[dict[str, Any]]:
    """Turn ``kubectl get … -o json`` into objects that apply cleanly to a new cluster (what --export did)."""
    out = []
    for item in json.loads(list_json).get("items", []):
        metadata = item.get("metadata", {})
        if item.get("kind") == "Secret" or metadata.get("ownerReferences"):
            continue
        if (item.get("kind"), metadata.get("name")) in (("ServiceAccount", "default"),
                                                       ("ConfigMap", "kube-root-ca.crt")):
            continue  # every namespace gets these by itself
        item = json.loads(json.dumps(item))  # a deep copy, so the caller's value stays whole
        item.pop("status", None)
        metadata = item["metadata"]
        for key in _BACKUP_DROPPED_METADATA:
            metadata.pop(key, None)
        annotations = metadata.get("annotations", {})
        for key in _BACKUP_DROPPED_ANNOTATIONS:
            annotations.pop(key, None)
        if not annotations:
            metadata.pop("annotations", None)
        spec = item.get("spec", {})
        if item.get("kind") == "Service":
            for key in ("clusterIP", "clusterIPs"):  # a new cluster assigns its own
                spec.pop(key, None)
        if item.get("kind") == "PersistentVolumeClaim":
            spec.pop("volumeName", None)
        out.append(item)
    return out
