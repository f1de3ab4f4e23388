"""The Jenkins the integration tests write to: the double (CSRF crumbs on), or a real one.

PINOTAGE_TEST_JENKINS_URL, PINOTAGE_TEST_JENKINS_USER and PINOTAGE_TEST_JENKINS_TOKEN point
the tests at a real Jenkins; the jobs and views they make carry a random prefix and are
deleted afterwards. PINOTAGE_TEST_JENKINS_READER_USER and PINOTAGE_TEST_JENKINS_READER_TOKEN
name a user holding Overall/Read, Job/Read and View/Read only, for the permission tests
(skipped against a real Jenkins without them).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
from typing import Iterator

from pipeline.jenkins import JenkinsClient
from tests.fakes.jenkins import FakeJenkins, User

READER_PERMISSIONS = frozenset({"Overall/Read", "Job/Read", "View/Read"})


@dataclasses.dataclass
class Jenkins:
    url: str
    user: str
    token: str
    prefix: str
    fake: FakeJenkins | None
    reader: tuple[str, str] | None = None  # a user who may read but not configure

    def environ(self, base: dict[str, str], token: str | None = None, user: str | None = None) -> dict[str, str]:
        return {**base, "PINOTAGE_JENKINS_URL": self.url, "PINOTAGE_JENKINS_USER": self.user if user is None else user,
                "PINOTAGE_JENKINS_TOKEN": self.token if token is None else token}

    def client(self) -> JenkinsClient:
        return JenkinsClient(self.url, self.user, self.token)

    def python_jenkins(self, user: str | None = None, token: str | None = None):
        import jenkins

        return jenkins.Jenkins(self.url, user or self.user, token or self.token, timeout=30)

    def jjb_ini(self, folder) -> str:
        """Write a jenkins-jobs configuration file for this Jenkins; return its path."""
        path = folder / "jenkins_jobs.ini"
        path.write_text(f"[job_builder]\nignore_cache=True\n\n[jenkins]\nurl={self.url}\nuser={self.user}\n"
                        f"password={self.token}\n")
        return str(path)

    def posts(self) -> int:
        return len(self.fake.writes()) if self.fake else -1


@contextlib.contextmanager
def jenkins_target(**fake_options) -> Iterator[Jenkins]:
    """Yield the real Jenkins the environment names, or a double started with fake_options."""
    url = os.environ.get("PINOTAGE_TEST_JENKINS_URL")
    if url:
        reader = (os.environ.get("PINOTAGE_TEST_JENKINS_READER_USER", ""),
                  os.environ.get("PINOTAGE_TEST_JENKINS_READER_TOKEN", ""))
        server = Jenkins(url, os.environ.get("PINOTAGE_TEST_JENKINS_USER", ""),
                         os.environ.get("PINOTAGE_TEST_JENKINS_TOKEN", ""), f"pinotage-test-{secrets.token_hex(3)}-",
                         None, reader if all(reader) else None)
        try:
            yield server
        finally:
            _clean_up(server)
        return
    token, reader_token = "11" + secrets.token_hex(16), "11" + secrets.token_hex(16)
    users = [User("deployer", token), User("reader", reader_token, READER_PERMISSIONS)]
    with FakeJenkins(users=users, crumbs=True, **fake_options) as fake:
        yield Jenkins(fake.url, "deployer", token, "", fake, ("reader", reader_token))


def _clean_up(server: Jenkins) -> None:
    """Delete what the tests made on a real Jenkins: the items and views carrying the prefix."""
    client = server.python_jenkins()
    for job in client.get_all_jobs(folder_depth=0):
        if job["name"].startswith(server.prefix):
            client.delete_job(job["name"])
    for view in client.get_views():
        if view["name"].startswith(server.prefix):
            client.delete_view(view["name"])
