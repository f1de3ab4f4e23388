"""FakeJenkins: the double's state, what tests seed it with, and its HTTP server on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import itertools
import secrets
import threading
from http.server import ThreadingHTTPServer
from typing import Iterable

from tests.fakes.jenkins.items import ALL_VIEW, Job, View, walk
from tests.fakes.jenkins.nodes import BUILT_IN, Cloud, Credential, Node
from tests.fakes.jenkins.security import User

VERSION = "2.580.1"  # the LTS docker/jenkins/Dockerfile ships
CRUMB_FIELD = "Jenkins-Crumb"
PLUGINS = (("workflow-aggregator", "Pipeline", "596.v8c21c963d92d"),
           ("workflow-job", "Pipeline: Job", "1400.v7fd111b_ec82f"),
           ("workflow-cps", "Pipeline: Groovy", "3894.3896.vca_2c931e7935"),
           ("workflow-multibranch", "Pipeline: Multibranch", "783.va_6eb_ef636fb_d"),
           ("branch-api", "Branch API Plugin", "2.1152.v6f101e97dd77"),
           ("scm-api", "SCM API Plugin", "690.vfc8b_54395023"),
           ("cloudbees-folder", "Folders Plugin", "6.928.v7c780211d66e"),
           ("credentials", "Credentials Plugin", "1337.v60b_d7b_c7b_c9f"),
           ("github-branch-source", "GitHub Branch Source Plugin", "1789.v5b_0c0cea_18c3"),
           ("credentials-binding", "Credentials Binding Plugin", "657.v2b_19db_7d6e6d"),
           ("kubernetes", "Kubernetes plugin", "4203.v1dd44f5b_1cf9"),
           ("timestamper", "Timestamper", "1.26"),
           ("git", "Git plugin", "5.2.2"))


@dataclasses.dataclass(frozen=True)
class Request:
    """One request as the fake saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased
    body: bytes
    status: int


class FakeJenkins:
    """An in-process Jenkins double on 127.0.0.1; use as a context manager.

    ``user``/``token`` make one administrator; ``users`` adds users with their own permissions.
    ``controller_executors``, ``nodes``, ``clouds`` and ``credentials`` seed what the node,
    label and credentials APIs answer. With ``crumbs``, a POST needs a crumb unless it is
    authenticated by API token (Jenkins 2.96+); ``crumbs_for_tokens`` asks token requests
    for one too, standing for a Jenkins that checks every POST.
    """

    def __init__(self, *, user: str = "", token: str = "", users: Iterable[User] = (), crumbs: bool = False,
                 crumbs_for_tokens: bool = False, port: int = 0, version: str = VERSION,
                 controller_executors: int = 2, nodes: Iterable[Node] = (), clouds: Iterable[Cloud] = (),
                 credentials: Iterable[Credential] = (), plugins=PLUGINS):
        from tests.fakes.jenkins.handler import handler_for

        self.users: dict[str, User] = {u.name: u for u in users}
        if user:
            self.users[user] = User(user, token)
        self.user, self.token = user, token
        self.crumbs = crumbs
        self.crumbs_for_tokens = crumbs_for_tokens
        self.version = version
        self.plugins = tuple(plugins)
        self.jobs: dict[str, Job] = {}  # the top-level items; folders hold theirs
        self.views: dict[str, View] = {"all": View(ALL_VIEW)}
        self.primary_view = "all"
        self.nodes: list[Node] = [Node(BUILT_IN, executors=controller_executors), *nodes]
        self.clouds: list[Cloud] = list(clouds)
        self.credentials: list[Credential] = list(credentials)
        self.requests: list[Request] = []
        self.crumb = secrets.token_hex(16)
        self.issue_stale_crumbs = False  # hand out crumbs that are already invalid
        self.sessions: dict[str, str] = {}  # JSESSIONID -> user name, made by a form login
        self.passwords: dict[str, str] = {}  # user name -> password, for a form login
        self.queue: dict[int, tuple[str, int]] = {}
        self.queue_ids = itertools.count(1)
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeJenkins":
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-jenkins", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        try:
            self._server.serve_forever()
        finally:
            self._server.server_close()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "FakeJenkins":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # What tests use to arrange and inspect, never reached over HTTP.
    def item(self, full_name: str) -> Job | None:
        """Return the item at a full name such as ``folder/job``, or None."""
        segments = [part for name in full_name.split("/") for part in ("job", name)]
        _, found, rest = walk(self.jobs, segments)
        return found if not rest else None

    def allow_password(self, user: str, password: str) -> None:
        """Let a user sign in with a password through the login form (which makes a session)."""
        self.passwords[user] = password

    def rotate_crumb(self) -> None:
        """Invalidate the issued crumb, as a restart or an expired session does."""
        self.crumb = secrets.token_hex(16)

    def plugin_versions(self) -> dict[str, str]:
        return {short: version for short, _, version in self.plugins}

    def writes(self) -> list[Request]:
        """Return the POST requests received (whatever their answer)."""
        return [r for r in self.requests if r.method == "POST"]

    def clear_requests(self) -> None:
        self.requests.clear()
