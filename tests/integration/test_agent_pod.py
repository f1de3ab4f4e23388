"""The Jenkins build pod for real: k8s/ci/agent-pod.yaml run as containers on the local engine
(tests/integration/agent_pod.py), the Jenkinsfile's `pinotage build`, `smoke` and `push` run in
its `pinotage` container against the authenticated test registry, through the engine sidecar at
DOCKER_HOST over TCP with mutual TLS; then a wrong CA and missing certificates, one line, exit 1.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import tarfile
import urllib.request

import pytest
import yaml

from tests.conftest import ROOT, need
from tests.integration.agent_pod import agent_pod, build_ci_images

pytestmark = pytest.mark.integration

WORKSPACE = "/home/jenkins/agent/workspace"
REPOSITORY = "pinotage-pod/slides"


@pytest.fixture(scope="module")
def pod(docker_client, base_images, registry):
    if os.geteuid() != 0:
        need("the agent pod", "joining the pod's network namespace (setns) needs root")
    spec = yaml.safe_load((ROOT / "k8s/ci/agent-pod.yaml").read_text())["spec"]
    images = build_ci_images(docker_client, base_images.build)
    with agent_pod(docker_client, spec, images) as made:
        made.relay(int(registry.url.rsplit(":", 1)[1]))
        # The app's two bases, as the pod's engine would pull them from Docker Hub.
        save = subprocess.Popen(["docker", "save", base_images.build, base_images.runtime], stdout=subprocess.PIPE)
        loaded = made.engine_cli("docker load -q", stdin=save.stdout)
        save.wait()
        assert loaded.returncode == 0 and save.returncode == 0, loaded.stderr.decode()
        made.containers["pinotage"].put_archive("/home/jenkins/agent", app_archive())
        code, out, err = made.exec("pinotage", ["sh", "-c", "git init -q && git add . && git -c user.name=t "
                                                "-c user.email=t@example.invalid commit -q -m app"], workdir=WORKSPACE)
        assert code == 0, out + err
        yield made


def app_archive() -> bytes:
    """The presentation app as workspace/ owned by the agent's uid, as Jenkins checks it out."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        def owned(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
            if "node_modules" in info.name.split("/") or info.name.split("/")[-1] == "site":
                return None
            info.uid = info.gid = 1000
            info.uname = info.gname = ""
            return info
        for folder in ("workspace", "workspace/docker"):
            info = tarfile.TarInfo(folder)
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o755, 1000, 1000
            tar.addfile(info)
        tar.add(ROOT / "docker/presentation", "workspace/docker/presentation", filter=owned)
    return buffer.getvalue()


def stage_env(registry, base_images, **changes: str) -> dict[str, str]:
    """What a master build's stage gets from Jenkins: the registry credential for this step only."""
    return {"PINOTAGE_REGISTRY_URL": registry.url, "PINOTAGE_REGISTRY_USER": registry.user,
            "PINOTAGE_REGISTRY_PASSWORD": registry.password, "PINOTAGE_IMAGE_REPOSITORY": REPOSITORY,
            "PINOTAGE_IMAGE_BUILD_BASE": base_images.build, "PINOTAGE_IMAGE_FINAL_BASE": base_images.runtime,
            "PINOTAGE_STATE_DIR": f"{WORKSPACE}/.pinotage", "BRANCH_NAME": "master", "BUILD_NUMBER": "7",
            **changes}


def registry_get(registry, path: str, accept: str = "application/json") -> tuple[dict, dict]:
    token = base64.b64encode(f"{registry.user}:{registry.password}".encode()).decode()
    request = urllib.request.Request(f"http://{registry.url}{path}",
                                     headers={"Authorization": f"Basic {token}", "Accept": accept})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer), dict(answer.headers)


def test_build_smoke_and_push_run_in_the_pod_against_the_authenticated_registry(pod, registry, base_images):
    env = stage_env(registry, base_images)
    outputs = {}
    for stage in ("context", "build", "smoke", "push"):
        code, out, err = pod.exec("pinotage", ["pinotage", stage, "--state", "pinotage-state.json"], env, WORKSPACE)
        assert code == 0, f"pinotage {stage}: {out}{err[-3000:]}"
        assert registry.password not in out + err
        outputs[stage] = out
    assert "smoke:    " in outputs["smoke"] and " passed" in outputs["smoke"]
    pinned = outputs["push"].split("pushed:   ", 1)[1].split()[0]
    assert pinned.startswith(f"{registry.url}/{REPOSITORY}@sha256:")
    tags, _ = registry_get(registry, f"/v2/{REPOSITORY}/tags/list")
    code, commit, _ = pod.exec("pinotage", ["git", "rev-parse", "HEAD"], workdir=WORKSPACE)
    assert commit.strip() in tags["tags"]
    _, headers = registry_get(registry, f"/v2/{REPOSITORY}/manifests/{commit.strip()}",
                              accept="application/vnd.docker.distribution.manifest.v2+json")
    assert headers["Docker-Content-Digest"] == pinned.split("@", 1)[1]


def certs_archive(folder: str, files: dict[str, bytes]) -> bytes:
    """A folder of certificate files owned by the agent's uid, as a tar for put_archive."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        entries = [(folder, None)] + [(f"{folder}/{name}", data) for name, data in files.items()]
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.uid = info.gid = 1000
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o700
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o400
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


REFUSED = "pinotage: error: the Docker engine at tcp://127.0.0.1:2376 and this client do not trust each other: "


@pytest.mark.parametrize("certs, expected", [
    ("other-pod", {REFUSED + "the engine's certificate is not signed by the client's ca.pem"}),
    # with TLS 1.3 the engine's refusal may race the client's request: the client then sees the
    # alert or only the closed connection; either line is the same verdict
    ("other-client", {REFUSED + "the engine refused the client's certificate",
                      REFUSED + "the engine closed the connection in the TLS handshake (it refuses the client's "
                                "certificate)"}),
    ("empty", {"pinotage: error: DOCKER_TLS_VERIFY is set but /tmp/certs-empty has no ca.pem, cert.pem, key.pem"}),
], ids=["wrong-ca", "client-certificate-of-another-pod", "missing-certificates"])
def test_a_wrong_ca_or_missing_certificates_is_one_line_and_exit_1(pod, registry, base_images, tmp_path, certs,
                                                                     expected):
    files = {}
    if certs != "empty":  # another pod's CA and client certificate, made by the same certs script
        (tmp_path / "server").mkdir(), (tmp_path / "client").mkdir()
        subprocess.run([str(ROOT / "docker/ci-engine/engine-certs"), str(tmp_path / "server"),
                        str(tmp_path / "client")], check=True, capture_output=True, timeout=60)
        files = {p.name: p.read_bytes() for p in (tmp_path / "client").iterdir()}
    if certs == "other-client":  # this pod's CA, so the client trusts the engine, but not its client certificate
        code, ca, _ = pod.exec("pinotage", ["cat", "/certs/client/ca.pem"])
        assert code == 0 and "BEGIN CERTIFICATE" in ca
        files["ca.pem"] = ca.encode()
    pod.containers["pinotage"].put_archive("/tmp", certs_archive(f"certs-{certs}", files))
    env = stage_env(registry, base_images, DOCKER_CERT_PATH=f"/tmp/certs-{certs}")
    code, out, err = pod.exec("pinotage", ["pinotage", "build", "--state", "pinotage-state.json"], env, WORKSPACE)
    assert code == 1, out + err
    [line, *hints] = err.strip().splitlines()  # the error in one line; a hint may follow, never a traceback
    assert line in expected, err
    assert all(hint.lstrip().startswith("hint: ") for hint in hints), err
