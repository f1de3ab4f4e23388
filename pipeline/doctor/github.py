"""The GitHub area: the token's scopes, the repository's webhook to Jenkins and its last delivery.

One read, the repository's hook list, answers all three: GitHub sends the token's scopes with
every answer, and each hook carries its ``last_response``. Whether the hook is what Pinotage
wants is decided by the same pure function ``pinotage github hook`` uses.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from pipeline.doctor import Finding, Probe, Status, Unreachable

AREA = "github"
# what a classic token's X-OAuth-Scopes must hold, and the scopes that grant it
NEEDED_SCOPES = {"commit statuses": ("repo", "repo:status"),
                 "the webhook": ("admin:repo_hook", "write:repo_hook", "read:repo_hook", "repo")}


def check(probe: Probe) -> Iterator[Finding]:
    """Yield the GitHub checks for github.repo."""
    from pipeline import github
    from pipeline.config import secret
    from pipeline.errors import GithubError

    found = probe.finding(AREA)
    config = probe.config
    if not config.github.repo:
        yield found("repository", Status.SKIPPED, "github.repo is not set")
        return
    token = secret("github.token", probe.environ)
    if not token:
        raise Unreachable("token", "PINOTAGE_GITHUB_TOKEN is not set",
                          "export a token with repo:status and admin:repo_hook")
    slug = config.github.repo
    try:
        answer = github.call("GET", f"{config.github.api_url.rstrip('/')}/repos/{slug}/hooks", token=token,
                             what=f"GitHub hooks of {slug}")
    except GithubError as e:
        raise Unreachable("token", e.message, e.hint) from None
    if answer.status == 401:
        raise Unreachable("token", f"GitHub refused PINOTAGE_GITHUB_TOKEN (401 {answer.message})",
                          "is the token current?")
    yield _scopes(found, answer.scopes)
    if answer.status != 200:
        yield found("webhook", Status.FAIL, f"GitHub answered {answer.status} {answer.message} for {slug}'s hooks",
                    "the token needs admin:repo_hook and admin rights on the repository")
        return
    if not config.jenkins.url:
        yield found("webhook", Status.SKIPPED, "jenkins.url is not set: no address to compare the hook with")
        return
    yield from _webhook(found, answer.body, config.jenkins.url.rstrip("/") + "/" + github.HOOK_PATH)


def _scopes(found: Callable[..., Finding], scopes: tuple[str, ...] | None) -> Finding:
    if scopes is None:
        return found("token scopes", Status.SKIPPED, "a fine-grained or app token: GitHub lists no scopes")
    missing = [need for need, any_of in NEEDED_SCOPES.items() if not set(scopes) & set(any_of)]
    if missing:
        return found("token scopes", Status.FAIL, f"the token grants {', '.join(scopes) or 'no scope'}, nothing"
                     f" that covers {' or '.join(missing)}", "grant repo:status and admin:repo_hook")
    return found("token scopes", Status.OK, ", ".join(scopes))


def _webhook(found: Callable[..., Finding], hooks: list[dict], url: str) -> Iterator[Finding]:
    from pipeline import github

    change = github.plan_hook(hooks, url)
    if change.action == "create":
        elsewhere = [h.get("config", {}).get("url", "?") for h in hooks
                     if github.HOOK_PATH in h.get("config", {}).get("url", "")]
        yield found("webhook", Status.FAIL, f"points at {', '.join(elsewhere)}, not {url}" if elsewhere
                    else f"no webhook sends to {url}", "run 'pinotage github hook'")
        return
    if change.action == "update":
        yield found("webhook", Status.FAIL, f"hook {change.hook_id} differs: {'; '.join(change.differs)}",
                    "run 'pinotage github hook'")
    else:
        yield found("webhook", Status.OK, f"hook {change.hook_id} sends push and pull_request to {url}")
    hook = next(h for h in hooks if h.get("id") == change.hook_id)
    yield _last_delivery(found, hook.get("last_response") or {})


def _last_delivery(found: Callable[..., Finding], last: dict[str, Any]) -> Finding:
    if last.get("status") in (None, "unused"):
        return found("last delivery", Status.SKIPPED, "no delivery yet")
    code = last.get("code")
    if code and 200 <= int(code) < 300:
        return found("last delivery", Status.OK, f"Jenkins answered {code}")
    answer = f"Jenkins answered {code}" if code else "no answer"
    return found("last delivery", Status.FAIL, f"the last delivery failed: {answer} ({last.get('message') or '?'})",
                 "check the webhook secret and that /github-webhook/ reaches Jenkins (docs/jenkins.md)")
