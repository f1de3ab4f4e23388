"""The local target's containers: the labels that carry a release, the engine calls around them, and
a release's container started before its push (``Staged``)."""

from __future__ import annotations

import contextlib
import socket
from typing import Any, Callable

from pipeline import probe
from pipeline.errors import DeployFailed
from pipeline.shell import Progress
from pipeline.state import Image, Release

LABEL = "org.pinotage"  # label prefix on every container the local target makes
STOP_TIMEOUT_S = 10  # SIGTERM grace before the engine kills a stopped container
RELEASE_HOST = "127.0.0.1"  # release containers publish here; the front, on deploy.host_ip, faces clients


def reference(image: Image) -> str:
    """Return the image by digest, or by tag while it has none (staged before its push)."""
    return image.pinned if image.digest else image.ref


def release_of(container, routed_image: str = "") -> Release:
    """Return the release a container runs, from its labels; ``routed_image`` is what the front says it
    runs by digest (``front.live_image``): a container started before its push has no digest label."""
    labels = container.labels
    name = labels.get(f"{LABEL}.image-name", "")
    digest = labels.get(f"{LABEL}.image-digest", "")
    routed_name, _, routed_digest = routed_image.partition("@")
    if not digest and routed_name == name:
        digest = routed_digest
    image = Image(name=name, tag=labels.get(f"{LABEL}.image-tag", ""), digest=digest,
                  commit=labels.get(f"{LABEL}.commit", ""))
    return Release(image=image, commit=image.commit, build_url=labels.get(f"{LABEL}.build-url", ""),
                   ledger_id=labels.get(f"{LABEL}.ledger-id", ""))


def reloaded(container):
    container.reload()
    return container


def published_port(container, port: int) -> int:
    host_port = probe.published_port(container, port)
    if host_port is None:
        container.reload()
        code = probe.exit_code(container)
        why = f"it exited with {code}: {log_tail(container)}" if code is not None else "it publishes none"
        raise DeployFailed(f"{container.name} has no host port for {port}/tcp: {why}", rolled_back=False)
    return host_port


def log_tail(container, lines: int = 5) -> str:
    return " | ".join(probe.log_tail(container, lines)) or "(no output)"


def remove(container) -> None:
    if container is None:
        return
    import docker

    with contextlib.suppress(docker.errors.NotFound):
        container.remove(force=True, v=True)


def stop(container) -> None:
    import docker

    with contextlib.suppress(docker.errors.APIError):
        container.stop(timeout=STOP_TIMEOUT_S)


def holds(container, host_port: int) -> bool:
    """Say whether a container publishes host_port itself (as containers of earlier versions did)."""
    bindings = (container.attrs.get("HostConfig") or {}).get("PortBindings") or {}
    return any(str(b.get("HostPort")) == str(host_port) for bs in bindings.values() for b in bs or [])


def free_port() -> int:
    with socket.socket() as s:
        s.bind((RELEASE_HOST, 0))
        return s.getsockname()[1]


def serving_port(container) -> int | None:
    for bindings in ((container.attrs.get("NetworkSettings") or {}).get("Ports") or {}).values():
        for binding in bindings or []:
            return int(binding["HostPort"])
    return None


class Staged:
    """A release's container started before its push (``DockerTarget.stage``): smoke-tested, then routed to.

    ``take`` hands it to the deploy, ``discard`` removes it unless a deploy took it.
    """

    def __init__(self, client, container, port: int, explain: Callable[[Exception], str],
                 release_claim: Callable[[], None]):
        self._client = client
        self._release_claim = release_claim  # tells other runs' prunes that this container is in use
        self.container = container
        self.url = f"http://{RELEASE_HOST}:{port}"
        self._port = port
        self._explain = explain  # an engine error in one line
        self._taken = False

    def take(self, release: Release, progress: Progress) -> tuple[Any, int] | None:
        """Return the container and its port if it still runs ``release``'s pushed image, else None."""
        import docker

        container = self.container
        try:
            pushed = self._client.images.get(reference(release.image)).id
            container.reload()
        except docker.errors.APIError as e:
            progress(f"{container.name} is not used ({self._explain(e)})")
            return None
        if container.status != "running":
            progress(f"{container.name} is not used: it stopped")
            return None
        if container.attrs.get("Image") != pushed:
            progress(f"{container.name} is not used: {reference(release.image)} is another image")
            return None
        progress(f"{container.name}, smoke-tested, is the release's container")
        self._taken = True
        return container, self._port

    def discard(self) -> None:
        """Remove the container, unless a deploy took it; either way, give up the claim on it."""
        try:
            if not self._taken:
                remove(self.container)
        finally:
            self._release_claim()
            self._release_claim = lambda: None
