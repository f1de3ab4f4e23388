"""A GitHub commit status API double on loopback.

It answers like api.github.com for the two calls Pinotage makes or checks (create a status,
list a ref's statuses): the same status codes and JSON shapes, 401 for a missing or wrong
token, 404 for an unknown repository or route, 422 for an invalid state, description or SHA.
Anything else is refused with 404, as GitHub does for a route it does not have.
"""

from __future__ import annotations

import datetime
import itertools
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DOCS = "https://docs.github.com/rest"
STATES = ("error", "failure", "pending", "success")
_CREATE = re.compile(r"^/repos/([^/]+)/([^/]+)/statuses/([^/]+)$")
_LIST = re.compile(r"^/repos/([^/]+)/([^/]+)/commits/([^/]+)/statuses$")


class FakeGithub:
    """Serve the status API for the given repositories and token; keep what it was sent."""

    def __init__(self, *, token: str, repos: tuple[str, ...], commits: set[str] | None = None):
        self.token = token
        self.repos = set(repos)
        self.commits = commits  # None: any 40-hex SHA exists
        self.statuses: dict[tuple[str, str], list[dict]] = {}
        self.requests: list[tuple[str, str, int]] = []  # (method, path, answered status)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "FakeGithub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def states(self, slug: str, sha: str) -> list[str]:
        """Return the states created for a commit, oldest first."""
        return [s["state"] for s in self.statuses.get((slug, sha), [])]

    # --- the server ------------------------------------------------------------

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                fake._answer(self, "POST")

            def do_GET(self):
                fake._answer(self, "GET")

            def do_PUT(self):
                fake._answer(self, "PUT")

            def do_DELETE(self):
                fake._answer(self, "DELETE")

            def do_PATCH(self):
                fake._answer(self, "PATCH")

        return Handler

    def _answer(self, request: BaseHTTPRequestHandler, method: str) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        status, body = self._route(method, request.path.split("?")[0], request.headers, raw)
        with self._lock:
            self.requests.append((method, request.path, status))
        data = json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json; charset=utf-8")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def _route(self, method: str, path: str, headers, raw: bytes) -> tuple[int, object]:
        create, listing = _CREATE.match(path), _LIST.match(path)
        if not ((method == "POST" and create) or (method == "GET" and listing)):
            return 404, {"message": "Not Found", "documentation_url": DOCS}
        auth = headers.get("Authorization", "")
        scheme, _, given = auth.partition(" ")
        if not auth:
            return 401, {"message": "Requires authentication", "documentation_url": DOCS}
        if scheme.lower() not in ("bearer", "token") or given != self.token:
            return 401, {"message": "Bad credentials", "documentation_url": DOCS}
        owner, repo, sha = (create or listing).groups()
        slug = f"{owner}/{repo}"
        if slug not in self.repos:
            return 404, {"message": "Not Found", "documentation_url": DOCS}
        if listing:
            return 200, list(reversed(self.statuses.get((slug, sha), [])))
        if not re.fullmatch(r"[0-9a-f]{40}", sha) or (self.commits is not None and sha not in self.commits):
            return 422, {"message": f"No commit found for SHA: {sha}", "documentation_url": DOCS}
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            return 400, {"message": "Problems parsing JSON", "documentation_url": DOCS}
        if not isinstance(body, dict):
            return 400, {"message": "Problems parsing JSON", "documentation_url": DOCS}
        errors = []
        if body.get("state") not in STATES:
            errors.append({"resource": "Status", "code": "custom", "field": "state",
                           "message": "state is not included in the list"})
        if len(body.get("description") or "") > 140:
            errors.append({"resource": "Status", "code": "custom", "field": "description",
                           "message": "description is too long (maximum is 140 characters)"})
        if errors:
            return 422, {"message": "Validation Failed", "errors": errors, "documentation_url": DOCS}
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        number = next(self._ids)
        status = {
            "url": f"{self.url}/repos/{slug}/statuses/{sha}", "id": number, "node_id": f"SC_{number}",
            "state": body["state"], "description": body.get("description"), "target_url": body.get("target_url"),
            "context": body.get("context") or "default", "created_at": now, "updated_at": now,
            "creator": {"login": "pinotage-bot", "id": 1, "type": "Bot"},
        }
        with self._lock:
            self.statuses.setdefault((slug, sha), []).append(status)
        return 201, status
