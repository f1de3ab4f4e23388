"""The registry area: the credential logs in, its token grants push and pull, the rate limit left.

Docker Hub (and any registry with a token service) answers ``/v2/`` with a Bearer challenge; the
token service is asked for ``repository:NAME:pull,push`` and grants what the credential may do,
which the token's ``access`` claim lists. A registry with Basic auth (htpasswd) grants every
authenticated user both.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any, Callable, Iterator

from pipeline.doctor import Finding, Probe, Status, Unreachable

AREA = "registry"
TIMEOUT_S = 10
WANTED = ("pull", "push")
_PARAM_RE = re.compile(r'(\w+)="([^"]*)"')


def check(probe: Probe) -> Iterator[Finding]:
    """Yield the login, scope and rate-limit checks for the configured registry."""
    import requests

    from pipeline import registry

    found = probe.finding(AREA)
    config = probe.config
    base = registry.api_base(config.registry.url)
    repository = config.image.repository
    session = requests.Session()
    session.trust_env = not base.startswith("http://")  # plain http is loopback only: no proxy for it
    response = _get(session, f"{base}/v2/")
    if response.status_code == 200:
        yield found("login", Status.OK, f"{base} answers without credentials")
        yield found("push scope", Status.SKIPPED, "the registry asks for no credentials")
        return
    if response.status_code != 401:
        raise Unreachable("login", f"{base}/v2/ answered HTTP {response.status_code}, not a registry's 200 or 401",
                          "check registry.url")
    credentials = registry.read_credentials(config, probe.environ)
    if credentials is None:
        raise Unreachable("login", f"{base} asks for credentials and none are set",
                          "set PINOTAGE_REGISTRY_USER and PINOTAGE_REGISTRY_PASSWORD, or run docker login")
    scheme, params = _challenge(response.headers.get("WWW-Authenticate", ""))
    basic = "Basic " + base64.b64encode(f"{credentials.user}:{credentials.password}".encode()).decode()
    if scheme == "basic":
        answer = _get(session, f"{base}/v2/", headers={"Authorization": basic})
        if answer.status_code != 200:
            raise Unreachable("login", f"{base} refused user {credentials.user} from {credentials.source}"
                              f" (HTTP {answer.status_code})", "check the registry user and password")
        yield found("login", Status.OK, f"user {credentials.user} logs in to {base} (basic auth)")
        yield found("push scope", Status.OK, "basic auth: the registry lets every user who logs in push and pull")
        authorization = basic
    elif scheme == "bearer" and params.get("realm"):
        token = yield from _token(session, found, params, repository, basic, credentials)
        authorization = f"Bearer {token}"
    else:
        raise Unreachable("login", f"{base} asks for an authentication Pinotage does not speak ({scheme or 'none'})")
    yield _rate_limit(session, found, base, repository, authorization)


def _token(session: Any, found: Callable[..., Finding], params: dict[str, str], repository: str,
           basic: str, credentials: Any) -> Iterator[Finding]:
    """Ask the token service for pull and push; yield the login and scope findings; return the token."""
    query = {"scope": f"repository:{repository}:{','.join(WANTED)}"}
    if params.get("service"):
        query["service"] = params["service"]
    response = _get(session, params["realm"], headers={"Authorization": basic}, params=query)
    if response.status_code in (401, 403):
        raise Unreachable("login", f"the token service {params['realm']} refused user {credentials.user} from"
                          f" {credentials.source} (HTTP {response.status_code})",
                          "check the user and the access token (Docker Hub: Account settings > Security)")
    try:
        body = response.json() if response.status_code == 200 else {}
    except ValueError:
        body = {}
    token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
    if not token:
        raise Unreachable("login", f"the token service {params['realm']} answered HTTP {response.status_code}"
                          " without a token")
    yield found("login", Status.OK, f"user {credentials.user} gets a token from {params['realm']}")
    granted = _granted(token, repository)
    if granted is None:
        yield found("push scope", Status.SKIPPED, "the token is opaque: its scope cannot be read")
    elif set(WANTED) <= granted:
        yield found("push scope", Status.OK, f"the token grants {','.join(sorted(granted))} on {repository}")
    else:
        missing = ",".join(sorted(set(WANTED) - granted))
        yield found("push scope", Status.FAIL,
                    f"the token grants {','.join(sorted(granted)) or 'nothing'} on {repository}, not {missing}",
                    "give the access token Read & Write (Docker Hub), or the user push rights on the repository")
    return token


def _granted(token: str, repository: str) -> set[str] | None:
    """Return the actions a JWT's ``access`` claim grants on repository; None for a token that is no JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    access = claims.get("access") if isinstance(claims, dict) else None
    if not isinstance(access, list):
        return None
    return {action for entry in access if isinstance(entry, dict) and entry.get("type") == "repository"
            and entry.get("name") == repository for action in entry.get("actions") or ()}


def _rate_limit(session: Any, found: Callable[..., Finding], base: str, repository: str,
                authorization: str) -> Finding:
    """Report Docker Hub's pull rate-limit headers (a HEAD of a manifest does not count against it)."""
    response = _get(session, f"{base}/v2/{repository}/manifests/latest", method="HEAD",
                    headers={"Authorization": authorization})
    limit, remaining = response.headers.get("ratelimit-limit"), response.headers.get("ratelimit-remaining")
    if not limit:
        return found("rate limit", Status.SKIPPED, "the registry sends no rate-limit headers")
    left = remaining.split(";")[0] if remaining else "?"
    if left.isdigit() and int(left) == 0:
        return found("rate limit", Status.FAIL, f"no pulls left of {limit.split(';')[0]}",
                     "wait for the window to pass, or pull with a paid account")
    return found("rate limit", Status.OK, f"{left} pulls left of {limit.split(';')[0]}")


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.partition(" ")
    return scheme.lower(), dict(_PARAM_RE.findall(rest))


def _get(session: Any, url: str, *, method: str = "GET", **kwargs: Any) -> Any:
    import requests

    try:
        return session.request(method, url, timeout=TIMEOUT_S, **kwargs)
    except requests.RequestException as e:
        raise Unreachable("login", f"{url.split('?')[0]} does not answer ({type(e).__name__})",
                          "check registry.url and that the registry is up") from None
