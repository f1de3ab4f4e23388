"""A Jenkins test double: the REST endpoints python-jenkins and Jenkins Job Builder use.

It answers as Jenkins does (status codes, JSON shapes with ``_class``, the
``X-Jenkins`` header, 403 "No valid crumb", 201 + ``Location`` for a queued
build) and refuses anything else with Jenkins' 404 or 405. It knows nothing of
Pinotage. Every request is recorded so that tests can count the writes.

Crumbs (``crumbs=True``) are checked on every POST as Jenkins 2.96+ checks them: a request
authenticated with an API token (HTTP Basic, user:token) is exempt, an anonymous one is not.
``crumbs_for_tokens=True`` asks API-token requests for a crumb too, standing for a request
Jenkins authenticates by session (a browser login, a password) or a server set up to check
every POST; the fake has no session login, so this is how tests reach the stale-crumb path.

    python -m tests.fakes.jenkins --port 8080 [--user U --token T] [--crumbs [--crumbs-for-tokens]]
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import itertools
import json
import re
import secrets
import socket
import struct
import threading
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

VERSION = "2.580.1"  # the LTS docker/jenkins/Dockerfile ships
CRUMB_FIELD = "Jenkins-Crumb"
WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
JOB_CLASSES = {
    "project": "hudson.model.FreeStyleProject",
    "flow-definition": "org.jenkinsci.plugins.workflow.job.WorkflowJob",
    "org.jenkinsci.plugins.workflow.multibranch.WorkflowMultiBranchProject":
        "org.jenkinsci.plugins.workflow.multibranch.WorkflowMultiBranchProject",
    "com.cloudbees.hudson.plugins.folder.Folder": "com.cloudbees.hudson.plugins.folder.Folder",
}
BUILDABLE = ("project", "flow-definition")
PLUGINS = (("workflow-aggregator", "Pipeline", "596.v8c21c963d92d"),
           ("workflow-multibranch", "Pipeline: Multibranch", "783.va_6eb_ef636fb_d"),
           ("github-branch-source", "GitHub Branch Source Plugin", "1789.v5b_0c0cea_18c3"),
           ("credentials-binding", "Credentials Binding Plugin", "657.v2b_19db_7d6e6d"),
           ("timestamper", "Timestamper", "1.26"),
           ("git", "Git plugin", "5.2.2"))


@dataclasses.dataclass(frozen=True)
class Request:
    """One request as the fake saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased
    body: bytes
    status: int


@dataclasses.dataclass
class Build:
    number: int
    parameters: dict[str, str]
    cause: str
    result: str = "SUCCESS"


@dataclasses.dataclass
class Job:
    config: str
    builds: list[Build] = dataclasses.field(default_factory=list)

    @property
    def root(self) -> str:
        return ET.fromstring(_strip_declaration(self.config)).tag

    def parameters(self) -> dict[str, str] | None:
        """Return the parameter defaults, or None when the job takes no parameters."""
        root = ET.fromstring(_strip_declaration(self.config))
        definitions = root.find("properties/hudson.model.ParametersDefinitionProperty/parameterDefinitions")
        if definitions is None:
            return None
        return {(d.findtext("name") or ""): (d.findtext("defaultValue") or "") for d in definitions}


class FakeJenkins:
    """An in-process Jenkins double on 127.0.0.1; use as a context manager."""

    def __init__(self, *, user: str = "", token: str = "", crumbs: bool = False, crumbs_for_tokens: bool = False,
                 port: int = 0, version: str = VERSION):
        self.user = user
        self.token = token
        self.crumbs = crumbs
        self.crumbs_for_tokens = crumbs_for_tokens  # see the module docstring
        self.version = version
        self.jobs: dict[str, Job] = {}
        self.requests: list[Request] = []
        self.crumb = secrets.token_hex(16)
        self.issue_stale_crumbs = False  # hand out crumbs that are already invalid
        self._queue: dict[int, tuple[str, int]] = {}
        self._queue_ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeJenkins":
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-jenkins", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "FakeJenkins":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # What tests use to arrange and inspect, never reached over HTTP.
    def rotate_crumb(self) -> None:
        """Invalidate the issued crumb, as a restart or an expired session does."""
        self.crumb = secrets.token_hex(16)

    def writes(self) -> list[Request]:
        """Return the POST requests received (whatever their answer)."""
        return [r for r in self.requests if r.method == "POST"]

    def clear_requests(self) -> None:
        self.requests.clear()


def _strip_declaration(xml: str) -> str:
    return re.sub(r"^\s*<\?xml[^>]*\?>", "", xml)


def _tree_keys(tree: str) -> set[str]:
    """Return the top-level field names of a ``tree=`` query."""
    keys, depth, current = set(), 0, ""
    for char in tree:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == "," and depth == 0:
            keys.add(current)
            current = ""
            continue
        if depth == 0 and char not in "[]":
            current += char
    keys.add(current)
    return {key.strip() for key in keys if key.strip()}


def _handler_for(fake: FakeJenkins) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "Jetty(10.0.20)"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
            pass

        # --- plumbing ------------------------------------------------------
        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _send(self, status: int, body: bytes | str = b"", content_type: str = "text/html;charset=utf-8",
                  headers: dict[str, str] | None = None) -> None:
            if isinstance(body, str):
                body = body.encode("utf-8")
            self._record(status)
            self.send_response(status)
            self.send_header("X-Jenkins", fake.version)
            self.send_header("X-Hudson", "1.395")
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, data: Any, status: int = 200) -> None:
            self._send(status, json.dumps(data), "application/json;charset=utf-8")

        def _error(self, status: int, message: str) -> None:
            # Jenkins answers errors with an HTML page carrying the message.
            self._send(status, f"<html><head><title>Error {status} {message}</title></head><body>"
                               f"<h2>HTTP ERROR {status} {message}</h2></body></html>")

        def _handle(self, method: str) -> None:
            parts = urlsplit(self.path)
            self._request_body = self._body() if method == "POST" else b""
            self._route(method, unquote(parts.path), parse_qs(parts.query), self._request_body)

        def _record(self, status: int) -> None:
            """Record the request before answering, so a client never sees an answer it cannot count."""
            parts = urlsplit(self.path)
            with fake._lock:
                fake.requests.append(Request(self.command, parts.path, parse_qs(parts.query),
                                             {k.lower(): v for k, v in self.headers.items()},
                                             getattr(self, "_request_body", b""), status))

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_PUT(self) -> None:
            self._handle("PUT")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

        def do_HEAD(self) -> None:
            self._handle("HEAD")

        # --- auth and crumbs -----------------------------------------------
        def _authorised(self) -> bool:
            if not fake.user:
                return True
            header = self.headers.get("Authorization", "")
            if not header:
                self._error(403, "Forbidden")  # anonymous has no Overall/Read
                return False
            scheme, _, encoded = header.partition(" ")
            try:
                user, _, token = base64.b64decode(encoded).decode("utf-8").partition(":")
            except ValueError:
                user, token = "", ""
            if scheme.lower() != "basic" or user != fake.user or not secrets.compare_digest(token, fake.token):
                self._error(401, f"Invalid password/token for user: {user}")
                return False
            return True

        def _crumb_ok(self) -> bool:
            if not fake.crumbs or self.headers.get(CRUMB_FIELD) == fake.crumb:
                return True
            # _authorised() has passed: with a user set, this request came with its API token
            if fake.user and not fake.crumbs_for_tokens:
                return True
            self._error(403, "No valid crumb was included in the request")
            return False

        # --- routes --------------------------------------------------------
        def _route(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> None:
            if self.headers.get("Upgrade", "").lower() == "websocket":
                return self._websocket(path)
            if not self._authorised():
                return
            if method == "POST" and not self._crumb_ok():
                return
            segments = [s for s in path.split("/") if s]
            if method in ("GET", "HEAD"):
                return self._get(segments, query)
            if method == "POST":
                return self._post(segments, query, body)
            self._error(405, "Method Not Allowed")

        def _get(self, s: list[str], query: dict[str, list[str]]) -> None:
            tree = query.get("tree", [""])[0]
            if not s:
                return self._send(200, "<html><head><title>Dashboard [Jenkins]</title></head></html>")
            if s == ["api", "json"]:
                return self._json(self._filtered(self._root_info(), tree))
            if s == ["crumbIssuer", "api", "json"]:
                if not fake.crumbs:
                    return self._error(404, "Not Found")
                crumb = secrets.token_hex(16) if fake.issue_stale_crumbs else fake.crumb
                return self._json({"_class": "hudson.security.csrf.DefaultCrumbIssuer",
                                   "crumb": crumb, "crumbRequestField": CRUMB_FIELD})
            if s == ["pluginManager", "api", "json"]:
                return self._json({"_class": "hudson.LocalPluginManager", "plugins": [
                    {"active": True, "enabled": True, "hasUpdate": False, "shortName": short,
                     "longName": long, "version": version, "dependencies": []}
                    for short, long, version in PLUGINS]})
            if s == ["me", "api", "json"]:
                return self._json({"_class": "hudson.model.User", "id": fake.user or "anonymous",
                                   "fullName": fake.user or "anonymous"})
            if s[:2] == ["queue", "item"] and len(s) == 5 and s[3:] == ["api", "json"] and s[2].isdigit():
                return self._queue_item(int(s[2]))
            if len(s) >= 2 and s[0] == "job":
                job = fake.jobs.get(s[1])
                if job is None:
                    return self._error(404, "Not Found")
                rest = s[2:]
                if rest == ["api", "json"]:
                    return self._json(self._filtered(self._job_info(s[1], job), tree))
                if rest == ["config.xml"]:
                    return self._send(200, job.config, "application/xml")
                if len(rest) == 3 and rest[0].isdigit() and rest[1:] == ["api", "json"]:
                    build = self._build(job, int(rest[0]))
                    return self._json(self._build_info(s[1], build)) if build else self._error(404, "Not Found")
                if len(rest) == 2 and rest[0].isdigit() and rest[1] == "consoleText":
                    build = self._build(job, int(rest[0]))
                    if build is None:
                        return self._error(404, "Not Found")
                    return self._send(200, self._console(build), "text/plain;charset=utf-8")
            self._error(404, "Not Found")

        def _post(self, s: list[str], query: dict[str, list[str]], body: bytes) -> None:
            if s == ["createItem"]:
                return self._create(query.get("name", [""])[0], body)
            if len(s) == 3 and s[0] == "job":
                name, action = s[1], s[2]
                job = fake.jobs.get(name)
                if job is None:
                    return self._error(404, "Not Found")
                if action == "config.xml":
                    problem = self._bad_xml(body)
                    if problem:
                        return self._error(500, f"Failed to parse the configuration: {problem}")
                    job.config = body.decode("utf-8")
                    return self._send(200)
                if action == "doDelete":
                    del fake.jobs[name]
                    return self._send(302, headers={"Location": f"{fake.url}/"})
                if action in ("build", "buildWithParameters"):
                    return self._build_now(name, job, action, query, body)
            self._error(404, "Not Found")

        def _create(self, name: str, body: bytes) -> None:
            if not name or re.search(r"[/\\?*%!@#$^&|<>\[\]:;]", name):
                return self._error(400, f"‘{name}’ is an unsafe character" if name else "Query parameter 'name' is required")
            if name in fake.jobs:
                return self._error(400, f"A job already exists with the name ‘{name}’")
            if "xml" not in self.headers.get("Content-Type", ""):
                return self._error(400, "No mode given")
            problem = self._bad_xml(body)
            if problem:
                return self._error(500, f"Failed to parse the configuration: {problem}")
            fake.jobs[name] = Job(body.decode("utf-8"))
            self._send(200)

        def _bad_xml(self, body: bytes) -> str:
            try:
                root = ET.fromstring(_strip_declaration(body.decode("utf-8")))
            except (ET.ParseError, UnicodeDecodeError) as e:
                return str(e)
            if root.tag not in JOB_CLASSES:
                return f"unknown item type <{root.tag}>"
            return ""

        def _build_now(self, name: str, job: Job, action: str, query: dict[str, list[str]], body: bytes) -> None:
            if job.root not in BUILDABLE:
                return self._error(405, "Method Not Allowed")
            defaults = job.parameters()
            if action == "build" and defaults is not None:
                return self._error(400, "Nothing is submitted")
            if action == "buildWithParameters" and defaults is None:
                return self._error(400, f"{name} is not parameterized")
            given = {k: v[-1] for k, v in query.items()}
            if body and "form-urlencoded" in self.headers.get("Content-Type", ""):
                given.update({k: v[-1] for k, v in parse_qs(body.decode("utf-8")).items()})
            parameters = {key: given.get(key, default) for key, default in (defaults or {}).items()}
            with fake._lock:
                build = Build(len(job.builds) + 1, parameters, f"Started by user {fake.user or 'anonymous'}")
                job.builds.append(build)
                queue_id = next(fake._queue_ids)
                fake._queue[queue_id] = (name, build.number)
            self._send(201, headers={"Location": f"{fake.url}/queue/item/{queue_id}/"})

        # --- JSON shapes ---------------------------------------------------
        def _root_info(self) -> dict[str, Any]:
            return {"_class": "hudson.model.Hudson", "mode": "NORMAL", "nodeDescription": "the Jenkins controller",
                    "numExecutors": 2, "useCrumbs": fake.crumbs, "useSecurity": bool(fake.user),
                    "url": f"{fake.url}/",
                    "jobs": [{"_class": JOB_CLASSES[job.root], "name": name,
                              "url": f"{fake.url}/job/{quote(name)}/", "color": self._color(job)}
                             for name, job in sorted(fake.jobs.items())]}

        def _job_info(self, name: str, job: Job) -> dict[str, Any]:
            builds = [{"_class": "hudson.model.FreeStyleBuild", "number": b.number,
                       "url": f"{fake.url}/job/{quote(name)}/{b.number}/"} for b in reversed(job.builds)]
            root = ET.fromstring(_strip_declaration(job.config))
            return {"_class": JOB_CLASSES[job.root], "name": name, "fullName": name, "displayName": name,
                    "fullDisplayName": name, "url": f"{fake.url}/job/{quote(name)}/",
                    "description": root.findtext("description") or "", "buildable": job.root in BUILDABLE,
                    "color": self._color(job), "builds": builds, "firstBuild": builds[-1] if builds else None,
                    "lastBuild": builds[0] if builds else None, "nextBuildNumber": len(job.builds) + 1,
                    "inQueue": False, "queueItem": None, "concurrentBuild": root.findtext("concurrentBuild") == "true",
                    "property": []}

        def _build_info(self, name: str, build: Build) -> dict[str, Any]:
            actions = [{"_class": "hudson.model.CauseAction",
                        "causes": [{"_class": "hudson.model.Cause$UserIdCause", "shortDescription": build.cause}]}]
            if build.parameters:
                actions.append({"_class": "hudson.model.ParametersAction", "parameters": [
                    {"_class": "hudson.model.StringParameterValue", "name": k, "value": v}
                    for k, v in build.parameters.items()]})
            return {"_class": "hudson.model.FreeStyleBuild", "number": build.number, "id": str(build.number),
                    "result": build.result, "building": False, "duration": 0, "actions": actions,
                    "fullDisplayName": f"{name} #{build.number}",
                    "url": f"{fake.url}/job/{quote(name)}/{build.number}/"}

        def _queue_item(self, queue_id: int) -> None:
            if queue_id not in fake._queue:
                return self._error(404, "Not Found")
            name, number = fake._queue[queue_id]
            self._json({"_class": "hudson.model.Queue$LeftItem", "id": queue_id, "blocked": False,
                        "buildable": False, "cancelled": False, "why": None,
                        "task": {"_class": "hudson.model.FreeStyleProject", "name": name,
                                 "url": f"{fake.url}/job/{quote(name)}/"},
                        "executable": {"_class": "hudson.model.FreeStyleBuild", "number": number,
                                       "url": f"{fake.url}/job/{quote(name)}/{number}/"}})

        @staticmethod
        def _build(job: Job, number: int) -> Build | None:
            return job.builds[number - 1] if 0 < number <= len(job.builds) else None

        @staticmethod
        def _console(build: Build) -> str:
            lines = [build.cause] + [f"{k}={v}" for k, v in build.parameters.items()]
            return "\n".join(lines + [f"Finished: {build.result}", ""])

        @staticmethod
        def _color(job: Job) -> str:
            if job.root not in BUILDABLE:
                return ""
            return "blue" if job.builds else "notbuilt"

        @staticmethod
        def _filtered(data: dict[str, Any], tree: str) -> dict[str, Any]:
            if not tree:
                return data
            keys = _tree_keys(tree)
            return {k: v for k, v in data.items() if k in keys or k == "_class"}

        # --- WebSocket (what agents use through a reverse proxy) ------------
        def _websocket(self, path: str) -> None:
            key = self.headers.get("Sec-WebSocket-Key", "")
            if (path.rstrip("/") not in ("/wsagents", "/cli/ws")
                    or "upgrade" not in self.headers.get("Connection", "").lower()
                    or self.headers.get("Sec-WebSocket-Version") != "13" or not key):
                return self._error(400, "Bad WebSocket handshake")
            if not self._authorised():
                return
            accept = base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode()).digest()).decode()
            self._record(101)
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept)
            self.send_header("X-Jenkins", fake.version)
            self.end_headers()
            self.close_connection = True
            self._echo_frames()

        def _echo_frames(self) -> None:
            """Echo text and binary frames back until the client closes."""
            self.connection.settimeout(10)
            try:
                while True:
                    head = self.rfile.read(2)
                    if len(head) < 2:
                        return
                    opcode, length = head[0] & 0x0F, head[1] & 0x7F
                    if length == 126:
                        length = struct.unpack(">H", self.rfile.read(2))[0]
                    elif length == 127:
                        length = struct.unpack(">Q", self.rfile.read(8))[0]
                    mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
                    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(length)))
                    if opcode == 0x8:
                        self.wfile.write(bytes([0x88, len(payload[:125])]) + payload[:125])
                        return
                    if opcode in (0x1, 0x2):
                        header = bytes([0x80 | opcode])
                        if len(payload) < 126:
                            header += bytes([len(payload)])
                        else:
                            header += bytes([126]) + struct.pack(">H", len(payload))
                        self.wfile.write(header + payload)
                        self.wfile.flush()
            except (socket.timeout, ConnectionError):
                return

    return Handler


def main(argv: list[str] | None = None) -> int:
    """Serve the fake on 127.0.0.1 until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.jenkins", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free port)")
    parser.add_argument("--user", default="", help="require basic auth as this user")
    parser.add_argument("--token", default="", help="the user's API token")
    parser.add_argument("--crumbs", action="store_true",
                        help="require a CSRF crumb on a POST, except (as Jenkins 2.96+) from an API-token request")
    parser.add_argument("--crumbs-for-tokens", action="store_true",
                        help="with --crumbs: require it from API-token requests too")
    args = parser.parse_args(argv)
    if bool(args.user) != bool(args.token):
        parser.error("--user and --token go together")
    if args.crumbs_for_tokens and not args.crumbs:
        parser.error("--crumbs-for-tokens goes with --crumbs")
    fake = FakeJenkins(user=args.user, token=args.token, crumbs=args.crumbs, crumbs_for_tokens=args.crumbs_for_tokens,
                       port=args.port)
    print(fake.url, flush=True)
    try:
        fake._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        fake._server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
