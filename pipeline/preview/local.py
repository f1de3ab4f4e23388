"""``pinotage run --preview``: the checkout's image served on ``preview.local_port``, beside the local app.

One container per app, ``<app>-preview``, replaced by each run: the built (and smoke-tested) image,
published on ``deploy.host_ip:preview.local_port``, run with the smoke test's limits (no
capability, no privilege escalation, bounded memory and processes). The app the local target
serves on ``deploy.host_port`` (its front and release containers) is never touched, and nothing
is pushed or recorded: no credential is read.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

from pipeline import probe, sandbox
from pipeline.errors import BadInput, DeployFailed
from pipeline.state import Image

LABEL = "org.pinotage"  # the local target's label prefix; role "preview" keeps the target's lookups away


def container_name(app: str) -> str:
    return f"{app}-preview"


def serve(client: Any, config: Any, image: Image, *, progress: Callable[[str], None]) -> str:
    """Replace the app's preview container with one of ``image``; return its URL once it answers."""
    import docker.errors

    port, host = config.preview.local_port, config.deploy.host_ip
    if port == config.deploy.host_port:
        raise BadInput(f"preview.local_port: {port} is deploy.host_port, where the app is served",
                       hint="--set preview.local_port=<another port>")
    name = container_name(config.app)
    with contextlib.suppress(docker.errors.NotFound):
        client.containers.get(name).remove(force=True, v=True)
    labels = {f"{LABEL}.app": config.app, f"{LABEL}.role": "preview", f"{LABEL}.commit": image.commit}
    try:
        container = client.containers.run(
            image.ref, detach=True, name=name, labels=labels, environment={"PORT": str(config.image.port)},
            ports={f"{config.image.port}/tcp": (host, port)}, **sandbox.RUN_LIMITS)
    except docker.errors.APIError as e:
        raise DeployFailed(f"the preview {name} did not start: {e.explanation or e}", rolled_back=False,
                           hint=f"is port {port} taken? --set preview.local_port=<a free port>") from e
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/"
    progress(f"started {name} from {image.ref} on {url}; waiting for {config.image.health_path}")
    probed = probe.wait_healthy(container, url.rstrip("/") + config.image.health_path, config.deadlines.smoke_s)
    if not probed.healthy:
        tail = probe.log_tail(container)
        container.remove(force=True, v=True)
        raise DeployFailed(f"the preview {name} did not answer {config.image.health_path} within"
                           f" {config.deadlines.smoke_s} s ({probed.last})" + (f": {tail[-1]}" if tail else ""),
                           rolled_back=False)
    return url
