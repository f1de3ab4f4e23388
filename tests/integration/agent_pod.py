"""The Jenkins build pod (k8s/ci/agent-pod.yaml) as containers on the local engine.

``build_ci_images`` builds docker/ci-engine and docker/ci-agent FROM the local build base, tagged
by a hash of their inputs so an unchanged pair is reused. ``AgentPod`` starts the template's
containers as a kubelet would: one network namespace for the pod (held by a pause container, as
Kubernetes does), each emptyDir a fresh volume (tmpfs for ``medium: Memory``), the init container
run to completion, the native sidecar started and its startup probe passed, then the build
container; securityContext, env, mounts and limits translated one to one, and a field this module
does not know is an error, so the test cannot drift from the template unnoticed.

The pod reaches the host's test registry on the same 127.0.0.1 port as the host does: a relay
listens on that port inside the pod's network namespace (a socket opened there with setns(2))
and forwards to the registry; nothing else of the host is reachable from the pod's loopback.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

from tests.conftest import ROOT

PREFIX = "pinotage-pod"  # every container and volume this module makes
ENGINE_INPUTS = ("docker/ci-engine",)
AGENT_INPUTS = ("docker/ci-agent/Dockerfile", "setup.cfg", "pyproject.toml", "README.md", "requirements.lock",
                "pipeline", "tools/cyclonedx/package.json", "tools/cyclonedx/package-lock.json")
CLONE_NEWNET = 0x40000000


def inputs_hash(paths: tuple[str, ...], base: str) -> str:
    digest = hashlib.sha256(base.encode())
    for path in paths:
        top = ROOT / path
        for file in sorted([top] if top.is_file() else (p for p in top.rglob("*") if p.is_file())):
            if "__pycache__" not in file.parts:
                digest.update(str(file.relative_to(ROOT)).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:12]


def build_ci_images(client, build_base: str) -> dict[str, str]:
    """{template image: local tag} for ci-engine and ci-agent, built once per set of inputs."""
    made = {}
    for template_image, dockerfile, context, arg, inputs in (
            ("pinotage/ci-engine:0.1.0", "docker/ci-engine/Dockerfile", "docker/ci-engine", "ENGINE_BASE",
             ENGINE_INPUTS),
            ("pinotage/ci-agent:0.1.0", "docker/ci-agent/Dockerfile", ".", "AGENT_BASE", AGENT_INPUTS)):
        tag = f"pinotage-ci/{template_image.split('/')[1].split(':')[0]}:{inputs_hash(inputs, build_base)}"
        if not client.images.list(name=tag):
            done = subprocess.run(["docker", "build", "-q", "--build-arg", f"{arg}={build_base}", "-t", tag,
                                   "-f", str(ROOT / dockerfile), str(ROOT / context)],
                                  capture_output=True, text=True, timeout=1200)
            if done.returncode != 0:
                raise RuntimeError(f"building {tag} failed: {done.stderr[-2000:]}")
        made[template_image] = tag
    return made


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


def netns_socket(pid: int) -> socket.socket:
    """A TCP socket in the network namespace of process ``pid``; usable from any thread afterwards."""
    made: list = []

    def open_there() -> None:  # a thread of its own: setns(2) moves only the calling thread
        try:
            with open(f"/proc/{pid}/ns/net") as there:
                _setns(there.fileno())
            made.append(socket.socket())
        except OSError as e:
            made.append(e)

    thread = threading.Thread(target=open_there)
    thread.start()
    thread.join()  # the thread ends in the pod's namespace and dies with it; the socket stays there
    if isinstance(made[0], OSError):
        raise made[0]
    return made[0]


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def relay(pid: int, port: int) -> Callable[[], None]:
    """Forward 127.0.0.1:port inside process pid's network namespace to 127.0.0.1:port here; return a stop."""
    listener = netns_socket(pid)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(16)

    def serve() -> None:
        while True:
            try:
                inside, _ = listener.accept()
            except OSError:
                return
            outside = socket.create_connection(("127.0.0.1", port))
            for a, b in ((inside, outside), (outside, inside)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return listener.close


def _quantity(text: str) -> float:
    for unit, factor in (("m", 1e-3), ("Ki", 2 ** 10), ("Mi", 2 ** 20), ("Gi", 2 ** 30)):
        if str(text).endswith(unit):
            return float(str(text)[:-len(unit)]) * factor
    return float(text)


KNOWN_CONTAINER = {"name", "image", "command", "env", "securityContext", "resources", "volumeMounts",
                   "restartPolicy", "startupProbe"}
KNOWN_SECURITY = {"runAsNonRoot", "runAsUser", "runAsGroup", "allowPrivilegeEscalation", "readOnlyRootFilesystem",
                  "capabilities", "privileged", "seccompProfile", "appArmorProfile"}


def run_options(container: dict, pod_spec: dict, volumes: dict[str, str]) -> dict:
    """The docker SDK's run() options for one container of the template."""
    unknown = set(container) - KNOWN_CONTAINER
    context = container.get("securityContext", {})
    unknown |= set(context) - KNOWN_SECURITY
    if unknown:
        raise ValueError(f"the pod test does not translate {sorted(unknown)} of container {container['name']}")
    seccomp = context.get("seccompProfile", pod_spec.get("securityContext", {}).get("seccompProfile", {}))
    security_opt = []
    if seccomp.get("type") == "Unconfined":
        security_opt.append("seccomp=unconfined")
    if context.get("appArmorProfile", {}).get("type") == "Unconfined":
        security_opt.append("apparmor=unconfined")
    if context.get("allowPrivilegeEscalation") is False:
        security_opt.append("no-new-privileges")
    limits = container.get("resources", {}).get("limits", {})
    user = context.get("runAsUser")
    options = {
        "environment": {e["name"]: e["value"] for e in container.get("env", [])},
        "cap_add": context.get("capabilities", {}).get("add"), "cap_drop": context.get("capabilities", {}).get("drop"),
        "privileged": bool(context.get("privileged")), "read_only": bool(context.get("readOnlyRootFilesystem")),
        "security_opt": security_opt or None,
        "volumes": {volumes[m["name"]]: {"bind": m["mountPath"], "mode": "ro" if m.get("readOnly") else "rw"}
                    for m in container.get("volumeMounts", [])},
        "mem_limit": int(_quantity(limits["memory"])) if "memory" in limits else None,
        "nano_cpus": int(_quantity(limits["cpu"]) * 1e9) if "cpu" in limits else None,
    }
    if user is not None:
        options["user"] = f"{user}:{context.get('runAsGroup', user)}"
    if "command" in container:
        options["entrypoint"] = container["command"]
    return options


class AgentPod:
    """The template's pod on the local engine; ``close()`` removes every container and volume."""

    def __init__(self, client, spec: dict, images: dict[str, str]):
        self.client, self.spec, self.images = client, spec, images
        self.name = f"{PREFIX}-{secrets.token_hex(3)}"
        self.volumes: dict[str, str] = {}
        self.containers: dict[str, object] = {}
        self.stops: list[Callable[[], None]] = []

    def start(self) -> None:
        for volume in self.spec["volumes"]:
            self.volumes[volume["name"]] = self._volume(volume)
        pause = self.client.containers.run(
            self.images["pinotage/ci-agent:0.1.0"], ["sleep", "infinity"], detach=True, name=f"{self.name}-pause",
            user="1000:1000", cap_drop=["ALL"], read_only=True, security_opt=["no-new-privileges"],
            # a tmpfs volume lives while a container mounts it: the pause container keeps each mounted
            # for the pod's life, as the kubelet keeps an emptyDir
            volumes={name: {"bind": f"/pod/{name}", "mode": "ro"} for name in self.volumes.values()})
        self.containers["pause"] = pause
        pause.reload()
        self.pid = pause.attrs["State"]["Pid"]
        for container in self.spec.get("initContainers", []):
            if container.get("restartPolicy") == "Always":
                self._run(container)
                self._wait_started(container)
            else:
                self._complete(container)
        for container in self.spec["containers"]:
            self._run(container)

    def _volume(self, volume: dict) -> str:
        empty = volume["emptyDir"]
        name = f"{self.name}-{volume['name']}"
        if empty.get("medium") == "Memory":  # a tmpfs as world-writable as an emptyDir
            size = int(_quantity(empty.get("sizeLimit", "64Mi")))
            self.client.volumes.create(name, driver="local", labels={PREFIX: self.name}, driver_opts={
                "type": "tmpfs", "device": "tmpfs", "o": f"size={size},mode=1777"})
        else:
            self.client.volumes.create(name, labels={PREFIX: self.name})
        return name

    def _run(self, container: dict, **extra):
        made = self.client.containers.run(
            self.images[container["image"]], detach=True, name=f"{self.name}-{container['name']}",
            network_mode=f"container:{self.containers['pause'].id}", **run_options(container, self.spec, self.volumes),
            **extra)
        self.containers[container["name"]] = made
        return made

    def _complete(self, container: dict) -> None:
        made = self._run(container)
        status = made.wait(timeout=120)["StatusCode"]
        if status != 0:
            raise RuntimeError(f"init container {container['name']} exited {status}: {made.logs().decode()[-1000:]}")

    def _wait_started(self, container: dict) -> None:
        probe = container["startupProbe"]
        port = probe["tcpSocket"]["port"]
        for _ in range(probe.get("failureThreshold", 3)):
            with contextlib.closing(netns_socket(self.pid)) as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(probe.get("periodSeconds", 10))
        made = self.containers[container["name"]]
        made.reload()
        raise RuntimeError(f"{container['name']} never answered on {port} ({made.status}): "
                           f"{made.logs().decode()[-1500:]}")

    def relay(self, port: int) -> None:
        self.stops.append(relay(self.pid, port))

    def exec(self, container: str, command: list[str], environment: dict[str, str] | None = None,
             workdir: str | None = None) -> tuple[int, str, str]:
        """Run a command in a container of the pod: (exit code, stdout, stderr)."""
        code, (out, err) = self.containers[container].exec_run(command, environment=environment, workdir=workdir,
                                                                demux=True)
        return code, (out or b"").decode(), (err or b"").decode()

    def engine_cli(self, script: str, stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
        """A docker CLI in the pod with the client certificates (the ci-engine image has one): test plumbing."""
        client_certs = next(m for m in self.spec["containers"][0]["volumeMounts"] if m["mountPath"] == "/certs/client")
        return subprocess.run(
            ["docker", "run", "--rm", "-i", f"--network=container:{self.containers['pause'].id}",
             "-v", f"{self.volumes[client_certs['name']]}:/certs/client:ro", "-e", "DOCKER_HOST=tcp://127.0.0.1:2376",
             "-e", "DOCKER_TLS_VERIFY=1", "-e", "DOCKER_CERT_PATH=/certs/client",
             self.images["pinotage/ci-engine:0.1.0"], "sh", "-c", script],
            stdin=stdin, capture_output=True, timeout=600)

    def close(self) -> None:
        for stop in self.stops:
            stop()
        for made in reversed(list(self.containers.values())):
            with contextlib.suppress(Exception):
                made.remove(force=True, v=True)
        for name in self.volumes.values():
            with contextlib.suppress(Exception):
                self.client.volumes.get(name).remove(force=True)


@contextlib.contextmanager
def agent_pod(client, spec: dict, images: dict[str, str]) -> Iterator[AgentPod]:
    pod = AgentPod(client, spec, images)
    try:
        pod.start()
        yield pod
    finally:
        pod.close()
