"""The GitHub API double's HTTP side: token auth, the scopes a token grants, rate limits, routing.

It answers like api.github.com for what Pinotage calls: the same status codes, headers and JSON.
- Auth: ``Authorization: Bearer|token <token>``; none gives 401 "Requires authentication", a
  wrong one 401 "Bad credentials".
- Scopes (a classic token): every answer carries ``X-OAuth-Scopes`` (what the token grants) and
  ``X-Accepted-OAuth-Scopes`` (what the route checks for). A token without an accepted scope
  gets 404 "Not Found", as GitHub hides what a token may not see.
- Rate limits: every authenticated answer carries the ``x-ratelimit-*`` headers of the token's
  primary budget; an exhausted budget answers 403 "API rate limit exceeded". ``throttle()``
  makes the next requests meet a secondary rate limit (403 with its message, or 429) with a
  ``Retry-After``; a request that comes back before that time is throttled again and counted in
  ``early_retries``.
- A route, method, API version or body field it does not know is refused (404, 400, 422).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.fakes.github import resources

DOCS = resources.DOCS
API_VERSIONS = ("2022-11-28",)
PRIMARY_LIMIT = 5000  # requests an hour for an authenticated token
# What a granted scope implies (GitHub's scope hierarchy, for the scopes the routes check).
IMPLIED = {"repo": {"repo:status", "public_repo"},
           "admin:repo_hook": {"write:repo_hook", "read:repo_hook"},
           "write:repo_hook": {"read:repo_hook"}}
SECONDARY_MESSAGE = ("You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
                     " If you reach out to GitHub Support for help, please include the request ID 0000:FAKE.")


@dataclasses.dataclass(frozen=True)
class Request:
    """One request the double answered."""

    method: str
    path: str
    status: int
    at: float  # time.monotonic() when it arrived


@dataclasses.dataclass
class _Throttle:
    status: int  # 403 or 429
    retry_after_s: int
    remaining: int  # how many more requests meet it
    until: float = 0.0  # monotonic time before which a retry is early


class FakeGithub:
    """Serve statuses and hooks for the given repositories; keep what it was sent.

    ``scopes`` are those the token grants (a classic personal access token).
    """

    def __init__(self, *, token: str, repos: tuple[str, ...], commits: set[str] | None = None,
                 scopes: tuple[str, ...] = ("repo", "admin:repo_hook")):
        self.token = token
        self.scopes = tuple(scopes)
        self.repos = set(repos)
        self.store = resources.Store(commits=commits)
        self.requests: list[Request] = []
        self.early_retries = 0
        self.budget = PRIMARY_LIMIT
        self.reset_at = int(time.time()) + 3600
        self._throttles: list[_Throttle] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self.store.base_url = self.url

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "FakeGithub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- what tests read and arrange --------------------------------------------

    @property
    def statuses(self) -> dict[tuple[str, str], list[dict]]:
        return self.store.statuses

    @property
    def hooks(self) -> dict[str, list[dict]]:
        return self.store.hooks

    def states(self, slug: str, sha: str) -> list[str]:
        """Return the states created for a commit, oldest first."""
        return [s["state"] for s in self.statuses.get((slug, sha), [])]

    def writes(self) -> list[Request]:
        """Return the requests that could change something (POST, PATCH, PUT, DELETE)."""
        return [r for r in self.requests if r.method != "GET"]

    def throttle(self, *, retry_after_s: int, status: int = 403, times: int = 1) -> None:
        """Make the next ``times`` requests meet a secondary rate limit asking to wait ``retry_after_s``."""
        assert status in (403, 429)
        self._throttles.append(_Throttle(status, retry_after_s, times))

    def open_pull(self, slug: str, number: int, head_sha: str, *, head_ref: str = "change", fork: str = "") -> dict:
        """Open pull request ``number`` from a branch of the repository, or of ``fork``."""
        return self.store.open_pull(slug, number, head_sha, head_ref=head_ref, fork=fork)

    def close_pull(self, slug: str, number: int, *, merged: bool = False) -> None:
        self.store.close_pull(slug, number, merged=merged)

    def deliver(self, slug: str, hook_id: int, event: str, payload: dict) -> int:
        """Deliver an event to a hook as GitHub does (signed when it has a secret); return the HTTP status."""
        return self.store.deliver(slug, hook_id, event, payload)

    # --- the server ------------------------------------------------------------

    def answer(self, request: BaseHTTPRequestHandler, method: str) -> None:
        arrived = time.monotonic()
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        path = request.path.split("?")[0]
        headers: dict[str, str] = {}
        status, body = self._route(method, path, request.headers, raw, headers, arrived)
        with self._lock:
            self.requests.append(Request(method, request.path, status, arrived))
        data = json.dumps(body).encode() if body is not None else b""
        request.send_response(status)
        request.send_header("Content-Type", "application/json; charset=utf-8")
        for name, value in headers.items():
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def _route(self, method: str, path: str, headers, raw: bytes, out: dict[str, str],
               arrived: float) -> tuple[int, object]:
        version = headers.get("X-GitHub-Api-Version")
        if version is not None and version not in API_VERSIONS:
            return 400, {"message": f"API version {version!r} is not supported.", "documentation_url": DOCS}
        route = resources.match(method, path)
        if route is None:
            return 404, {"message": "Not Found", "documentation_url": DOCS}
        refused = self._authenticate(headers, out)
        if refused:
            return refused
        limited = self._rate_limit(out, arrived)
        if limited:
            return limited
        out["X-Accepted-OAuth-Scopes"] = ", ".join(route.accepted)
        granted = set(self.scopes).union(*(IMPLIED.get(s, set()) for s in self.scopes))
        if route.slug not in self.repos or not granted & set(route.accepted):
            return 404, {"message": "Not Found", "documentation_url": DOCS}
        body = None
        if method in ("POST", "PATCH"):
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                return 400, {"message": "Problems parsing JSON", "documentation_url": DOCS}
            if not isinstance(body, dict):
                return 400, {"message": "Problems parsing JSON", "documentation_url": DOCS}
        with self._lock:
            return route.handler(self.store, route, body)

    def _authenticate(self, headers, out: dict[str, str]) -> tuple[int, object] | None:
        auth = headers.get("Authorization", "")
        scheme, _, given = auth.partition(" ")
        if not auth:
            return 401, {"message": "Requires authentication", "documentation_url": DOCS}
        if scheme.lower() not in ("bearer", "token") or given != self.token:
            return 401, {"message": "Bad credentials", "documentation_url": DOCS}
        out["X-OAuth-Scopes"] = ", ".join(self.scopes)
        return None

    def _rate_limit(self, out: dict[str, str], arrived: float) -> tuple[int, object] | None:
        with self._lock:
            self.budget = max(self.budget - 1, -1)
            out.update({"x-ratelimit-limit": str(PRIMARY_LIMIT), "x-ratelimit-remaining": str(max(self.budget, 0)),
                        "x-ratelimit-used": str(PRIMARY_LIMIT - max(self.budget, 0)),
                        "x-ratelimit-reset": str(self.reset_at), "x-ratelimit-resource": "core"})
            if self.budget < 0:
                return 403, {"message": "API rate limit exceeded for user ID 1.",
                             "documentation_url": DOCS + "/using-the-rest-api/rate-limits-for-the-rest-api"}
            active = next((t for t in self._throttles if arrived < t.until), None)
            if active is not None:
                self.early_retries += 1
            else:
                active = next((t for t in self._throttles if t.remaining > 0), None)
                if active is None:
                    return None
                active.remaining -= 1
                active.until = arrived + active.retry_after_s
            out["Retry-After"] = str(max(1, round(active.until - arrived)))
            return active.status, {"message": SECONDARY_MESSAGE,
                                   "documentation_url": DOCS + "/overview/rate-limits-for-the-rest-api"}


def _handler(fake: FakeGithub):
    class Handler(BaseHTTPRequestHandler):
        disable_nagle_algorithm = True  # as GitHub's servers: no delayed-ACK stall between headers and body

        def log_message(self, *args):  # keep test output clean
            pass

        def do_GET(self):
            fake.answer(self, "GET")

        def do_POST(self):
            fake.answer(self, "POST")

        def do_PATCH(self):
            fake.answer(self, "PATCH")

        def do_PUT(self):
            fake.answer(self, "PUT")

        def do_DELETE(self):
            fake.answer(self, "DELETE")

    return Handler
