"""The GitHub API double's resources: commit statuses, repository webhooks and their deliveries, pull requests.

Each handler validates a request body as GitHub does: 422 "Validation Failed" with the field at
fault, 422 "Invalid request" for a key the route does not take. A hook's secret is never returned
(GitHub shows "********"); deliveries record what the receiving end answered, which GitHub shows
as the hook's ``last_response`` and under ``/hooks/{id}/deliveries``.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import hmac
import itertools
import json
import re
import ssl
import urllib.error
import urllib.request
import uuid
from typing import Callable

DOCS = "https://docs.github.com/rest"
STATES = ("error", "failure", "pending", "success")
# The events a repository webhook may subscribe to that Pinotage could ask for ("*" is all).
EVENTS = ("*", "push", "pull_request", "pull_request_review", "create", "delete", "ping", "release", "status",
          "check_run", "check_suite", "issues", "issue_comment", "workflow_run")
HOOK_READ = ("admin:repo_hook", "read:repo_hook", "repo", "write:repo_hook")
HOOK_WRITE = ("admin:repo_hook", "repo", "write:repo_hook")
STATUS_SCOPES = ("repo", "repo:status")
PULL_SCOPES = ("repo", "public_repo")
HOOK_KEYS = {"name", "config", "events", "active"}
HOOK_PATCH_KEYS = {"config", "events", "add_events", "remove_events", "active"}
CONFIG_KEYS = {"url", "content_type", "secret", "insecure_ssl"}
STATUS_KEYS = {"state", "target_url", "description", "context"}
_SLUG = r"([^/]+)/([^/]+)"


@dataclasses.dataclass(frozen=True)
class Route:
    slug: str
    params: tuple[str, ...]
    accepted: tuple[str, ...]
    handler: Callable


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _invalid(message: str, **fields) -> tuple[int, dict]:
    return 422, {"message": message, **fields, "documentation_url": DOCS}


def _failed(resource: str, field: str, message: str) -> tuple[int, dict]:
    return _invalid("Validation Failed",
                    errors=[{"resource": resource, "code": "custom", "field": field, "message": message}])


def _unknown_keys(body: dict, allowed: set[str]) -> tuple[int, dict] | None:
    extra = sorted(set(body) - allowed)
    return _invalid(f'Invalid request.\n\n"{extra[0]}" is not a permitted key.') if extra else None


class Store:
    """What the double holds: statuses by (slug, sha), hooks by slug, deliveries by hook id."""

    def __init__(self, *, commits: set[str] | None):
        self.commits = commits  # None: any 40-hex SHA exists
        self.statuses: dict[tuple[str, str], list[dict]] = {}
        self.hooks: dict[str, list[dict]] = {}
        self.secrets: dict[int, str] = {}
        self.deliveries: dict[int, list[dict]] = {}
        self.pulls: dict[tuple[str, int], dict] = {}
        self.base_url = ""
        self.deliver_cafile: str | None = None  # the CA deliveries trust (GitHub checks TLS: insecure_ssl "0")
        self._ids = itertools.count(1)

    # --- statuses ----------------------------------------------------------------

    def create_status(self, route: Route, body: dict) -> tuple[int, object]:
        [sha] = route.params
        if not re.fullmatch(r"[0-9a-f]{40}", sha) or (self.commits is not None and sha not in self.commits):
            return _invalid(f"No commit found for SHA: {sha}")
        problem = _unknown_keys(body, STATUS_KEYS)
        if problem:
            return problem
        if body.get("state") not in STATES:
            return _failed("Status", "state", "state is not included in the list")
        if len(body.get("description") or "") > 140:
            return _failed("Status", "description", "description is too long (maximum is 140 characters)")
        number, now = next(self._ids), _now()
        status = {"url": f"{self.base_url}/repos/{route.slug}/statuses/{sha}", "id": number, "node_id": f"SC_{number}",
                  "state": body["state"], "description": body.get("description"),
                  "target_url": body.get("target_url"), "context": body.get("context") or "default",
                  "created_at": now, "updated_at": now, "creator": {"login": "pinotage-bot", "id": 1, "type": "Bot"}}
        self.statuses.setdefault((route.slug, sha), []).append(status)
        return 201, status

    def list_statuses(self, route: Route, body: None) -> tuple[int, object]:
        return 200, list(reversed(self.statuses.get((route.slug, route.params[0]), [])))

    # --- pull requests ----------------------------------------------------------------

    def open_pull(self, slug: str, number: int, head_sha: str, *, head_ref: str, fork: str = "") -> dict:
        """Open a pull request from a branch of the repository, or of ``fork`` ("owner/name")."""
        now = _now()
        head_repo = fork or slug
        pull = {"url": f"{self.base_url}/repos/{slug}/pulls/{number}", "id": 1000 + number, "node_id": f"PR_{number}",
                "number": number, "state": "open", "locked": False, "title": f"change {number}",
                "user": {"login": head_repo.split("/")[0], "type": "User"}, "created_at": now, "updated_at": now,
                "closed_at": None, "merged_at": None, "merged": False, "draft": False,
                "head": {"label": f"{head_repo.split('/')[0]}:{head_ref}", "ref": head_ref, "sha": head_sha,
                         "repo": {"full_name": head_repo, "fork": bool(fork)}},
                "base": {"label": f"{slug.split('/')[0]}:master", "ref": "master", "sha": "0" * 40,
                         "repo": {"full_name": slug, "fork": False}}}
        self.pulls[(slug, number)] = pull
        return pull

    def close_pull(self, slug: str, number: int, *, merged: bool = False) -> None:
        """Close a pull request, merging it or not, as the web interface does."""
        pull, now = self.pulls[(slug, number)], _now()
        pull.update(state="closed", closed_at=now, updated_at=now, merged=merged, merged_at=now if merged else None)

    def get_pull(self, route: Route, body: None) -> tuple[int, object]:
        number = int(route.params[0]) if route.params[0].isdigit() else -1
        pull = self.pulls.get((route.slug, number))
        return (200, pull) if pull else (404, {"message": "Not Found", "documentation_url": DOCS})

    # --- hooks ---------------------------------------------------------------------

    def list_hooks(self, route: Route, body: None) -> tuple[int, object]:
        return 200, [self._shown(hook) for hook in self.hooks.get(route.slug, [])]

    def get_hook(self, route: Route, body: None) -> tuple[int, object]:
        hook = self._hook(route)
        return (200, self._shown(hook)) if hook else (404, {"message": "Not Found", "documentation_url": DOCS})

    def create_hook(self, route: Route, body: dict) -> tuple[int, object]:
        problem = _unknown_keys(body, HOOK_KEYS) or self._check_fields(body, creating=True)
        if problem:
            return problem
        config = body["config"]
        if any(h["config"]["url"] == config["url"] for h in self.hooks.get(route.slug, [])):
            return _failed("Hook", "base", "Hook already exists on this repository")
        number, now = next(self._ids), _now()
        hook = {"type": "Repository", "id": number, "name": "web", "active": body.get("active", True),
                "events": sorted(set(body.get("events", ["push"]))), "config": {}, "created_at": now,
                "updated_at": now, "url": f"{self.base_url}/repos/{route.slug}/hooks/{number}",
                "last_response": {"code": None, "status": "unused", "message": None}}
        self._apply_config(hook, config)
        self.hooks.setdefault(route.slug, []).append(hook)
        self.deliveries[number] = []
        return 201, self._shown(hook)

    def update_hook(self, route: Route, body: dict) -> tuple[int, object]:
        hook = self._hook(route)
        if hook is None:
            return 404, {"message": "Not Found", "documentation_url": DOCS}
        problem = _unknown_keys(body, HOOK_PATCH_KEYS) or self._check_fields(body, creating=False)
        if problem:
            return problem
        if "config" in body:
            hook["config"] = {}
            self.secrets.pop(hook["id"], None)
            self._apply_config(hook, body["config"])
        events = set(body.get("events", hook["events"])) | set(body.get("add_events", []))
        hook["events"] = sorted(events - set(body.get("remove_events", [])))
        hook["active"] = body.get("active", hook["active"])
        hook["updated_at"] = _now()
        return 200, self._shown(hook)

    def list_deliveries(self, route: Route, body: None) -> tuple[int, object]:
        hook = self._hook(route)
        if hook is None:
            return 404, {"message": "Not Found", "documentation_url": DOCS}
        return 200, list(reversed(self.deliveries[hook["id"]]))

    def deliver(self, slug: str, hook_id: int, event: str, payload: dict) -> int:
        """POST an event to a hook's URL, signed with its secret; record the answer as GitHub does."""
        [hook] = [h for h in self.hooks[slug] if h["id"] == hook_id]
        data = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "X-GitHub-Event": event, "User-Agent": "GitHub-Hookshot/fake",
                   "X-GitHub-Delivery": str(uuid.uuid4()), "X-GitHub-Hook-ID": str(hook_id)}
        secret = self.secrets.get(hook_id)
        if secret:
            digest = hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()
            headers["X-Hub-Signature-256"] = f"sha256={digest}"
        request = urllib.request.Request(hook["config"]["url"], data=data, headers=headers, method="POST")
        try:
            tls = ssl.create_default_context(cafile=self.deliver_cafile)
            if hook["config"]["insecure_ssl"] == "1":
                tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
            with urllib.request.urlopen(request, timeout=10, context=tls) as answer:
                code = answer.status
        except urllib.error.HTTPError as e:
            code = e.code
        except OSError:
            code = 0  # GitHub shows "failed to connect to host"
        status = "OK" if 200 <= code < 300 else ("failed to connect to host" if code == 0 else "Invalid HTTP Response")
        delivery = {"id": next(self._ids), "guid": headers["X-GitHub-Delivery"], "delivered_at": _now(),
                    "redelivery": False, "duration": 0.01, "status": status, "status_code": code,
                    "event": event, "action": payload.get("action"), "installation_id": None, "repository_id": 1}
        self.deliveries[hook_id].append(delivery)
        hook["last_response"] = {"code": code or None, "status": "active" if status == "OK" else "misconfigured",
                                 "message": status}
        return code

    # --- helpers ------------------------------------------------------------------------

    def _hook(self, route: Route) -> dict | None:
        number = int(route.params[0]) if route.params[0].isdigit() else -1
        return next((h for h in self.hooks.get(route.slug, []) if h["id"] == number), None)

    def _shown(self, hook: dict) -> dict:
        shown = json.loads(json.dumps(hook))
        base = hook["url"]
        shown.update(test_url=f"{base}/test", ping_url=f"{base}/pings", deliveries_url=f"{base}/deliveries")
        return shown

    def _apply_config(self, hook: dict, config: dict) -> None:
        hook["config"] = {"url": config["url"], "content_type": config.get("content_type", "form"),
                          "insecure_ssl": str(config.get("insecure_ssl", "0"))}
        if config.get("secret"):
            hook["config"]["secret"] = "********"
            self.secrets[hook["id"]] = config["secret"]

    @staticmethod
    def _check_fields(body: dict, *, creating: bool) -> tuple[int, dict] | None:
        if creating and body.get("name", "web") != "web":
            return _failed("Hook", "name", "name is not included in the list")
        config = body.get("config")
        if creating and not isinstance(config, dict):
            return _invalid('Invalid request.\n\nNo subschema in "anyOf" matched.\n"config" wasn\'t supplied.')
        if config is not None:
            problem = _unknown_keys(config, CONFIG_KEYS)
            if problem:
                return problem
            if not re.match(r"https?://[^/\s]+", str(config.get("url", ""))):
                return _failed("Hook", "url", "url is not a valid URL" if config.get("url") else "url cannot be blank")
            if config.get("content_type", "form") not in ("json", "form"):
                return _failed("Hook", "content_type", "content_type is not included in the list")
            if str(config.get("insecure_ssl", "0")) not in ("0", "1"):
                return _failed("Hook", "insecure_ssl", "insecure_ssl is not included in the list")
        for key in ("events", "add_events", "remove_events"):
            events = body.get(key, [])
            if not isinstance(events, list) or any(e not in EVENTS for e in events):
                return _failed("Hook", key, f"{key} has an unknown event")
        if "active" in body and not isinstance(body["active"], bool):
            return _invalid(f'Invalid request.\n\nFor \'properties/active\', {body["active"]!r} is not a boolean.')
        return None


_ROUTES = [
    ("POST", rf"^/repos/{_SLUG}/statuses/([^/]+)$", STATUS_SCOPES, Store.create_status),
    ("GET", rf"^/repos/{_SLUG}/commits/([^/]+)/statuses$", STATUS_SCOPES, Store.list_statuses),
    ("GET", rf"^/repos/{_SLUG}/pulls/([^/]+)$", PULL_SCOPES, Store.get_pull),
    ("GET", rf"^/repos/{_SLUG}/hooks$", HOOK_READ, Store.list_hooks),
    ("POST", rf"^/repos/{_SLUG}/hooks$", HOOK_WRITE, Store.create_hook),
    ("GET", rf"^/repos/{_SLUG}/hooks/([^/]+)$", HOOK_READ, Store.get_hook),
    ("PATCH", rf"^/repos/{_SLUG}/hooks/([^/]+)$", HOOK_WRITE, Store.update_hook),
    ("GET", rf"^/repos/{_SLUG}/hooks/([^/]+)/deliveries$", HOOK_READ, Store.list_deliveries),
]


def match(method: str, path: str) -> Route | None:
    """Return the route a request names, or None when the double does not know it."""
    for route_method, pattern, accepted, handler in _ROUTES:
        found = re.match(pattern, path)
        if found and route_method == method:
            owner, repo, *params = found.groups()
            return Route(f"{owner}/{repo}", tuple(params), accepted, handler)
    return None
