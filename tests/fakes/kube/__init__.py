"""A Kubernetes API test double: an HTTP server on loopback that the official clients talk to.

It stores namespaces, deployments, replicasets, pods, services, configmaps, secrets, leases,
serviceaccounts (with TokenRequest), events, roles, rolebindings, clusterroles, clusterrolebindings and
storageclasses;
serves discovery and OpenAPI v3 (``discovery.py``, so kubectl works against it), get/list/watch/
create/update/patch (merge, strategic merge, server-side apply)/delete, ``dryRun=All``,
``/status`` and ``/scale``, SelfSubjectAccessReview and SelfSubjectRulesReview, with the API server's answers; enforces RBAC
(``rbac.py``) and admission (``admission.py``: defaults, validation, Pod Security); records every
request; and runs a simulated controller (see ``controller.py``). It holds no Pinotage logic.

    fake = FakeKube(image_exists=registry_lookup, token="admin-token").start()
    fake.url, fake.kubeconfig(path)
    fake.crash_images.add(image)      # pods of this image go into CrashLoopBackOff
    fake.unready_images.add(image)    # pods of this image run but never become Ready
    fake.requests                     # [Request(user, verb, group, resource, namespace, name, code)]
    fake.before("patch", "deployments", action)   # run action() once before such a request
    FakeKube(event_window=N)          # a watch can resume across N events (older: ERROR 410 Expired)
    FakeKube(docker_client=client)    # pods run as real containers on that engine (docker_kubelet.py);
                                      # without it the in-memory kubelet only pretends
    FakeKube(tls=True)                # serve HTTPS (kubectl sends a token only over TLS); kubeconfig() trusts it
    FakeKube(bookmark_s=S)            # an idle watch that asked for bookmarks gets one every S seconds
    fake.stop()

``python -m tests.fakes.kube --port N [--token T] [--registry URL]`` runs it on its own.
"""

from __future__ import annotations

import base64
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

import yaml

from tests.fakes.kube.controller import Controller
from tests.fakes.kube.docker_kubelet import DockerKubelet
from tests.fakes.kube.memory_kubelet import MemoryKubelet
from tests.fakes.kube.server import ADMIN, ApiServer, Request
from tests.fakes.kube.store import KINDS, Store

__all__ = ["FakeKube", "Request", "registry_lookup", "ADMIN"]


class FakeKube:
    """The fake API server plus its controller."""

    def __init__(self, *, image_exists: Callable[[str, list[dict]], bool] | None = None, token: str | None = None,
                 host: str = "127.0.0.1", port: int = 0, pod_start_s: float = 0.3, event_window: int = 20000,
                 bookmark_s: float = 60.0, tls: bool = False, docker_client=None, backoff_s: float = 10.0):
        self.store = Store(event_window=event_window)
        self.tls_dir = tempfile.TemporaryDirectory(prefix="fake-kube-tls-") if tls else None
        self.ca_pem = _self_signed(Path(self.tls_dir.name), host) if tls else None
        self.token = token
        self.crash_images: set[str] = set()
        self.unready_images: set[str] = set()
        self.api = ApiServer(self.store, token=token, host=host, port=port, bookmark_s=bookmark_s,
                             tls=(str(Path(self.tls_dir.name) / "cert.pem"), str(Path(self.tls_dir.name) / "key.pem"))
                             if tls else None)
        kubelet = (DockerKubelet(self.store, docker_client, backoff_s=backoff_s) if docker_client is not None else
                   MemoryKubelet(self.store, image_exists=image_exists or (lambda image, auths: True),
                                 crashing=lambda image: image in self.crash_images,
                                 unready=lambda image: image in self.unready_images, pod_start_s=pod_start_s))
        self.controller = Controller(self.store, kubelet=kubelet)
        for name in ("default", "kube-system", "kube-public"):
            self.store.create(KINDS["namespaces"], "", {"metadata": {"name": name},
                                                        "spec": {"finalizers": ["kubernetes"]},
                                                        "status": {"phase": "Active"}})

    @property
    def url(self) -> str:
        return self.api.url

    @property
    def requests(self) -> list[Request]:
        with self.api.lock:
            return list(self.api.requests)

    def before(self, verb: str, resource: str, action: Callable[[], None]) -> None:
        self.api.before(verb, resource, action)

    def start(self) -> "FakeKube":
        self.api.start()
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
        self.api.stop()
        if self.tls_dir is not None:
            self.tls_dir.cleanup()

    def kubeconfig(self, path: Path, *, token: str | None = None, namespace: str = "default") -> Path:
        """Write a kubeconfig for this server (the admin token unless another is given)."""
        user = {"token": token or self.token} if (token or self.token) else {}
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url, **(
                {"certificate-authority-data": base64.b64encode(self.ca_pem).decode()} if self.ca_pem else {})}}],
            "users": [{"name": "fake-user", "user": user}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake-user",
                                                      "namespace": namespace}}]}))
        path.chmod(0o600)
        return path

    def __enter__(self) -> "FakeKube":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _self_signed(folder: Path, host: str) -> bytes:
    """Make a one-day self-signed certificate for host in folder (cert.pem, key.pem); return the certificate."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-days", "1", "-subj", "/CN=fake-kube-apiserver", "-keyout", str(folder / "key.pem"),
                    "-out", str(folder / "cert.pem"), "-addext", f"subjectAltName=IP:{host},DNS:localhost"],
                   check=True, capture_output=True)
    return (folder / "cert.pem").read_bytes()


def registry_lookup(api_url: str, user: str = "", password: str = "") -> Callable[[str, list[dict]], bool]:
    """Return image_exists(ref, auths) asking a v2 registry whether it holds the manifest.

    ``auths`` are the pod's pull secrets (docker config ``auths`` mappings): an entry for the
    registry's host is the login the pull uses, as a kubelet does; without one the pull uses
    ``user``/``password`` (the node's own login; none: anonymous). A reference whose host is not
    this registry does not exist, as a kubelet with no route to it would find. A refused login
    is a failed pull.
    """
    host = api_url.split("://", 1)[-1].rstrip("/")
    node_auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode() if user else ""

    def login(auths: list[dict]) -> str:
        for entries in auths:
            for key, entry in entries.items():
                if key.split("://", 1)[-1].split("/", 1)[0] == host:
                    encoded = entry.get("auth") or base64.b64encode(
                        f"{entry.get('username', '')}:{entry.get('password', '')}".encode()).decode()
                    return "Basic " + encoded
        return node_auth

    def exists(ref: str, auths: list[dict] = ()) -> bool:
        if not ref.startswith(host + "/"):
            return False
        rest = ref[len(host) + 1:]
        if "@" in rest:
            repository, reference = rest.split("@", 1)
        else:
            repository, _, reference = rest.rpartition(":") if ":" in rest else (rest, "", "latest")
        request = urllib.request.Request(f"{api_url.rstrip('/')}/v2/{repository}/manifests/{reference}", method="HEAD",
                                         headers={"Accept": ", ".join((
                                             "application/vnd.oci.image.manifest.v1+json",
                                             "application/vnd.docker.distribution.manifest.v2+json",
                                             "application/vnd.oci.image.index.v1+json",
                                             "application/vnd.docker.distribution.manifest.list.v2+json"))})
        auth = login(list(auths))
        if auth:
            request.add_header("Authorization", auth)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status == 200
        except urllib.error.HTTPError as e:
            if e.code in (401, 403, 404):
                return False
            raise
    return exists
