"""The fake API server's storage: objects, one resourceVersion counter, the event log, selectors.

Behaves like etcd behind a kube-apiserver as far as a client can see: every write takes the next
resourceVersion, writes carrying a stale one fail with 409 Conflict, and the event log (the
watch cache: ``event_window`` events) lets a watch resume from any resourceVersion it still
holds; an older one is expired (the watch answers an ERROR event with code 410).
"""

from __future__ import annotations

import copy
import dataclasses
import re
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

Object = dict[str, Any]
EVENT_LOG_SIZE = 20000


@dataclasses.dataclass(frozen=True)
class Kind:
    group: str
    version: str
    resource: str
    kind: str
    namespaced: bool = True
    generation: bool = False  # does the spec carry a generation (apps/*)?

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """Return "deployments.apps", the name API errors use."""
        return f"{self.resource}.{self.group}" if self.group else self.resource


KINDS = {k.resource: k for k in (
    Kind("", "v1", "namespaces", "Namespace", namespaced=False),
    Kind("", "v1", "pods", "Pod"),
    Kind("", "v1", "services", "Service"),
    Kind("", "v1", "configmaps", "ConfigMap"),
    Kind("", "v1", "secrets", "Secret"),
    Kind("", "v1", "serviceaccounts", "ServiceAccount"),
    Kind("", "v1", "events", "Event"),
    Kind("apps", "v1", "deployments", "Deployment", generation=True),
    Kind("apps", "v1", "replicasets", "ReplicaSet", generation=True),
    Kind("coordination.k8s.io", "v1", "leases", "Lease"),
    Kind("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    Kind("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    Kind("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False),
    Kind("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False),
    Kind("storage.k8s.io", "v1", "storageclasses", "StorageClass", namespaced=False),
    Kind("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", namespaced=False),
    Kind("authorization.k8s.io", "v1", "selfsubjectrulesreviews", "SelfSubjectRulesReview", namespaced=False),
)}


class ApiError(Exception):
    """An error the API server answers with a Status object."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> Object:
        body: Object = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                        "message": self.message, "reason": self.reason, "code": self.code}
        if not self.reason:
            del body["reason"]  # an error the API server did not classify has no reason (a plain 500)
        if self.details is not None:
            body["details"] = self.details
        return body


def not_found(kind: Kind, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{kind.qualified} "{name}" not found',
                    {"name": name, "group": kind.group, "kind": kind.resource})


def conflict(kind: Kind, name: str) -> ApiError:
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {kind.qualified} "{name}": the object has '
                                     "been modified; please apply your changes to the latest version and try again",
                    {"name": name, "group": kind.group, "kind": kind.resource})


def invalid(kind: Kind, name: str, causes: list[tuple[str, str, str]]) -> ApiError:
    """Answer 422 Invalid; causes are (reason, field, message)."""
    text = ", ".join(f"{field}: {message}" for _, field, message in causes)
    return ApiError(422, "Invalid", f'{kind.kind}.{kind.group or "core"} "{name}" is invalid: {text}'.replace(
        ".core ", " "), {"name": name, "group": kind.group, "kind": kind.kind,
                        "causes": [{"reason": r, "message": m, "field": f} for r, f, m in causes]})


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass
class Event:
    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    kind: Kind
    obj: Object
    at: float = dataclasses.field(default_factory=time.monotonic)  # when it was stored (benchmarks read it)


class Store:
    """Keep objects by (resource, namespace, name) and the log of every change."""

    def __init__(self, *, event_window: int = EVENT_LOG_SIZE):
        self.event_window = event_window  # how many events a watch can resume across (the watch cache's size)
        self.cond = threading.Condition()
        self.rv = 1
        self.objects: dict[tuple[str, str, str], Object] = {}
        self.events: list[Event] = []
        self.first_event_rv = 1  # the oldest resourceVersion the log can resume from
        self.owners: dict[tuple[str, str, str], dict[tuple, tuple]] = {}  # object -> leaf path -> managers
        self.applied: dict[tuple[str, str, str], dict[str, set[tuple]]] = {}  # object -> manager -> paths
        self.closed = False

    # --- reads ---------------------------------------------------------------

    def get(self, kind: Kind, namespace: str, name: str) -> Object:
        with self.cond:
            obj = self.objects.get((kind.resource, namespace, name))
            if obj is None:
                raise not_found(kind, name)
            return copy.deepcopy(obj)

    def find(self, kind: Kind, namespace: str | None = None) -> list[Object]:
        with self.cond:
            return [copy.deepcopy(obj) for (res, ns, _), obj in sorted(self.objects.items())
                    if res == kind.resource and (namespace is None or ns == namespace)]

    def exists(self, kind: Kind, namespace: str, name: str) -> bool:
        with self.cond:
            return (kind.resource, namespace, name) in self.objects

    # --- writes --------------------------------------------------------------

    def create(self, kind: Kind, namespace: str, obj: Object) -> Object:
        with self.cond:
            meta = obj.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            name = meta.get("name")
            if not name:
                raise invalid(kind, "", [("FieldValueRequired", "metadata.name", "Required value: name or "
                                                                                   "generateName is required")])
            key = (kind.resource, namespace, name)
            if key in self.objects:
                raise ApiError(409, "AlreadyExists", f'{kind.qualified} "{name}" already exists',
                               {"name": name, "group": kind.group, "kind": kind.resource})
            if kind.namespaced and namespace and ("namespaces", "", namespace) not in self.objects:
                raise ApiError(404, "NotFound", f'namespaces "{namespace}" not found',
                               {"name": namespace, "kind": "namespaces"})
            obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
            if kind.namespaced:
                meta["namespace"] = namespace
            meta.pop("resourceVersion", None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_rfc3339()
            if kind.generation:
                meta["generation"] = 1
            return self._commit(kind, key, obj, "ADDED")

    def replace(self, kind: Kind, namespace: str, name: str, obj: Object, *, check_rv: bool = True) -> Object:
        """Store a new version; a resourceVersion in obj must match the stored one."""
        with self.cond:
            key = (kind.resource, namespace, name)
            old = self.objects.get(key)
            if old is None:
                raise not_found(kind, name)
            meta = obj.setdefault("metadata", {})
            sent = meta.get("resourceVersion")
            if check_rv and sent and sent != old["metadata"]["resourceVersion"]:
                raise conflict(kind, name)
            for field in ("uid", "creationTimestamp", "namespace", "name", "deletionTimestamp"):
                if field in old["metadata"]:
                    meta[field] = old["metadata"][field]
            obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
            if kind.generation:
                meta["generation"] = old["metadata"].get("generation", 1) + (
                    1 if obj.get("spec") != old.get("spec") else 0)
            if _without_rv(obj) == _without_rv(old):
                return copy.deepcopy(old)  # a no-op write keeps its resourceVersion, as the real server does
            return self._commit(kind, key, obj, "MODIFIED")

    def delete(self, kind: Kind, namespace: str, name: str) -> Object:
        with self.cond:
            key = (kind.resource, namespace, name)
            obj = self.objects.get(key)
            if obj is None:
                raise not_found(kind, name)
            del self.objects[key]
            self.owners.pop(key, None)
            self.applied.pop(key, None)
            self.rv += 1
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self._log(Event(self.rv, "DELETED", kind, copy.deepcopy(obj)))
            return obj

    def _commit(self, kind: Kind, key: tuple[str, str, str], obj: Object, event: str) -> Object:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.objects[key] = copy.deepcopy(obj)
        self._log(Event(self.rv, event, kind, copy.deepcopy(obj)))
        return copy.deepcopy(obj)

    def _log(self, event: Event) -> None:
        self.events.append(event)
        if len(self.events) > self.event_window:
            drop = len(self.events) - self.event_window
            self.first_event_rv = self.events[drop].rv
            del self.events[:drop]
        self.cond.notify_all()

    # --- watches -------------------------------------------------------------

    def check_since(self, since: int) -> None:
        """Raise 410 Expired when the log no longer reaches back to that resourceVersion."""
        with self.cond:
            if since and since + 1 < self.first_event_rv:
                raise ApiError(410, "Expired", f"too old resource version: {since} ({self.first_event_rv - 1})")

    def follow(self, kind: Kind, namespace: str | None, since: int, until: float,
               match: Callable[[Object], bool]) -> Iterator[Event | None]:
        """Yield the events after resourceVersion since, as they happen, until the monotonic time until.

        Yields None now and then so the caller can notice a closed connection.
        """
        position = since
        while True:
            with self.cond:
                pending = [e for e in self.events if e.rv > position and e.kind.resource == kind.resource
                           and (namespace is None or e.obj["metadata"].get("namespace", "") == namespace)]
                if not pending:
                    remaining = until - time.monotonic()
                    if remaining <= 0 or self.closed:
                        return
                    self.cond.wait(min(remaining, 0.5))
                    pending = [e for e in self.events if e.rv > position and e.kind.resource == kind.resource
                               and (namespace is None or e.obj["metadata"].get("namespace", "") == namespace)]
                if self.events:
                    position = max(position, self.events[-1].rv)
            if not pending:
                yield None
            for event in pending:
                if match(event.obj):
                    yield event

    def snapshot(self) -> tuple:
        """Return what restore() needs to undo every write after this point (dryRun); hold cond around both."""
        return (copy.deepcopy(self.objects), self.rv, list(self.events), self.first_event_rv,
                copy.deepcopy(self.owners), copy.deepcopy(self.applied))

    def restore(self, saved: tuple) -> None:
        (self.objects, self.rv, self.events, self.first_event_rv, self.owners, self.applied) = saved

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()


def _without_rv(obj: Object) -> Object:
    out = copy.deepcopy(obj)
    out["metadata"].pop("resourceVersion", None)
    out["metadata"].pop("managedFields", None)
    return out


# --- selectors ---------------------------------------------------------------

_REQUIREMENT = re.compile(r"^\s*(!?)([\w./-]+)\s*(?:(==|=|!=)\s*([\w.-]*)|\s+(in|notin)\s*\(([^)]*)\))?\s*$")


def parse_label_selector(text: str) -> Callable[[dict], bool]:
    """Parse a label selector (equality and set based); raise ApiError 400 on anything else."""
    if not text:
        return lambda labels: True
    parts = re.split(r",(?![^()]*\))", text)
    tests = []
    for part in parts:
        m = _REQUIREMENT.match(part)
        if not m:
            raise bad_request(f'unable to parse requirement: found \'{part}\', expected: identifier')
        negate, key, op, value, set_op, values = m.groups()
        if negate and (op or set_op):
            raise bad_request(f"unable to parse requirement: {part}")
        if negate:
            tests.append(lambda labels, k=key: k not in labels)
        elif op in ("=", "=="):
            tests.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif op == "!=":
            tests.append(lambda labels, k=key, v=value: labels.get(k) != v)
        elif set_op:
            choices = {v.strip() for v in values.split(",") if v.strip()}
            if set_op == "in":
                tests.append(lambda labels, k=key, c=choices: labels.get(k) in c)
            else:
                tests.append(lambda labels, k=key, c=choices: labels.get(k) not in c)
        else:
            tests.append(lambda labels, k=key: k in labels)
    return lambda labels: all(t(labels or {}) for t in tests)


FIELD_LABELS = {"metadata.name": ("metadata", "name"), "metadata.namespace": ("metadata", "namespace")}
# what the API server's registry lets a resource be selected by beyond metadata (for core/v1 Events:
# kubernetes pkg/registry/core/event/strategy.go, EventToSelectableFields); anything else is a 400
KIND_FIELD_LABELS = {
    "events": {**{f"involvedObject.{f}": ("involvedObject", f) for f in (
        "kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")},
        "reason": ("reason",), "source": ("source", "component"), "type": ("type",)},
}


def parse_field_selector(text: str, resource: str = "") -> Callable[[Object], bool]:
    """Parse a field selector over metadata.name / metadata.namespace and the resource's own selectable fields."""
    if not text:
        return lambda obj: True
    labels = {**FIELD_LABELS, **KIND_FIELD_LABELS.get(resource, {})}
    tests = []
    for part in text.split(","):
        m = re.match(r"^([\w.]+)(==|=|!=)(.*)$", part.strip())
        if not m:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        field, op, value = m.groups()
        if field not in labels:
            raise bad_request(f'field label not supported: {field}')
        path = labels[field]
        if op == "!=":
            tests.append(lambda obj, p=path, v=value: _field(obj, p) != v)
        else:
            tests.append(lambda obj, p=path, v=value: _field(obj, p) == v)
    return lambda obj: all(t(obj) for t in tests)


def _field(obj: Object, path: tuple[str, ...]) -> str:
    for key in path:
        obj = (obj or {}).get(key) if isinstance(obj, dict) else None
    return "" if obj is None else str(obj)


def exact_name(field_selector: str) -> str:
    """Return X when the field selector is exactly metadata.name=X (RBAC then authorizes that name)."""
    m = re.fullmatch(r"metadata\.name==?([\w.-]+)", field_selector or "")
    return m.group(1) if m else ""
