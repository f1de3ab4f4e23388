"""GitHub: commit statuses (pending, success, failure, error) and the repository webhook.

The caller reads the token (``config.secret("github.token", environ)``) only when a status is to
be sent, so a pull-request build, which reads no credential, never reaches this module.

Every call goes through ``call``, which honours GitHub's rate limits: a 429, or a 403 whose
message says "rate limit", is retried after ``Retry-After`` (or ``x-ratelimit-reset`` once the
primary budget is spent), at most ``RETRIES`` times and never after waiting longer than
``RETRY_WAIT_MAX_S`` for one answer.
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Any, Callable, Mapping

from pipeline.errors import BadInput, GithubError

STATES = ("pending", "success", "failure", "error")
STATUS_CONTEXT = "pinotage"  # the name GitHub shows beside the status
DESCRIPTION_MAX = 140  # GitHub refuses longer descriptions with 422
TIMEOUT_S = 15
RETRIES = 3  # extra attempts after a rate-limited answer
RETRY_WAIT_MAX_S = 90  # a longer Retry-After is not waited for: the call gives up
SECONDARY_WAIT_S = 60  # GitHub: without Retry-After, wait at least a minute
API_VERSION = "2022-11-28"
HOOK_EVENTS = ("pull_request", "push")
HOOK_PATH = "github-webhook/"  # where the Jenkins GitHub plugin receives deliveries
HOOK_SCOPES = ("admin:repo_hook", "write:repo_hook", "repo")  # a classic token's scopes that may write hooks

_SLUG_RE = re.compile(r"github\.com[/:]([^/]+)/([^/]+?)(?:\.git)?/?$")


@dataclasses.dataclass(frozen=True)
class Answer:
    """What GitHub answered: status code, JSON body and the headers Pinotage reads."""

    status: int
    body: Any
    scopes: tuple[str, ...] | None  # X-OAuth-Scopes; None for tokens that carry none (apps, fine-grained)

    @property
    def message(self) -> str:
        return self.body.get("message", "") if isinstance(self.body, dict) else ""


def repo_slug(configured: str, source_url: str) -> str:
    """Return "owner/name": the configured one, else read from a github.com clone URL ("" if neither)."""
    if configured:
        return configured
    match = _SLUG_RE.search(source_url)
    return f"{match.group(1)}/{match.group(2)}" if match else ""


def call(method: str, url: str, *, token: str, body: dict | None = None, what: str,
         sleep: Callable[[float], None] = time.sleep) -> Answer:
    """Make one API call, waiting out rate limits; raise GithubError when GitHub cannot be reached."""
    import requests

    headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
               "X-GitHub-Api-Version": API_VERSION}
    for attempt in range(RETRIES + 1):
        try:
            response = requests.request(method, url, json=body, headers=headers, timeout=TIMEOUT_S)
        except requests.RequestException as e:
            raise GithubError(f"{what}: cannot reach {url.split('/repos/')[0]} ({type(e).__name__})",
                              hint="check github.api_url and the network") from e
        answer = _answer(response)
        wait_s = rate_limit_wait(response.status_code, answer.message, response.headers, time.time())
        if wait_s is None:
            return answer
        if attempt == RETRIES or wait_s > RETRY_WAIT_MAX_S:
            tried = f"{attempt + 1} attempts" if attempt else "1 attempt"
            raise GithubError(f"{what}: GitHub's rate limit still holds after {tried}"
                              f" (it asks to wait {wait_s:.0f} s)", hint="try again later")
        sleep(wait_s)
    raise AssertionError("unreachable")


def rate_limit_wait(status: int, message: str, headers, now: float) -> float | None:
    """Return how long GitHub asks to wait before a retry, or None when the answer is no rate limit."""
    if status not in (403, 429) or (status == 403 and "rate limit" not in message.lower()
                                    and headers.get("x-ratelimit-remaining") != "0"):
        return None
    retry_after = headers.get("Retry-After", "")
    if retry_after.isdigit():
        return float(retry_after)
    reset = headers.get("x-ratelimit-reset", "")
    if headers.get("x-ratelimit-remaining") == "0" and reset.isdigit():
        return max(float(reset) - now, 0.0) + 1
    return float(SECONDARY_WAIT_S)


def refused(answer: Answer, what: str, hints: dict[int, str]) -> GithubError:
    """Describe a refusal in one line; a 401 is always the token's."""
    if answer.status == 401:
        return GithubError(f"{what}: GitHub refused the token (401 {answer.message}):"
                           " PINOTAGE_GITHUB_TOKEN is invalid, expired or revoked")
    return GithubError(f"{what}: {answer.status} {answer.message}".rstrip(), hint=hints.get(answer.status, ""))


# --- commit statuses -----------------------------------------------------------

def report(api_url: str, slug: str, commit: str, state: str, *, token: str, description: str = "",
           target_url: str = "", context: str = STATUS_CONTEXT,
           sleep: Callable[[float], None] = time.sleep) -> None:
    """Create one commit status; raise GithubError with GitHub's own message when refused."""
    if state not in STATES:
        raise ValueError(f"state {state!r} is not one of {', '.join(STATES)}")
    body = {"state": state, "context": context, "description": description[:DESCRIPTION_MAX]}
    if target_url:
        body["target_url"] = target_url
    what = f"GitHub status {state} for {commit[:12]} on {slug}"
    answer = call("POST", f"{api_url.rstrip('/')}/repos/{slug}/statuses/{commit}", token=token, body=body,
                  what=what, sleep=sleep)
    if answer.status != 201:
        raise refused(answer, what, {
            403: "the token lacks the repo:status (or 'Commit statuses: write') permission",
            404: f"no repository {slug!r} visible to this token: check github.repo"
                 + _scope_note(answer, ("repo", "repo:status"))})


# --- pull requests ------------------------------------------------------------------

def pull_state(api_url: str, slug: str, number: str, *, token: str,
               sleep: Callable[[float], None] = time.sleep) -> str:
    """Return a pull request's state as ``preview prune`` needs it: "open", "merged" or "closed"."""
    what = f"GitHub pull request #{number} of {slug}"
    answer = call("GET", f"{api_url.rstrip('/')}/repos/{slug}/pulls/{number}", token=token, what=what, sleep=sleep)
    if answer.status != 200 or not isinstance(answer.body, dict) or answer.body.get("state") not in ("open", "closed"):
        # a 404 may be a token that cannot see the repository: never read as "gone", which would prune
        raise refused(answer, what, {403: "the token cannot read pull requests (Pull requests: read)",
                                     404: f"no such pull request, or {slug!r} is not visible to this token"
                                          + _scope_note(answer, ("repo", "public_repo"))})
    return "merged" if answer.body.get("merged_at") else answer.body["state"]


# --- the repository webhook ------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class HookChange:
    """What ``github hook`` would do: create, update (with the fields that differ) or nothing."""

    action: str  # "create" | "update" | "none"
    url: str
    hook_id: int | None = None
    differs: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        if self.action == "none":
            return [f"webhook {self.url}: up to date (hook {self.hook_id})"]
        if self.action == "create":
            return [f"webhook {self.url}: create (events {', '.join(HOOK_EVENTS)}, content type json, secret set)"]
        return [f"webhook {self.url}: update hook {self.hook_id}: {', '.join(self.differs)}"]


def hook_config(url: str, secret: str) -> dict:
    """Return the webhook body Pinotage wants: push and pull_request, JSON, the shared secret, TLS checked."""
    return {"name": "web", "active": True, "events": list(HOOK_EVENTS),
            "config": {"url": url, "content_type": "json", "secret": secret, "insecure_ssl": "0"}}


def plan_hook(hooks: list[dict], url: str) -> HookChange:
    """Compare the repository's hooks with the wanted one (pure: GitHub's hook list in, decision out).

    GitHub never returns a secret ("********" when one is set), so a hook that has a secret is
    taken to have the right one.
    """
    [found] = [hook for hook in hooks if hook.get("config", {}).get("url") == url][:1] or [None]
    if found is None:
        return HookChange("create", url)
    config = found.get("config", {})
    differs = []
    if sorted(found.get("events", [])) != sorted(HOOK_EVENTS):
        differs.append(f"events {','.join(sorted(found.get('events', [])))} -> {','.join(HOOK_EVENTS)}")
    if config.get("content_type") != "json":
        differs.append(f"content type {config.get('content_type')} -> json")
    if str(config.get("insecure_ssl", "0")) != "0":
        differs.append("insecure_ssl 1 -> 0")
    if not config.get("secret"):
        differs.append("no secret -> secret set")
    if found.get("active") is not True:
        differs.append("inactive -> active")
    return HookChange("update" if differs else "none", url, found.get("id"), tuple(differs))


def ensure_hook(api_url: str, slug: str, *, token: str, url: str, secret: str, dry_run: bool,
                sleep: Callable[[float], None] = time.sleep) -> HookChange:
    """Create or update the repository webhook so it matches ``hook_config``; write nothing when it does."""
    base = f"{api_url.rstrip('/')}/repos/{slug}/hooks"
    what = f"GitHub webhook on {slug}"
    answer = call("GET", base, token=token, what=what, sleep=sleep)
    _check_hook_scopes(answer, slug)
    if answer.status != 200:
        raise refused(answer, what, {404: f"no repository {slug!r} visible to this token, or the token may not"
                                          " read its hooks: it needs admin:repo_hook and admin rights on it"})
    change = plan_hook(answer.body, url)
    if dry_run or change.action == "none":
        return change
    wanted = hook_config(url, secret)
    if change.action == "create":
        answer = call("POST", base, token=token, body=wanted, what=what, sleep=sleep)
        ok = 201
    else:
        wanted.pop("name")
        answer = call("PATCH", f"{base}/{change.hook_id}", token=token, body=wanted, what=what, sleep=sleep)
        ok = 200
    _check_hook_scopes(answer, slug)
    if answer.status != ok:
        raise refused(answer, what, {403: "the token may not change this repository's hooks (admin rights)"})
    return change


def hook_command(config, environ: Mapping[str, str], *, url: str | None, dry_run: bool) -> list[str]:
    """Run ``pinotage github hook``: read the token, secret and URL, ensure the hook, describe what it did."""
    from pipeline.config import secret as read_secret

    token = read_secret("github.token", environ)
    if not token:
        raise BadInput("PINOTAGE_GITHUB_TOKEN is not set", hint="a token with the admin:repo_hook scope")
    hook_secret = read_secret("github.webhook_secret", environ)
    if not hook_secret and not dry_run:
        raise BadInput("PINOTAGE_GITHUB_WEBHOOK_SECRET is not set",
                       hint="the same secret Jenkins checks deliveries with (docs/jenkins.md)")
    if not config.github.repo:
        raise BadInput("github.repo: not set", hint="--set github.repo=OWNER/NAME")
    if url is None:
        if not config.jenkins.url:
            raise BadInput("jenkins.url: not set, and no --url", hint="--set jenkins.url=https://jenkins.example.com/")
        url = config.jenkins.url.rstrip("/") + "/" + HOOK_PATH
    if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", url):
        raise BadInput(f"--url: {url!r} is not an http(s) URL")
    change = ensure_hook(config.github.api_url, config.github.repo, token=token, url=url, secret=hook_secret or "",
                         dry_run=dry_run)
    lines = change.lines()
    if dry_run and change.action != "none":
        lines = [f"{line} (dry run: nothing written)" for line in lines]
    return lines


def _check_hook_scopes(answer: Answer, slug: str) -> None:
    if answer.scopes is not None and not set(answer.scopes) & set(HOOK_SCOPES):
        granted = ", ".join(answer.scopes) or "no scope"
        raise BadInput(f"github hook: the token grants {granted}, not admin:repo_hook, which setting up"
                       f" the webhook on {slug} needs")


def _scope_note(answer: Answer, needed: tuple[str, ...]) -> str:
    if answer.scopes is None or set(answer.scopes) & set(needed):
        return ""
    return f" (the token grants {', '.join(answer.scopes) or 'no scope'}; it needs {' or '.join(needed)})"


def _answer(response) -> Answer:
    try:
        body = response.json()
    except ValueError:
        body = {"message": response.text[:200]}
    header = response.headers.get("X-OAuth-Scopes")
    scopes = None if header is None else tuple(s.strip() for s in header.split(",") if s.strip())
    return Answer(response.status_code, body, scopes)
