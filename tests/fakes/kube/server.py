"""The fake kube-apiserver's HTTP side: paths, authentication, RBAC, dispatch, Status answers.

It answers the REST paths the official clients and kubectl use, with the API server's Status
objects for errors, and refuses what it does not serve (404 for unknown paths, 405 for unknown
verbs, 415 for unknown body or patch types, 400 for unknown options) instead of pretending.
The verbs live in ``reads.py`` (get, list, watch) and ``writes.py`` (create, update, patch,
delete and the subresources).
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from tests.fakes import send_json
from tests.fakes.kube import discovery, rbac, wire
from tests.fakes.kube import store as st
from tests.fakes.kube.reads import Reads
from tests.fakes.kube.store import KINDS, ApiError, Kind, Object, Store
from tests.fakes.kube.writes import Writes

ADMIN = rbac.ADMIN
VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0-fake", "gitCommit": "0" * 40,
           "gitTreeState": "clean", "buildDate": "2024-12-11T18:04:20Z", "goVersion": "go1.23.3",
           "compiler": "gc", "platform": "linux/amd64"}
KNOWN_QUERY = {"pretty", "fieldManager", "force", "fieldValidation", "watch", "resourceVersion",
               "resourceVersionMatch", "timeoutSeconds", "labelSelector", "fieldSelector", "limit", "continue",
               "allowWatchBookmarks", "propagationPolicy", "gracePeriodSeconds", "orphanDependents", "dryRun",
               "includeObject", "timeout"}
SUBRESOURCES = {("serviceaccounts", "token"), ("deployments", "status"), ("deployments", "scale"),
                ("replicasets", "status"), ("replicasets", "scale"), ("pods", "status"), ("services", "status")}


@dataclasses.dataclass(frozen=True)
class Request:
    """One API request as RBAC sees it."""

    user: str
    verb: str
    group: str
    resource: str  # "deployments", or "deployments/scale" for a subresource
    namespace: str
    name: str
    code: int


class ApiServer:
    """Serve a Store over HTTP on loopback; record every request."""

    def __init__(self, store: Store, *, token: str | None = None, host: str = "127.0.0.1", port: int = 0,
                 bookmark_s: float = 60.0, tls: tuple[str, str] | None = None):
        self.store = store
        self.tokens: dict[str, str] = {token: ADMIN} if token else {}
        self.open_access = token is None  # no token configured: every caller is the admin
        self.bookmark_s = bookmark_s  # how often an idle watch that asked for bookmarks gets one
        self.requests: list[Request] = []
        self.hooks: list[tuple[str, str, Any]] = []  # (verb, resource, callable) run once before a request
        self.lock = threading.Lock()
        self.operations: dict[tuple, dict[str, str]] = {}  # object -> manager -> Apply | Update
        handler = type("Handler", (_Handler,), {"api": self})
        self.httpd = _Server((host, port), handler)
        self.scheme = "http"
        if tls:  # (certificate file, key file): kubectl sends a bearer token only over TLS
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="fake-kube-http", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"{self.scheme}://{host}:{port}"

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

    def take_hook(self, verb: str, resource: str):
        with self.lock:
            for i, (v, r, action) in enumerate(self.hooks):
                if v == verb and r == resource:
                    del self.hooks[i]
                    return action
        return None

    def allowed(self, user: str, verb: str, group: str, resource: str, namespace: str, name: str) -> bool:
        return rbac.decide(self.store, user, verb, group, resource, namespace, name)[0]

    def mint_token(self, namespace: str, name: str) -> str:
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = f"system:serviceaccount:{namespace}:{name}"
        return token


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client that went away mid-request (a stopped watch, a reset): nothing to report
        super().handle_error(request, client_address)


class _Handler(Reads, Writes, BaseHTTPRequestHandler):
    api: ApiServer
    protocol_version = "HTTP/1.1"
    server_version = "fake-kube-apiserver"
    # Go's net/http (the API server's) sets TCP_NODELAY on every connection. Without it the body,
    # sent after the headers, waits for the client's delayed ACK: ~44 ms a request on loopback.
    disable_nagle_algorithm = True

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

    def send_json(self, code: int, body: Object) -> None:
        send_json(self, code, body)

    def body(self) -> tuple[str, Any]:
        raw = self.raw_body
        kind = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        if not raw:
            raise st.bad_request("the request body is empty")
        try:
            if kind in ("application/json", "application/merge-patch+json", "application/strategic-merge-patch+json"):
                return kind, json.loads(raw)
            if kind in ("application/yaml", "application/apply-patch+yaml"):
                return kind, yaml.safe_load(raw)
            if kind == wire.PROTOBUF:
                return "application/json", wire.decode(raw)
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
                return self.send_json(200, VERSION if url.path.rstrip("/") == "/version" else {"status": "ok"})
            document = discovery.answer(url.path, self.headers.get("Host", ""))
            if document is not None:
                if method != "GET":
                    raise _not_allowed()
                return self.send_json(200, document)
            kind, namespace, name, sub = _route(url.path)
            unknown = set(query) - KNOWN_QUERY
            if unknown:
                raise st.bad_request(f"unknown query parameters: {', '.join(sorted(unknown))}")
            verb = _verb(method, name, query)
            if kind.resource in discovery.REVIEW_ONLY and (verb != "create" or name):
                raise _not_allowed()
            if not name and verb in ("list", "watch"):
                name = st.exact_name(query.get("fieldSelector", ""))
            resource = f"{kind.resource}/{sub}" if sub else kind.resource
            record = [user, verb, kind.group, resource, namespace, name]
            self._authorize(user, verb, kind, resource, namespace, name)
            hook = self.api.take_hook(verb, resource)
            if hook:
                hook()
            code = self._dispatch(verb, kind, namespace, name, sub, query, user)
            self._record(record, code)
        except ApiError as e:
            if record:
                self._record(record, e.code)
            self.send_json(e.code, e.status())
        except OSError:  # the client went away (a closed watch, an ended TLS session)
            if record:  # it was authorized and answered: the log keeps it, as an audit log does
                self._record(record, 200)
        except Exception as e:  # a bug in the fake: answer as the API server does, and say what it was
            self.send_json(500, ApiError(500, "InternalError", f"Internal error occurred: fake API server: "
                                                               f"{type(e).__name__}: {e}").status())

    def _authorize(self, user, verb, kind, resource, namespace, name) -> None:
        if self.api.allowed(user, verb, kind.group, resource, namespace, name):
            return
        scope = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
        target = f'{kind.qualified} "{name}"' if name else kind.qualified
        raise ApiError(403, "Forbidden", f'{target} is forbidden: User "{user}" cannot {verb} resource '
                                         f'"{resource}" in API group "{kind.group}"{scope}',
                       {"name": name, "group": kind.group, "kind": kind.resource} if name else
                       {"group": kind.group, "kind": kind.resource})

    def _dispatch(self, verb, kind, namespace, name, sub, query, user) -> int:
        if sub and (kind.resource, sub) not in SUBRESOURCES:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if sub == "token":
            if verb != "create":
                raise _not_allowed()
            handler = self.token
        elif sub in ("status", "scale"):
            if verb not in ("get", "update", "patch"):
                raise _not_allowed()
            handler = getattr(self, f"{sub}_{verb}")
        elif verb == "create" and name:
            raise _not_allowed()
        elif kind.resource in discovery.REVIEW_ONLY:
            handler = self.review
        else:
            handler = getattr(self, verb)
        dry_run = query.get("dryRun")
        if dry_run is None or verb in ("get", "list", "watch"):
            code, answer = handler(kind, namespace, name, query, user)
        elif dry_run != "All":
            raise st.invalid(Kind("meta.k8s.io", "v1", "", f"{verb.capitalize()}Options"), "", [(
                "FieldValueNotSupported", "dryRun", f'Unsupported value: ["{dry_run}"]: supported values: "All"')])
        else:
            with self.api.store.cond:  # run the write, answer it, then forget it: nothing is stored or sent
                saved, operations = self.api.store.snapshot(), {k: dict(v) for k, v in self.api.operations.items()}
                try:
                    code, answer = handler(kind, namespace, name, query, user)
                finally:
                    self.api.store.restore(saved)
                    self.api.operations = operations
            meta = (answer or {}).get("metadata") or {}
            before = saved[0].get((kind.resource, namespace, meta.get("name", name)))
            if "resourceVersion" in meta and answer.get("kind") != "Status":
                meta["resourceVersion"] = before["metadata"]["resourceVersion"] if before else ""
        if answer is not None:
            self.send_json(code, answer)
        return code

    def _record(self, record: list, code: int) -> None:
        with self.api.lock:
            self.api.requests.append(Request(*record, code))


def _not_allowed() -> ApiError:
    return ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")


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
    if len(rest) >= 3 and rest[0] == "namespaces":
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
        if query.get("watch") in ("true", "1"):
            return "watch"
        return "get" if name else "list"
    if method == "POST":
        return "create"  # with a name: a subresource such as serviceaccounts/token
    if method == "PUT" and name:
        return "update"
    if method == "PATCH" and name:
        return "patch"
    if method == "DELETE" and name:
        return "delete"
    raise _not_allowed()
