"""The fake kube-apiserver's HTTP side: paths, verbs, auth, RBAC, patches, watch streams.

It answers the REST paths the official clients use, with the API server's Status objects for
errors, and refuses what it does not serve (404 for unknown paths, 405 for unknown verbs, 415
for unknown patch types, 400 for unknown options) instead of pretending.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import secrets
import select
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from tests.fakes.kube import store as st
from tests.fakes.kube.store import KINDS, ApiError, Kind, Object, Store

ADMIN = "kubernetes-admin"
WATCH_TIMEOUT_S = 1800
VERSION = {"major": "1", "minor": "31", "gitVersion": "v1.31.0-fake", "gitCommit": "0" * 40,
           "gitTreeState": "clean", "buildDate": "2024-08-13T07:28:49Z", "goVersion": "go1.22.5",
           "compiler": "gc", "platform": "linux/amd64"}
KNOWN_QUERY = {"pretty", "fieldManager", "force", "fieldValidation", "watch", "resourceVersion",
               "resourceVersionMatch", "timeoutSeconds", "labelSelector", "fieldSelector", "limit", "continue",
               "allowWatchBookmarks", "propagationPolicy", "gracePeriodSeconds", "orphanDependents"}


@dataclasses.dataclass(frozen=True)
class Request:
    """One API request as RBAC sees it."""

    user: str
    verb: str
    group: str
    resource: str  # "deployments", or "serviceaccounts/token" for a subresource
    namespace: str
    name: str
    code: int


class ApiServer:
    """Serve a Store over HTTP on loopback; record every request."""

    def __init__(self, store: Store, *, token: str | None = None, host: str = "127.0.0.1", port: int = 0):
        self.store = store
        self.tokens: dict[str, str] = {token: ADMIN} if token else {}
        self.open_access = token is None  # no token configured: every caller is the admin
        self.requests: list[Request] = []
        self.hooks: list[tuple[str, str, Any]] = []  # (verb, resource, callable) run once before a request
        self.lock = threading.Lock()
        self.operations: dict[tuple, dict[str, str]] = {}  # object -> manager -> Apply | Update
        handler = type("Handler", (_Handler,), {"api": self})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="fake-kube-http", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.store.close()
        self.httpd.shutdown()
        self.httpd.server_close()

    def before(self, verb: str, resource: str, action) -> None:
        """Run action() once, just before the next request with this verb on this resource."""
        with self.lock:
            self.hooks.append((verb, resource, action))

    def _take_hook(self, verb: str, resource: str):
        with self.lock:
            for i, (v, r, action) in enumerate(self.hooks):
                if v == verb and r == resource:
                    del self.hooks[i]
                    return action
        return None

    # --- authorization --------------------------------------------------------

    def allowed(self, user: str, verb: str, group: str, resource: str, namespace: str, name: str) -> bool:
        """Decide as RBAC does for a namespaced ServiceAccount; the admin may do anything."""
        if user == ADMIN:
            return True
        if not namespace:
            return False  # no ClusterRoles here: nothing cluster-scoped is granted
        prefix = f"system:serviceaccount:"
        sa_namespace, _, sa_name = user[len(prefix):].partition(":")
        roles = {r["metadata"]["name"]: r for r in self.store.find(KINDS["roles"], namespace)}
        for binding in self.store.find(KINDS["rolebindings"], namespace):
            if not any(s.get("kind") == "ServiceAccount" and s.get("name") == sa_name
                       and s.get("namespace", namespace) == sa_namespace for s in binding.get("subjects") or ()):
                continue
            ref = binding.get("roleRef", {})
            role = roles.get(ref.get("name")) if ref.get("kind") == "Role" else None
            for rule in (role or {}).get("rules") or ():
                if (_matches(rule.get("apiGroups"), group) and _matches(rule.get("resources"), resource)
                        and _matches(rule.get("verbs"), verb)
                        and (not rule.get("resourceNames") or name in rule["resourceNames"])):
                    return True
        return False

    def mint_token(self, namespace: str, name: str) -> str:
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = f"system:serviceaccount:{namespace}:{name}"
        return token


def _matches(allowed, value: str) -> bool:
    return bool(allowed) and ("*" in allowed or value in allowed)


class _Handler(BaseHTTPRequestHandler):
    api: ApiServer
    protocol_version = "HTTP/1.1"
    server_version = "fake-kube-apiserver"

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's name
        pass  # quiet: tests read the recorded requests instead

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def do_PUT(self):
        self._serve("PUT")

    def do_PATCH(self):
        self._serve("PATCH")

    def do_DELETE(self):
        self._serve("DELETE")

    # --- plumbing -------------------------------------------------------------

    def _send(self, code: int, body: Object) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        raw = self.raw_body
        kind = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        if not raw:
            raise st.bad_request("the request body is empty")
        try:
            if kind in ("application/json", "application/merge-patch+json", "application/strategic-merge-patch+json"):
                return kind, json.loads(raw)
            if kind in ("application/yaml", "application/apply-patch+yaml"):
                return kind, yaml.safe_load(raw)
        except ValueError as e:
            raise st.bad_request(f"error decoding body: {e}") from e
        raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - "
                                                    f"accepted media types include: application/json, "
                                                    f"application/yaml")

    def _user(self) -> str:
        header = self.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            user = self.api.tokens.get(header[len("Bearer "):])
            if user:
                return user
        if self.api.open_access and not header:
            return ADMIN
        raise ApiError(401, "Unauthorized", "Unauthorized")

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        record = None
        # read the body before anything can refuse the request, or it stays in the connection
        # and garbles the client's next request on it
        length = int(self.headers.get("Content-Length") or 0)
        self.raw_body = self.rfile.read(length) if length else b""
        try:
            user = self._user()
            if url.path.rstrip("/") in ("/version", "/healthz", "/livez", "/readyz"):
                return self._send(200, VERSION
                                  if url.path.rstrip("/") == "/version" else {"status": "ok"})
            kind, namespace, name, sub = _route(url.path)
            unknown = set(query) - KNOWN_QUERY
            if unknown:
                raise st.bad_request(f"unknown query parameters: {', '.join(sorted(unknown))}")
            if "dryRun" in query:
                raise st.bad_request("the fake API server does not support dryRun")
            verb = _verb(method, name, query)
            if not name and verb in ("list", "watch"):
                name = st.exact_name(query.get("fieldSelector", ""))
            resource = f"{kind.resource}/{sub}" if sub else kind.resource
            record = [user, verb, kind.group, resource, namespace, name]
            if not self.api.allowed(user, verb, kind.group, resource, namespace, name):
                scope = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
                target = f'{kind.qualified} "{name}"' if name else kind.qualified
                raise ApiError(403, "Forbidden", f'{target} is forbidden: User "{user}" cannot {verb} resource '
                                                 f'"{resource}" in API group "{kind.group}"{scope}',
                               {"name": name, "group": kind.group, "kind": kind.resource} if name else
                               {"group": kind.group, "kind": kind.resource})
            hook = self.api._take_hook(verb, resource)
            if hook:
                hook()
            handler = getattr(self, f"_{verb}", None)
            if sub == "token" and kind.resource == "serviceaccounts" and verb == "create":
                handler = self._token
            elif sub:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            code = handler(kind, namespace, name, query, user)
            self._record(record, code)
        except ApiError as e:
            if record:
                self._record(record, e.code)
            self._send(e.code, e.status())
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _record(self, record: list, code: int) -> None:
        with self.api.lock:
            self.api.requests.append(Request(*record, code))

    # --- verbs ----------------------------------------------------------------

    def _get(self, kind, namespace, name, query, user) -> int:
        self._send(200, self.api.store.get(kind, namespace, name))
        return 200

    def _list(self, kind, namespace, name, query, user) -> int:
        labels = st.parse_label_selector(query.get("labelSelector", ""))
        fields = st.parse_field_selector(query.get("fieldSelector", ""))
        with self.api.store.cond:
            items = [o for o in self.api.store.find(kind, namespace or None)
                     if labels(o["metadata"].get("labels")) and fields(o)]
            rv = str(self.api.store.rv)
        start = int(query.get("continue") or 0)
        limit = int(query.get("limit") or 0)
        page = items[start:start + limit] if limit else items[start:]
        meta = {"resourceVersion": rv}
        if limit and start + limit < len(items):
            meta["continue"] = str(start + limit)
            meta["remainingItemCount"] = len(items) - start - limit
        for item in page:
            item.pop("apiVersion", None)
            item.pop("kind", None)
        self._send(200, {"kind": f"{kind.kind}List", "apiVersion": kind.api_version, "metadata": meta,
                         "items": page})
        return 200

    def _watch(self, kind, namespace, name, query, user) -> int:
        labels = st.parse_label_selector(query.get("labelSelector", ""))
        fields = st.parse_field_selector(query.get("fieldSelector", ""))
        timeout_s = int(query.get("timeoutSeconds") or WATCH_TIMEOUT_S)
        raw_rv = query.get("resourceVersion", "")
        try:
            since = int(raw_rv) if raw_rv not in ("", "0") else 0
        except ValueError:
            raise st.bad_request(f"invalid resource version: {raw_rv}")
        match = lambda o: labels(o["metadata"].get("labels")) and fields(o)  # noqa: E731
        initial = []
        with self.api.store.cond:
            if not since:
                initial = [o for o in self.api.store.find(kind, namespace or None) if match(o)]
                since = self.api.store.rv
            self.api.store.check_since(since)  # 410 Gone before any header is sent
            stream = self.api.store.follow(kind, namespace or None, since, time.monotonic() + timeout_s, match)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for obj in initial:
                self._chunk({"type": "ADDED", "object": obj})
            for event in stream:
                if event is None:
                    if self._client_gone():
                        return 200
                    continue
                self._chunk({"type": event.type, "object": event.obj})
        except ApiError as e:
            self._chunk({"type": "ERROR", "object": e.status()})
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        return 200

    def _chunk(self, event: Object) -> None:
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _create(self, kind, namespace, name, query, user) -> int:
        _, body = self._body()
        self._check_kind(kind, body)
        if namespace and body.get("metadata", {}).get("namespace", namespace) != namespace:
            raise st.bad_request("the namespace of the provided object does not match the namespace sent on "
                                 "the request")
        body = _prepare(kind, namespace, body)
        with self.api.store.cond:
            created = self.api.store.create(kind, namespace, body)
            key = (kind.resource, namespace, created["metadata"]["name"])
            manager = query.get("fieldManager") or _manager(self.headers)
            self.api.store.owners[key] = st.record_update(None, created, manager, {})
            self.api.operations.setdefault(key, {})[manager] = "Update"
            created = self._with_managed_fields(kind, key, created)
        self._send(201, created)
        return 201

    def _update(self, kind, namespace, name, query, user) -> int:
        _, body = self._body()
        self._check_kind(kind, body)
        if body.get("metadata", {}).get("name") != name:
            raise st.bad_request("the name of the object does not match the name on the URL")
        with self.api.store.cond:
            before = self.api.store.get(kind, namespace, name)
            if not body["metadata"].get("resourceVersion"):
                raise st.invalid(kind, name, [("FieldValueInvalid", "metadata.resourceVersion",
                                               "Invalid value: 0x0: must be specified for an update")])
            body = _prepare(kind, namespace, body)
            updated = self.api.store.replace(kind, namespace, name, body)
            self._owned_by(kind, namespace, name, before, updated, query.get("fieldManager") or _manager(self.headers))
            updated = self._with_managed_fields(kind, (kind.resource, namespace, name), updated)
        self._send(200, updated)
        return 200

    def _patch(self, kind, namespace, name, query, user) -> int:
        content_type, patch = self._body()
        if not isinstance(patch, dict):
            raise st.bad_request("the patch must be an object")
        key = (kind.resource, namespace, name)
        manager = query.get("fieldManager", "")
        if content_type == "application/apply-patch+yaml":
            if not manager:
                raise st.invalid(kind, name, [("FieldValueRequired", "fieldManager",
                                               "Required value: is required for apply patch")])
            self._check_kind(kind, patch)
            if patch.get("metadata", {}).get("name", name) != name:
                raise st.bad_request("the name of the object does not match the name on the URL")
            with self.api.store.cond:
                exists = self.api.store.exists(kind, namespace, name)
                live = self.api.store.get(kind, namespace, name) if exists else None
                sent_rv = patch.get("metadata", {}).get("resourceVersion")
                if sent_rv and (live is None or sent_rv != live["metadata"]["resourceVersion"]):
                    raise st.conflict(kind, name)
                owners = self.api.store.owners.get(key, {})
                previous = self.api.store.applied.get(key, {}).get(manager, set())
                result, owners, paths, conflicts = st.apply(live, patch, manager, force=query.get("force") == "true",
                                                            owners=owners, previous=previous)
                if conflicts:
                    raise ApiError(409, "Conflict", f"Apply failed with {len(conflicts)} conflict"
                                                    f"{'s' if len(conflicts) > 1 else ''}: {'; '.join(conflicts)}",
                                   {"causes": [{"reason": "FieldManagerConflict", "message": c} for c in conflicts]})
                result.setdefault("metadata", {})["name"] = name
                result = _prepare(kind, namespace, result)
                # an apply that creates is authorized as a create too, with the name (as the API server
                # does); the request log shows that check as a create request of its own
                if live is None and not self.api.allowed(user, "create", kind.group, kind.resource, namespace, name):
                    raise ApiError(403, "Forbidden", f'{kind.qualified} "{name}" is forbidden: User "{user}" cannot '
                                                     f'create resource "{kind.resource}" in API group "{kind.group}" '
                                                     f'in the namespace "{namespace}"')
                if live is None:
                    self._record([user, "create", kind.group, kind.resource, namespace, name], 201)
                    saved = self.api.store.create(kind, namespace, result)
                    code = 201
                else:
                    result["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
                    saved = self.api.store.replace(kind, namespace, name, result)
                    code = 200
                self.api.store.owners[key] = owners
                self.api.store.applied.setdefault(key, {})[manager] = paths
                self.api.operations.setdefault(key, {})[manager] = "Apply"
                saved = self._with_managed_fields(kind, key, saved)
            self._send(code, saved)
            return code
        if "force" in query:
            raise st.invalid(kind, name, [("FieldValueForbidden", "force",
                                           "Forbidden: may not be specified for non-apply patch")])
        with self.api.store.cond:
            live = self.api.store.get(kind, namespace, name)
            if content_type == "application/merge-patch+json":
                result = st.merge_patch(live, patch)
            elif content_type == "application/strategic-merge-patch+json":
                result = st.strategic_merge_patch(live, patch)
            else:
                raise ApiError(415, "UnsupportedMediaType", f"the fake API server does not support the patch "
                                                            f"type {content_type}")
            sent_rv = patch.get("metadata", {}).get("resourceVersion")
            result["metadata"]["resourceVersion"] = sent_rv or live["metadata"]["resourceVersion"]
            result = _prepare(kind, namespace, result)
            saved = self.api.store.replace(kind, namespace, name, result)
            self._owned_by(kind, namespace, name, live, saved, manager or _manager(self.headers))
            saved = self._with_managed_fields(kind, key, saved)
        self._send(200, saved)
        return 200

    def _delete(self, kind, namespace, name, query, user) -> int:
        store = self.api.store
        with store.cond:
            if kind.resource == "namespaces":
                obj = store.get(kind, "", name)
                for (resource, ns, obj_name) in list(store.objects):
                    if ns == name and KINDS[resource].namespaced:
                        store.delete(KINDS[resource], ns, obj_name)
                store.delete(kind, "", name)
                obj["status"] = {"phase": "Terminating"}
                obj["metadata"]["deletionTimestamp"] = st.now_rfc3339()
                self._send(200, obj)
                return 200
            obj = store.delete(kind, namespace, name)
        self._send(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                         "details": {"name": name, "group": kind.group, "kind": kind.resource,
                                     "uid": obj["metadata"]["uid"]}})
        return 200

    def _token(self, kind, namespace, name, query, user) -> int:
        _, body = self._body()
        if body.get("kind") != "TokenRequest":
            raise st.bad_request("expected a TokenRequest")
        self.api.store.get(kind, namespace, name)  # 404 for an unknown ServiceAccount
        seconds = int((body.get("spec") or {}).get("expirationSeconds") or 3600)
        token = self.api.mint_token(namespace, name)
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds))
        self._send(201, {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                         "metadata": {"name": name, "namespace": namespace, "creationTimestamp": st.now_rfc3339()},
                         "spec": {**(body.get("spec") or {}), "expirationSeconds": seconds},
                         "status": {"token": token, "expirationTimestamp": expires}})
        return 201

    # --- helpers --------------------------------------------------------------

    def _check_kind(self, kind: Kind, body: Any) -> None:
        if not isinstance(body, dict):
            raise st.bad_request("the body must be an object")
        if body.get("kind") != kind.kind or body.get("apiVersion") != kind.api_version:
            raise st.bad_request(f"the API version in the data ({body.get('apiVersion')}) and kind "
                                 f"({body.get('kind')}) do not match the request ({kind.api_version}, {kind.kind})")

    def _owned_by(self, kind, namespace, name, before, after, manager) -> None:
        key = (kind.resource, namespace, name)
        self.api.store.owners[key] = st.record_update(before, after, manager, self.api.store.owners.get(key, {}))
        self.api.operations.setdefault(key, {}).setdefault(manager, "Update")

    def _with_managed_fields(self, kind: Kind, key: tuple, obj: Object) -> Object:
        """Show ownership in the answer (and in later reads) as metadata.managedFields."""
        fields = st.managed_fields(self.api.store.owners.get(key, {}), kind.api_version,
                                   self.api.operations.get(key, {}))
        stored = self.api.store.objects.get(key)
        if stored is not None:
            stored["metadata"]["managedFields"] = fields
        obj["metadata"]["managedFields"] = fields
        return obj


def _manager(headers) -> str:
    """Name a manager from the User-Agent, as the API server does when fieldManager is absent."""
    agent = headers.get("User-Agent") or "unknown"
    return agent.split("/")[0][:128]


def _route(path: str) -> tuple[Kind, str, str, str]:
    """Split an API path into (kind, namespace, name, subresource); 404 when it names nothing served."""
    parts = [p for p in path.split("/") if p]
    missing = ApiError(404, "NotFound", "the server could not find the requested resource",
                       {"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]})
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise missing
    namespace = ""
    if len(rest) >= 3 and rest[0] == "namespaces" and not group:
        namespace, rest = rest[1], rest[2:]
    elif len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        raise missing
    kind = KINDS.get(rest[0])
    if kind is None or kind.group != group or kind.version != version:
        raise missing
    if kind.namespaced != bool(namespace) and not (kind.namespaced and len(rest) == 1):
        raise missing
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    return kind, namespace, name, sub


def _verb(method: str, name: str, query: dict) -> str:
    if method == "GET":
        if name:
            if query.get("watch") in ("true", "1"):
                return "watch"
            return "get"
        return "watch" if query.get("watch") in ("true", "1") else "list"
    if method == "POST" and not name:
        return "create"
    if method == "POST" and name:
        return "create"  # subresources such as serviceaccounts/token
    if method == "PUT" and name:
        return "update"
    if method == "PATCH" and name:
        return "patch"
    if method == "DELETE" and name:
        return "delete"
    raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method on the requested resource")


def _prepare(kind: Kind, namespace: str, obj: Object) -> Object:
    """Default and validate an object of a kind the controllers act on, as the API server does."""
    obj = copy.deepcopy(obj)
    meta = obj.setdefault("metadata", {})
    name = meta.get("name", "")
    if kind.resource == "namespaces":
        obj["status"] = {"phase": "Active"}
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
    if kind.resource == "services":
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("clusterIP", f"10.96.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}")
        for i, port in enumerate(spec.get("ports") or ()):
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
            if spec["type"] == "NodePort":
                port.setdefault("nodePort", 30000 + uuid.uuid4().int % 2768)
                if not 30000 <= port["nodePort"] <= 32767:
                    raise st.invalid(kind, name, [("FieldValueInvalid", f"spec.ports[{i}].nodePort",
                                                   f"Invalid value: {port['nodePort']}: provided port is not in "
                                                   "the valid range. The range of valid ports is 30000-32767")])
    if kind.resource in ("deployments", "replicasets"):
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        if kind.resource == "deployments":
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
            strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
            if strategy.get("type") == "RollingUpdate":
                rolling = strategy.setdefault("rollingUpdate", {})
                rolling.setdefault("maxUnavailable", "25%")
                rolling.setdefault("maxSurge", "25%")
                if rolling["maxUnavailable"] in (0, "0%") and rolling["maxSurge"] in (0, "0%"):
                    raise st.invalid(kind, name, [("FieldValueInvalid", "spec.strategy.rollingUpdate.maxUnavailable",
                                                   "Invalid value: 0: may not be 0 when `maxSurge` is 0")])
        template = spec.get("template") or {}
        pod = template.get("spec") or {}
        causes = []
        selector = (spec.get("selector") or {}).get("matchLabels")
        if not selector:
            causes.append(("FieldValueRequired", "spec.selector", "Required value"))
        elif not selector.items() <= ((template.get("metadata") or {}).get("labels") or {}).items():
            causes.append(("FieldValueInvalid", "spec.template.metadata.labels",
                           "Invalid value: `selector` does not match template `labels`"))
        if not pod.get("containers"):
            causes.append(("FieldValueRequired", "spec.template.spec.containers", "Required value"))
        for i, container in enumerate(pod.get("containers") or ()):
            for field in ("name", "image"):
                if not container.get(field):
                    causes.append(("FieldValueRequired", f"spec.template.spec.containers[{i}].{field}",
                                   "Required value"))
        if spec["replicas"] < 0:
            causes.append(("FieldValueInvalid", "spec.replicas", "Invalid value: must be greater than or equal "
                                                                "to 0"))
        if causes:
            raise st.invalid(kind, name, causes)
        _default_pod_spec(pod)
    if kind.resource == "pods":
        _default_pod_spec(obj.setdefault("spec", {}))
    return obj


def _default_pod_spec(pod: Object) -> None:
    pod.setdefault("restartPolicy", "Always")
    pod.setdefault("terminationGracePeriodSeconds", 30)
    pod.setdefault("dnsPolicy", "ClusterFirst")
    pod.setdefault("schedulerName", "default-scheduler")
    pod.setdefault("securityContext", {})
    for container in pod.get("containers") or ():
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("resources", {})
        image = container.get("image", "")
        latest = ":" not in image.rsplit("/", 1)[-1] and "@" not in image or image.endswith(":latest")
        container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
