"""The foundation's services work together: base image → build → authenticated push → pull by digest → run."""

from __future__ import annotations

import io
import secrets
import urllib.error
import urllib.request

import pytest

pytestmark = pytest.mark.integration

DOCKERFILE = b"""\
ARG BASE
FROM ${BASE}
CMD ["node", "-e", "console.log('pinotage says ' + process.version)"]
"""


def test_registry_refuses_anonymous_requests(registry):
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{registry.api}/v2/_catalog", timeout=5)
    assert refused.value.code == 401


def test_build_push_pull_by_digest_and_run(docker_client, registry, base_images, docker_cleanup):
    name = f"{registry.url}/foundation/canary-{secrets.token_hex(4)}"
    image, _ = docker_client.images.build(fileobj=io.BytesIO(DOCKERFILE), buildargs={"BASE": base_images.runtime},
                                          tag=f"{name}:v1", rm=True, forcerm=True)
    docker_cleanup["images"].append(f"{name}:v1")
    auth = {"username": registry.user, "password": registry.password}

    events = list(docker_client.api.push(name, "v1", auth_config=auth, stream=True, decode=True))
    assert not [e for e in events if "error" in e or "errorDetail" in e], events
    digests = [e["aux"]["Digest"] for e in events if "Digest" in e.get("aux", {})]
    assert len(digests) == 1 and digests[0].startswith("sha256:")

    docker_client.images.remove(f"{name}:v1", force=True)
    pulled = docker_client.images.pull(f"{name}@{digests[0]}", auth_config=auth)
    docker_cleanup["images"].append(pulled.id)
    assert f"{name}@{digests[0]}" in pulled.attrs["RepoDigests"]

    output = docker_client.containers.run(pulled.id, remove=True)
    assert output.decode().startswith("pinotage says v")


def test_wrong_password_is_refused(docker_client, registry, base_images, docker_cleanup):
    name = f"{registry.url}/foundation/refused-{secrets.token_hex(4)}"
    docker_client.images.get(base_images.runtime).tag(name, "v1")
    docker_cleanup["images"].append(f"{name}:v1")
    events = list(docker_client.api.push(name, "v1", stream=True, decode=True,
                                         auth_config={"username": registry.user, "password": "wrong"}))
    errors = [e["error"] for e in events if "error" in e]
    assert errors and ("unauthorized" in errors[0] or "authentication required" in errors[0]), events
