"""Talk to Jenkins through python-jenkins: read job configs, and write only what differs.

Authentication is a user plus an API token (``PINOTAGE_JENKINS_TOKEN``), never
a password. When Jenkins asks for a CSRF crumb, python-jenkins fetches one
once and keeps it; a crumb can go stale (a restart, a new session), so a write
refused with 403 "No valid crumb" fetches a fresh crumb and is sent once more.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable, Iterable, Mapping, TypeVar

from pipeline.config import SECRETS, Config, secret
from pipeline.errors import BadInput, JenkinsError

TIMEOUT_S = 30
# Jenkins API tokens are 32 (legacy) or 34 ("11" + 32) hex digits; a password is neither.
API_TOKEN = re.compile(r"^[0-9a-f]{32,34}$")
NO_VALID_CRUMB = "No valid crumb"
# Reads of job configs in flight at once: Jenkins answers GETs from its thread pool, and each one
# waits mostly on the network, so a large jobs/ compares in a fraction of the sequential time.
READ_CONCURRENCY = 8
# The encoding an XML document names in its declaration (XML 1.0 section 4.3.3).
XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?\sencoding\s*=\s*["']([A-Za-z][A-Za-z0-9._-]*)["']""")

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Write:
    """One write sent to Jenkins, for the summary and for counting."""

    action: str  # "create" | "reconfigure" | "delete"
    job: str


class JenkinsClient:
    """A python-jenkins connection that counts its writes and refreshes a stale crumb once."""

    def __init__(self, url: str, user: str = "", token: str = "", *, timeout_s: float = TIMEOUT_S):
        import jenkins

        self.url = url.rstrip("/")
        self.writes: list[Write] = []
        self._server = jenkins.Jenkins(self.url, user or None, token or None, timeout=timeout_s)
        # python-jenkins has no accessor for its requests.Session; this is its attribute since 1.0.
        _tune_session(self._server._session, self.url, signed_in=bool(user and token), connections=READ_CONCURRENCY)

    def version(self) -> str:
        """Return the version Jenkins announces in its X-Jenkins header."""
        # get_version skips python-jenkins' auth set-up; a first authenticated read does it.
        return self._read("read the Jenkins version",
                          lambda: (self._server.get_whoami(), self._server.get_version())[1])

    def whoami(self) -> str:
        """Return the id of the user the token signs in as."""
        return self._read("sign in", lambda: self._server.get_whoami()["id"])

    def get_json(self, path: str) -> dict | None:
        """GET one REST API page (``computer/api/json?tree=…``); None when Jenkins has no such page."""
        import json

        import jenkins
        import requests

        def fetch() -> dict | None:
            try:
                return json.loads(self._server.jenkins_open(requests.Request("GET", f"{self.url}/{path}")))
            except jenkins.NotFoundException:
                return None

        try:
            return self._read(f"read {path.split('?')[0]}", fetch)
        except ValueError as e:  # not JSON: a proxy's page, or no Jenkins at all
            raise JenkinsError(f"Jenkins at {self.url}: {path.split('?')[0]} is not JSON") from e

    def job_names(self) -> list[str]:
        """List the top-level jobs."""
        jobs = self._read("list the jobs", lambda: self._server.get_all_jobs(folder_depth=0))
        return sorted(job["fullname"] for job in jobs)

    def job_config(self, name: str) -> str | None:
        """Return a job's config.xml, or None when Jenkins has no such job."""
        import jenkins

        try:
            return self._server.get_job_config(name)
        except jenkins.NotFoundException:
            return None
        except jenkins.JenkinsException as e:
            raise self._error(f"read the config of job {name!r}", e) from e

    def create(self, name: str, xml: bytes) -> None:
        """Create a job from its config.xml."""
        self._write(Write("create", name), lambda: self._server.create_job(name, xml.decode("utf-8")))

    def reconfigure(self, name: str, xml: bytes) -> None:
        """Replace a job's config.xml."""
        self._write(Write("reconfigure", name), lambda: self._server.reconfig_job(name, xml.decode("utf-8")))

    def delete(self, name: str) -> None:
        """Delete a job."""
        self._write(Write("delete", name), lambda: self._server.delete_job(name))

    def _write(self, write: Write, send: Callable[[], T]) -> T:
        import jenkins

        self.writes.append(write)
        try:
            return send()
        except jenkins.JenkinsException as e:
            if NO_VALID_CRUMB not in str(e):
                raise self._error(f"{write.action} job {write.job!r}", e) from e
        # python-jenkins fetches a crumb again when it holds none.
        self._server.crumb = None
        self.writes.append(write)
        try:
            return send()
        except jenkins.JenkinsException as e:
            raise self._error(f"{write.action} job {write.job!r} (after fetching a fresh crumb)", e) from e

    def _read(self, what: str, fetch: Callable[[], T]) -> T:
        import jenkins

        try:
            return fetch()
        except (jenkins.JenkinsException, OSError) as e:
            raise self._error(what, e) from e

    def _error(self, what: str, e: Exception) -> JenkinsError:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = ""
        if "[401]" in first or "[403]" in first:
            hint = ("check jenkins.user and PINOTAGE_JENKINS_TOKEN (an API token from"
                    " Jenkins > your user > Security), and that the user may configure jobs")
        return JenkinsError(f"Jenkins at {self.url}: could not {what}: {first}", hint=hint)


def _tune_session(session, url: str, *, signed_in: bool, connections: int) -> None:
    """Make each request of python-jenkins' session cheaper, with the same effect.

    - A connection per concurrent read: requests' adapter for ``http://`` keeps urllib3's 10, so
      more readers would open and drop connections. (python-jenkins mounts its own at the bare
      scheme, which that longer prefix shadows: the one in use keeps its retry setting.)
    - The environment read once: for every request python-jenkins has requests look up the
      proxy (HTTP_PROXY, HTTPS_PROXY, NO_PROXY: two scans of the whole environment) and the CA
      bundle (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE). Every request goes to this one Jenkins, so
      requests' own answer for its URL, taken now, is the answer for each. Signed in only: an
      anonymous session also looks up ~/.netrc on each request, which ``trust_env`` would stop.
    - A config.xml decoded as its XML declaration says (else UTF-8, XML's default) rather than
      by requests' guess from the bytes (charset_normalizer): Jenkins serves the file's bytes as
      ``application/xml`` with no charset (AbstractItem.doConfigDotXml).
    """
    from requests.adapters import HTTPAdapter

    retries = session.get_adapter(url).max_retries
    session.mount(url.split(":", 1)[0] + "://", HTTPAdapter(max_retries=retries, pool_maxsize=max(connections, 10)))
    if signed_in:
        settings = session.merge_environment_settings(url, {}, None, session.verify, None)
        session.proxies, session.verify = settings["proxies"], settings["verify"]
        session.trust_env = False
    session.hooks["response"].append(xml_encoding)


def xml_encoding(response, *args, **kwargs) -> None:
    """Give a config.xml answered without a charset the encoding its declaration names, else UTF-8."""
    if response.encoding is None and response.request.method == "GET" and \
            response.request.path_url.endswith("/config.xml"):
        declared = XML_ENCODING.match(response.content[:200])
        response.encoding = declared.group(1).decode("ascii") if declared else "utf-8"


def connect(config: Config, environ: Mapping[str, str], *, need_token: bool) -> JenkinsClient:
    """Build the client from jenkins.url, jenkins.user and the API token in the environment."""
    url = config.jenkins.url
    if not url:
        raise BadInput("jenkins.url is not set", hint="set it in pinotage.yaml or PINOTAGE_JENKINS_URL")
    if not re.match(r"^https?://", url):
        raise BadInput(f"jenkins.url: expected an http:// or https:// URL, got {url!r}")
    user = config.jenkins.user
    token = secret("jenkins.token", environ) or ""
    variable = SECRETS["jenkins.token"]
    if need_token and not (user and token):
        raise BadInput(f"writing jobs needs jenkins.user and {variable}",
                       hint="create an API token in Jenkins (your user > Security) and export it")
    if token and not API_TOKEN.match(token):
        # Never echo the value: it may be a password.
        raise BadInput(f"{variable} does not look like a Jenkins API token (32 or 34 hex digits)",
                       hint="Pinotage signs in with an API token, never a password")
    if token and not user:
        raise BadInput(f"{variable} is set but jenkins.user is not",
                       hint="set jenkins.user to the token's owner")
    return JenkinsClient(url, user, token)


def live_configs(client: JenkinsClient, names: Iterable[str],
                 read: Mapping[str, str] = {}) -> dict[str, str | None]:
    """Fetch each named job's live config.xml (None for a job Jenkins does not have), READ_CONCURRENCY at a time.

    ``read`` holds configs already read from this Jenkins during this run (``jenkins_prefetch``);
    the names it lacks are fetched.
    """
    from concurrent.futures import ThreadPoolExecutor

    names = list(names)
    found: dict[str, str | None] = {name: read[name] for name in names if name in read}
    missing = [name for name in names if name not in found]
    if not missing:
        return found
    # The first read alone: python-jenkins settles the sign-in and fetches its crumb once, not once per thread.
    found[missing[0]] = client.job_config(missing[0])
    with ThreadPoolExecutor(max_workers=min(READ_CONCURRENCY, len(missing)), thread_name_prefix="jenkins-read") as pool:
        found.update(zip(missing[1:], pool.map(client.job_config, missing[1:])))
    return {name: found[name] for name in names}
