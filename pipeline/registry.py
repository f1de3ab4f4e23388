"""The registry v2 HTTP API: does ``repository:tag`` exist, and its digest; more tags for a pushed
manifest; the credentials to ask with.

The registry is asked directly (not the local engine, whose cache says nothing about what
the registry holds). Authentication follows the registry's challenge: ``Basic`` sends the
credentials, ``Bearer`` trades them at the named realm for a token scoped to the repository.

Credentials come from PINOTAGE_REGISTRY_USER / PINOTAGE_REGISTRY_PASSWORD, else from a docker
config file (``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``, credential helpers
included). They live in memory only: never printed (the password is left out of ``repr``),
never written to a file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import os
import re
from typing import Any, Iterable, Mapping

from pipeline.errors import AuthError, BadInput, RegistryError

REQUEST_TIMEOUT_S = 10
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_CHALLENGE_PARAM_RE = re.compile(r'(\w+)="([^"]*)"')
_DOCKER_HUB_HOSTS = ("docker.io", "index.docker.io", "registry-1.docker.io")
DOCKER_HUB_KEY = "https://index.docker.io/v1/"  # the key `docker login` writes for Docker Hub


@dataclasses.dataclass(frozen=True)
class Credentials:
    """A registry user and password; the password never shows in repr or in messages."""

    user: str
    password: str = dataclasses.field(repr=False)
    source: str = ""  # where they came from, for messages: "env PINOTAGE_REGISTRY_PASSWORD", a file

    def auth_config(self) -> dict[str, str]:
        """Return the docker SDK's auth_config for a push."""
        return {"username": self.user, "password": self.password}


def read_credentials(config: Any, environ: Mapping[str, str]) -> Credentials | None:
    """Read the registry credentials, from the environment first, else from a docker config file."""
    from pipeline.config import SECRETS, secret

    password = secret("registry.password", environ)
    if password:
        if not config.registry.user:
            raise BadInput(f"env {SECRETS['registry.password']} is set but registry.user is empty",
                           hint="set PINOTAGE_REGISTRY_USER too")
        return Credentials(config.registry.user, password, f"env {SECRETS['registry.password']}")
    return _from_docker_config(registry_host(config.registry.url), environ)


def split_name(name: str) -> tuple[str, str]:
    """Split an image name into its registry and repository, as the docker CLI reads a reference.

    The first part is a registry when it has a dot or a port, or is ``localhost``; otherwise the
    name is Docker Hub's, where a one-part name lives under ``library/``.
    """
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return "docker.io", name if rest else f"library/{name}"


def registry_host(url: str) -> str:
    """Return the host[:port] of a registry setting such as ``127.0.0.1:5000`` or ``https://r.example``."""
    return url.split("://", 1)[-1].split("/", 1)[0]


def config_key(url: str) -> str:
    """Return the key a docker config file holds this registry's login under (as docker login writes it)."""
    host = registry_host(url)
    return DOCKER_HUB_KEY if host in _DOCKER_HUB_HOSTS else host


def api_base(url: str) -> str:
    """Return the registry's API root: http for loopback (as Docker does), https elsewhere."""
    if "://" in url:
        return url.rstrip("/")
    host = registry_host(url)
    if host in _DOCKER_HUB_HOSTS:
        return "https://registry-1.docker.io"
    hostname = host.rsplit(":", 1)[0].strip("[]") if host.count(":") <= 1 or host.startswith("[") else host
    return f"{'http' if _is_loopback(hostname) else 'https'}://{host}"


class RegistryClient:
    """Ask one registry about manifests, authenticating the way its challenge says.

    ``actions`` is what a token is asked for: ``pull`` to read, ``pull,push`` to write tags.
    """

    def __init__(self, url: str, credentials: Credentials | None = None, *,
                 timeout_s: float = REQUEST_TIMEOUT_S, session: Any = None, actions: str = "pull"):
        import requests

        self.base = api_base(url)
        self.credentials = credentials
        self.actions = actions
        self.timeout_s = timeout_s
        self.session = session or requests.Session()
        self._authorization: dict[str, str] = {}  # repository -> Authorization header value

    def manifest_digest(self, repository: str, tag: str) -> str | None:
        """Return the digest of repository:tag, or None when the registry does not hold it."""
        path = f"/v2/{repository}/manifests/{tag}"
        response = self._request("HEAD", path, repository)
        if response.status_code == 404:
            return None
        self._raise_for(response, f"{repository}:{tag}")
        digest = response.headers.get("Docker-Content-Digest", "")
        if digest:
            return digest
        # Not every registry sends the digest header: hash the manifest as it is served.
        response = self._request("GET", path, repository)
        self._raise_for(response, f"{repository}:{tag}")
        return "sha256:" + hashlib.sha256(response.content).hexdigest()

    def add_tags(self, repository: str, digest: str, tags: Iterable[str]) -> None:
        """Give the pushed manifest ``digest`` more tags: the same bytes put under each name.

        Every tag then names the very manifest ``digest`` names; the layers are not sent again.
        """
        what = f"{repository}@{digest}"
        response = self._request("GET", f"/v2/{repository}/manifests/{digest}", repository)
        self._raise_for(response, what)
        body, media_type = response.content, response.headers.get("Content-Type", "")
        if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
            raise RegistryError(f"registry {self.base} served {what} with other content than its digest names")
        for tag in tags:
            put = self._request("PUT", f"/v2/{repository}/manifests/{tag}", repository, body=body,
                                content_type=media_type)
            self._raise_for(put, f"{repository}:{tag}", ok=(201,))
            named = put.headers.get("Docker-Content-Digest", digest)
            if named != digest:
                raise RegistryError(f"registry {self.base} stored {repository}:{tag} as {named}, not {digest}")

    # --- internals ---------------------------------------------------------

    def _request(self, method: str, path: str, repository: str, *, body: bytes | None = None,
                 content_type: str = "") -> Any:
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        if content_type:
            headers["Content-Type"] = content_type
        if repository in self._authorization:
            headers["Authorization"] = self._authorization[repository]
        response = self._send(method, path, headers, data=body)
        if response.status_code != 401 or "Authorization" in headers:
            return response
        self._authorization[repository] = self._authorize(response.headers.get("WWW-Authenticate", ""),
                                                          repository)
        headers["Authorization"] = self._authorization[repository]
        return self._send(method, path, headers, data=body)

    def _send(self, method: str, url_or_path: str, headers: dict[str, str], **kwargs: Any) -> Any:
        import requests

        url = url_or_path if "://" in url_or_path else self.base + url_or_path
        try:
            return self.session.request(method, url, headers=headers, timeout=self.timeout_s,
                                        allow_redirects=True, **kwargs)
        except requests.RequestException as e:
            raise RegistryError(f"registry {self.base} does not answer: {type(e).__name__}",
                                hint="check registry.url and that the registry is up") from None

    def _authorize(self, challenge: str, repository: str) -> str:
        """Answer a 401 challenge; return the Authorization header to retry with."""
        scheme, _, params_text = challenge.partition(" ")
        params = dict(_CHALLENGE_PARAM_RE.findall(params_text))
        if self.credentials is None:
            raise AuthError(f"registry {self.base} asks for credentials and none are set",
                            hint="set PINOTAGE_REGISTRY_USER and PINOTAGE_REGISTRY_PASSWORD, or log in with docker")
        if scheme.lower() == "basic":
            return _basic(self.credentials)
        if scheme.lower() != "bearer" or "realm" not in params:
            raise RegistryError(f"registry {self.base} asks for an authentication it does not name"
                                f" ({scheme or 'no challenge'})")
        query = {"scope": f"repository:{repository}:{self.actions}"}
        if params.get("service"):
            query["service"] = params["service"]
        response = self._send("GET", params["realm"], {"Authorization": _basic(self.credentials)}, params=query)
        if response.status_code in (401, 403):
            raise AuthError(f"registry {self.base} refused the credentials from {self.credentials.source}"
                            f" (HTTP {response.status_code})", hint="check the registry user and password")
        if response.status_code != 200:
            raise RegistryError(f"registry token service answered HTTP {response.status_code}")
        body = response.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RegistryError("registry token service answered without a token")
        return f"Bearer {token}"

    def _raise_for(self, response: Any, what: str, *, ok: tuple[int, ...] = (200,)) -> None:
        if response.status_code in ok:
            return
        if response.status_code in (401, 403):
            source = self.credentials.source if self.credentials else "(none)"
            raise AuthError(f"registry {self.base} refused access to {what} with the credentials from {source}"
                            f" (HTTP {response.status_code})", hint="check the registry user and password")
        raise RegistryError(f"registry {self.base} answered HTTP {response.status_code} for {what}")


def _basic(credentials: Credentials) -> str:
    import base64

    token = base64.b64encode(f"{credentials.user}:{credentials.password}".encode()).decode()
    return f"Basic {token}"


def _from_docker_config(host: str, environ: Mapping[str, str]) -> Credentials | None:
    """Read the credentials for host from a docker config file, helpers included, if any."""
    from docker import auth

    folder = environ.get("DOCKER_CONFIG") or os.path.join(environ.get("HOME", "/root"), ".docker")
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        return None
    try:
        auth_config = auth.load_config(config_path=path, credstore_env=dict(environ))
        found = auth_config.resolve_authconfig(host)
    except Exception as e:  # a broken file or a failing helper: a bad input, without its content
        raise BadInput(f"{path}: cannot read the credentials for {host} ({type(e).__name__})") from None
    if not found:
        return None
    found = {key.lower(): value for key, value in found.items()}
    if not (found.get("username") and found.get("password")):
        return None
    return Credentials(found["username"], found["password"], path)


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False
