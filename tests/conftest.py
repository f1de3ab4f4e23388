"""Session fixtures for the real services the tests use.

In CI (CI=true) a missing service fails the test; elsewhere it is skipped with
the reason. Every fixture removes the containers, images and files it made.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(what: str, why: str) -> None:
    """Fail in CI, skip elsewhere: a test that needs a missing service says so."""
    message = f"needs {what}: {why}"
    if in_ci():
        pytest.fail(message + " (in CI a missing service is a failure; scripts/test sets it up)")
    pytest.skip(message + " (scripts/test sets it up)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, *, timeout_s: float = 20, accept=(200,)) -> int:
    """Wait until url answers with one of the accepted status codes; return that code."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status in accept:
                    return response.status
                last = response.status
        except urllib.error.HTTPError as e:
            if e.code in accept:
                return e.code
            last = e.code
        except OSError as e:
            last = e
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer {accept} within {timeout_s} s (last: {last})")


@pytest.fixture(scope="session")
def docker_client():
    """A docker SDK client for the engine that scripts/test started."""
    try:
        import docker

        client = docker.from_env(timeout=300)
        client.ping()
    except Exception as e:  # the SDK raises several kinds when no engine answers
        need("a Docker engine", f"none answers ({type(e).__name__})")
    yield client
    client.close()


@dataclasses.dataclass(frozen=True)
class Registry:
    url: str  # host:port, what image names start with
    user: str
    password: str

    @property
    def api(self) -> str:
        return f"http://{self.url}"


def start_registry(tmp: Path, *, user: str, password: str) -> tuple[subprocess.Popen, Registry]:
    """Start Debian's docker-registry on loopback with htpasswd auth; return it once it answers."""
    for tool in ("docker-registry", "htpasswd"):
        if not shutil.which(tool):
            need("a registry", f"{tool} is not installed")
    htpasswd = tmp / "htpasswd"
    subprocess.run(["htpasswd", "-Bbc", str(htpasswd), user, password], check=True, capture_output=True)
    process, port = serve_registry(tmp, f"{{htpasswd: {{realm: pinotage-test, path: {htpasswd}}}}}")
    return process, Registry(f"127.0.0.1:{port}", user, password)


def serve_registry(tmp: Path, auth: str) -> tuple[subprocess.Popen, int]:
    """Run docker-registry on a loopback port with this ``auth:`` section (YAML flow); return it once it answers."""
    port = free_port()
    config = tmp / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn, accesslog: {disabled: true}}\n"
        f"storage: {{filesystem: {{rootdirectory: {tmp / 'data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
        f"auth: {auth}\n"
    )
    log = open(tmp / "registry.log", "wb")
    process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=log)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/v2/", accept=(401,))
    except TimeoutError:
        process.kill()
        need("a registry", (tmp / "registry.log").read_text()[-500:])
    return process, port


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """An authenticated registry on 127.0.0.1 (user and a fresh random password)."""
    tmp = tmp_path_factory.mktemp("registry")
    process, registry = start_registry(tmp, user="pinotage", password=secrets.token_urlsafe(18))
    yield registry
    process.terminate()
    process.wait(10)
    shutil.rmtree(tmp, ignore_errors=True)


@dataclasses.dataclass(frozen=True)
class BaseImages:
    build: str  # Debian minbase + nodejs + npm + the host CA bundle
    runtime: str  # Debian minbase + nodejs, no npm
    front: str  # runtime + Debian nginx: the local target's front (scripts/front-image)


@pytest.fixture(scope="session")
def base_images(docker_client) -> BaseImages:
    """The local base images from Debian packages (built once, then reused by their hash)."""
    build = os.environ.get("PINOTAGE_IMAGE_BUILD_BASE")
    runtime = os.environ.get("PINOTAGE_IMAGE_FINAL_BASE")
    if not (build and runtime):
        if not shutil.which("debootstrap"):
            need("the local base images", "debootstrap is not installed")
        done = subprocess.run([str(ROOT / "scripts/base-image")], capture_output=True, text=True)
        if done.returncode != 0:
            need("the local base images", done.stderr.strip().splitlines()[-1:] or "scripts/base-image failed")
        refs = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
        build, runtime = refs["build"], refs["runtime"]
    front = os.environ.get("PINOTAGE_DEPLOY_FRONT_IMAGE")
    if not front:
        done = subprocess.run([str(ROOT / "scripts/front-image"), runtime], capture_output=True, text=True)
        if done.returncode != 0:
            need("the local front image", done.stderr.strip().splitlines()[-1:] or "scripts/front-image failed")
        front = done.stdout.strip().splitlines()[-1].split("=", 1)[1]
    return BaseImages(build=build, runtime=runtime, front=front)


@pytest.fixture
def docker_cleanup(docker_client):
    """Register containers and images by id or name; they are removed after the test."""
    made: dict[str, list[str]] = {"containers": [], "images": []}
    yield made
    import docker.errors

    for container in made["containers"]:
        try:
            docker_client.containers.get(container).remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
    for image in made["images"]:
        try:
            docker_client.images.remove(image, force=True)
        except docker.errors.NotFound:
            pass


@pytest.fixture
def environ() -> dict[str, str]:
    """A minimal environment for code under test: nothing leaks in from the host's PINOTAGE_*."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root")}


@pytest.fixture(scope="session")
def token_hub(tmp_path_factory):
    """A registry in token mode, as Docker Hub runs (tests/token_registry.py): pusher may push, reader may not."""
    from tests import token_registry

    if not shutil.which("docker-registry") or not shutil.which("openssl"):
        need("a token-mode registry", "docker-registry or openssl is not installed")
    tmp = tmp_path_factory.mktemp("token-registry")
    process, issuer, registry = token_registry.start(tmp, serve_registry)
    yield registry
    process.terminate()
    process.wait(10)
    issuer.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)
