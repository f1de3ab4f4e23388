"""A throw-away app repository for the run tests: the real presentation app in a fresh git repo,
a unique app name, registry repository and host port, and `pinotage` run against it as a process.

Every container and image it leads to is removed by ``cleanup()``.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.conftest import ROOT, free_port

PREFIX = "r3t"  # the run tests' names: containers, images, repositories


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=Pinotage Test", "-c", "user.email=test@example.invalid",
                           "-c", "init.defaultBranch=master", "-c", "advice.detachedHead=false", *args],
                          cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@dataclasses.dataclass
class AppLoop:
    repo: Path
    state_dir: Path
    app: str
    repository: str
    host_port: int
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.host_port}/"

    def pinotage(self, *args: str, env: dict[str, str] | None = None, timeout_s: float = 900) -> subprocess.CompletedProcess:
        """Run the pinotage command in the app repo with the loop's environment (plus env)."""
        return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=self.repo, capture_output=True,
                              text=True, env={**self.env, **(env or {})}, timeout=timeout_s)

    def commit(self, message: str, *, slide_line: str | None = None) -> str:
        """Commit a change (a new slide line, or nothing) on the checked-out branch; return the hash."""
        if slide_line is not None:
            slides = self.repo / "docker/presentation/slides/pinotage.md"
            slides.write_text(slides.read_text() + f"\n{slide_line}\n")
        git(self.repo, "commit", "-q", "-a", "--allow-empty", "-m", message)
        return git(self.repo, "rev-parse", "HEAD")

    def history(self) -> list[dict]:
        done = self.pinotage("history", "--json", "--limit", "100")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def live_commit(self, docker_client) -> str:
        running = docker_client.containers.list(filters={"label": [f"org.pinotage.app={self.app}",
                                                                    "org.pinotage.role=serving"]})
        assert len(running) == 1, [c.name for c in running]
        return running[0].labels["org.pinotage.commit"]

    def page(self) -> str:
        with urllib.request.urlopen(self.url, timeout=5) as response:
            assert response.status == 200
            return response.read().decode()

    def cleanup(self, docker_client) -> None:
        import docker.errors

        for container in docker_client.containers.list(all=True, filters={"label": f"org.pinotage.app={self.app}"}):
            container.remove(force=True, v=True)
        mine = self.env["PINOTAGE_REGISTRY_URL"] + "/" + self.repository
        images = docker_client.api.images(all=True)  # one call: summaries with each image's parent
        ids = {i["Id"] for i in images if any(ref.startswith(mine) for ref in (i.get("RepoTags") or [])
                                              + (i.get("RepoDigests") or []))}
        while True:  # and the images tests built on them (a test that removed its tag leaves one untagged)
            built_on = {i["Id"] for i in images if i.get("ParentId") in ids} - ids
            if not built_on:
                break
            ids |= built_on
        for _ in range(len(ids)):  # an image goes only once every image built on it has gone
            for image_id in sorted(ids):
                try:
                    docker_client.images.remove(image_id, force=True)
                    ids.discard(image_id)
                except docker.errors.NotFound:
                    ids.discard(image_id)
                except docker.errors.APIError:
                    pass  # one built on it is still there, or another test still uses it
            if not ids:
                break


def make_app_loop(tmp: Path, registry, base_images, **config: str) -> AppLoop:
    """Copy the presentation app into a fresh git repo on master with one commit."""
    repo = tmp / "repo"
    shutil.copytree(ROOT / "docker/presentation", repo / "docker/presentation",
                    ignore=shutil.ignore_patterns("node_modules", "site"))
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "the presentation")
    tag = secrets.token_hex(3)
    loop = AppLoop(repo=repo, state_dir=tmp / "state", app=f"{PREFIX}-{tag}", repository=f"{PREFIX}/slides-{tag}",
                   host_port=free_port(), env={})
    loop.env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp / "home"), "DOCKER_CONFIG": str(tmp / "docker-config"),
        "PINOTAGE_APP": loop.app, "PINOTAGE_STATE_DIR": str(loop.state_dir),
        "PINOTAGE_REGISTRY_URL": registry.url, "PINOTAGE_REGISTRY_USER": registry.user,
        "PINOTAGE_REGISTRY_PASSWORD": registry.password, "PINOTAGE_IMAGE_REPOSITORY": loop.repository,
        "PINOTAGE_IMAGE_BUILD_BASE": base_images.build, "PINOTAGE_IMAGE_FINAL_BASE": base_images.runtime,
        "PINOTAGE_DEPLOY_FRONT_IMAGE": base_images.front,
        "PINOTAGE_DEPLOY_HOST_PORT": str(loop.host_port), "PINOTAGE_DEADLINES_ROLLOUT_S": "60",
        **{f"PINOTAGE_{key.upper()}": value for key, value in config.items()},
    }
    return loop
