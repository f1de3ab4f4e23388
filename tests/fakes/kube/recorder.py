"""The kubelet's event recorder: core/v1 Events about a pod's container, as client-go's recorder writes them.

An Event names the container as its ``involvedObject`` (the pod, with ``fieldPath``
``spec.containers{name}``), carries ``reason``, ``type``, ``message`` and ``source`` (component
``kubelet``, the node as host), and is aggregated as the recorder's event logger does: an event
with the same object, reason, type, source and message is not written again; the stored one gets
``count`` + 1 and a new ``lastTimestamp``. Its name is the pod's plus the first occurrence's time
in hexadecimal nanoseconds, as the recorder names it.
"""

from __future__ import annotations

import time

from tests.fakes.kube import store as st
from tests.fakes.kube.store import KINDS, Object, Store

EVENTS = KINDS["events"]
NODE = "fake-node"


def record(store: Store, pod: Object, container: str, *, reason: str, message: str, type_: str = "Warning") -> Object:
    """Record one occurrence of an event about a pod's container; return the stored Event."""
    meta = pod["metadata"]
    involved = {"kind": "Pod", "namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"],
                "apiVersion": "v1", "resourceVersion": meta.get("resourceVersion", ""),
                "fieldPath": f"spec.containers{{{container}}}"}
    source = {"component": "kubelet", "host": (pod.get("spec") or {}).get("nodeName") or NODE}
    stamp = st.now_rfc3339()
    with store.cond:
        for event in store.find(EVENTS, meta["namespace"]):
            if (_key(event["involvedObject"]), event.get("reason"), event.get("type"), event.get("source"),
                    event.get("message")) == (_key(involved), reason, type_, source, message):
                event.update(count=event.get("count", 1) + 1, lastTimestamp=stamp)
                return store.replace(EVENTS, meta["namespace"], event["metadata"]["name"], event)
        return store.create(EVENTS, meta["namespace"], {
            "metadata": {"name": f"{meta['name']}.{time.time_ns():x}"}, "involvedObject": involved,
            "reason": reason, "message": message, "source": source, "firstTimestamp": stamp,
            "lastTimestamp": stamp, "count": 1, "type": type_, "eventTime": None,
            "reportingComponent": "kubelet", "reportingInstance": source["host"]})


def _key(involved: Object) -> tuple:
    """The parts of an object reference the recorder aggregates by (not its resourceVersion)."""
    return tuple(involved.get(f) for f in ("kind", "namespace", "name", "uid", "apiVersion", "fieldPath"))
