"""Report a commit status (pending, success, failure, error) to the GitHub commit status API.

The caller reads the token (``config.secret("github.token", environ)``) only when a status is to
be sent, so a pull-request build, which reads no credential, never reaches this module.
"""

from __future__ import annotations

import re

from pipeline.errors import GithubError

STATES = ("pending", "success", "failure", "error")
STATUS_CONTEXT = "pinotage"  # the name GitHub shows beside the status
DESCRIPTION_MAX = 140  # GitHub refuses longer descriptions with 422
TIMEOUT_S = 15

_SLUG_RE = re.compile(r"github\.com[/:]([^/]+)/([^/]+?)(?:\.git)?/?$")


def repo_slug(configured: str, source_url: str) -> str:
    """Return "owner/name": the configured one, else read from a github.com clone URL ("" if neither)."""
    if configured:
        return configured
    match = _SLUG_RE.search(source_url)
    return f"{match.group(1)}/{match.group(2)}" if match else ""


def report(api_url: str, slug: str, commit: str, state: str, *, token: str, description: str = "",
           target_url: str = "", context: str = STATUS_CONTEXT) -> None:
    """Create one commit status; raise GithubError with GitHub's own message when refused."""
    import requests

    if state not in STATES:
        raise ValueError(f"state {state!r} is not one of {', '.join(STATES)}")
    body = {"state": state, "context": context, "description": description[:DESCRIPTION_MAX]}
    if target_url:
        body["target_url"] = target_url
    url = f"{api_url.rstrip('/')}/repos/{slug}/statuses/{commit}"
    try:
        response = requests.post(url, json=body, timeout=TIMEOUT_S, headers={
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        })
    except requests.RequestException as e:
        raise GithubError(f"GitHub status for {commit[:12]}: cannot reach {api_url} ({type(e).__name__})",
                          hint="check github.api_url and the network") from e
    if response.status_code != 201:
        try:
            message = response.json().get("message", "")
        except ValueError:
            message = response.text[:200]
        hint = {401: "PINOTAGE_GITHUB_TOKEN was refused: is it current?",
                403: "the token lacks the repo:status (or 'Commit statuses: write') permission",
                404: f"no repository {slug!r} visible to this token: check github.repo"}.get(response.status_code, "")
        raise GithubError(f"GitHub refused the {state} status for {commit[:12]} on {slug}: "
                          f"{response.status_code} {message}".rstrip(), hint=hint)
