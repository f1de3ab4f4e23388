"""The GitHub area: the token's scopes, the repository's webhook to Jenkins and its last delivery."""

from __future__ import annotations

from typing import Any, Callable, Iterator

from pipeline.doctor import Finding, Probe, Status, Unreachable

AREA = "github"
TIMEOUT_S = 15
# what the classic token's X-OAuth-Scopes must hold: statuses, and reading the webhook
NEEDED_SCOPES = {"commit statuses": ("repo", "repo:status"),
                 "webhooks": ("admin:repo_hook", "write:repo_hook", "read:repo_hook")}


def check(probe: Probe) -> Iterator[Finding]:
    """Yield the GitHub checks for github.repo."""
    from pipeline.config import secret

    found = probe.finding(AREA)
    config = probe.config
    if not config.github.repo:
        yield found("repository", Status.SKIPPED, "github.repo is not set")
        return
    token = secret("github.token", probe.environ)
    if not token:
        raise Unreachable("token", "PINOTAGE_GITHUB_TOKEN is not set", "export a token with repo:status and"
                          " admin:repo_hook (or a GitHub App's installation token)")
    api = config.github.api_url.rstrip("/")
    slug = config.github.repo
    response = _get(f"{api}/repos/{slug}", token)
    if response.status_code == 401:
        raise Unreachable("token", "GitHub refused PINOTAGE_GITHUB_TOKEN (HTTP 401)", "is the token current?")
    if response.status_code == 404:
        raise Unreachable("token", f"no repository {slug} visible to this token (HTTP 404)",
                          "check github.repo, and that the token may read the repository")
    if response.status_code != 200:
        raise Unreachable("token", f"GitHub answered HTTP {response.status_code} for repository {slug}")
    yield _scopes(found, response.headers.get("X-OAuth-Scopes"))
    yield from _webhook(found, api, slug, token, config.jenkins.url)


def hook_url(jenkins_url: str) -> str:
    """Return the address the GitHub plugin receives pushes at."""
    return f"{jenkins_url.rstrip('/')}/github-webhook/"


def _scopes(found: Callable[..., Finding], header: str | None) -> Finding:
    if header is None:
        return found("token scopes", Status.SKIPPED, "a fine-grained or app token: GitHub lists no scopes")
    granted = {scope.strip() for scope in header.split(",") if scope.strip()}
    missing = [need for need, any_of in NEEDED_SCOPES.items() if not granted & set(any_of)]
    if missing:
        return found("token scopes", Status.FAIL, f"the token's scopes ({', '.join(sorted(granted)) or 'none'})"
                     f" do not cover {' and '.join(missing)}", "grant repo:status and admin:repo_hook")
    return found("token scopes", Status.OK, ", ".join(sorted(granted)))


def _webhook(found: Callable[..., Finding], api: str, slug: str, token: str, jenkins_url: str) -> Iterator[Finding]:
    if not jenkins_url:
        yield found("webhook", Status.SKIPPED, "jenkins.url is not set: no address to compare the hook with")
        return
    response = _get(f"{api}/repos/{slug}/hooks", token)
    if response.status_code in (403, 404):
        yield found("webhook", Status.FAIL, f"the token may not read {slug}'s webhooks (HTTP {response.status_code})",
                    "grant admin:repo_hook (or the app's Webhooks: read)")
        return
    hooks = response.json() if response.status_code == 200 else []
    wanted = hook_url(jenkins_url)
    ours = [h for h in hooks if (h.get("config") or {}).get("url") == wanted]
    if not ours:
        elsewhere = [(h.get("config") or {}).get("url", "?") for h in hooks
                     if "/github-webhook/" in (h.get("config") or {}).get("url", "")]
        detail = f"points at {', '.join(elsewhere)}, not {wanted}" if elsewhere else f"no webhook to {wanted}"
        yield found("webhook", Status.FAIL, detail, "run 'pinotage github hook'")
        return
    hook = ours[0]
    events = set(hook.get("events") or ())
    if not hook.get("active") or not {"push", "pull_request"} <= events:
        yield found("webhook", Status.FAIL, f"hook {hook.get('id')} is {'active' if hook.get('active') else 'inactive'}"
                    f" with events {', '.join(sorted(events)) or 'none'}", "run 'pinotage github hook'")
    else:
        yield found("webhook", Status.OK, f"hook {hook.get('id')} sends push and pull_request to {wanted}")
    yield _last_delivery(found, hook.get("last_response") or {})


def _last_delivery(found: Callable[..., Finding], last: dict[str, Any]) -> Finding:
    code = last.get("code")
    if code is None:
        return found("last delivery", Status.SKIPPED, "no delivery yet")
    if 200 <= int(code) < 300:
        return found("last delivery", Status.OK, f"HTTP {code}")
    return found("last delivery", Status.FAIL, f"Jenkins answered the last delivery with HTTP {code}"
                 f" {last.get('message') or ''}".rstrip(),
                 "check the hook secret and that /github-webhook/ reaches Jenkins (docs/jenkins.md)")


def _get(url: str, token: str) -> Any:
    import requests

    try:
        return requests.get(url, timeout=TIMEOUT_S, headers={
            "Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28"})
    except requests.RequestException as e:
        raise Unreachable("token", f"cannot reach {url.split('/repos/')[0]} ({type(e).__name__})",
                          "check github.api_url and the network") from None
