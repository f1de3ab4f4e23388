"""A kubelet backed by the real Docker engine: each scheduled pod's containers really run.

One worker thread per pod, as the kubelet has, and it reports what it sees in the pod's status:

- the image is pulled with the pod's own ``imagePullSecrets`` (dockerconfigjson) and nothing else,
  and the registry is asked every time, as a fresh node would (a refused or anonymous pull:
  ``ErrImagePull``, then ``ImagePullBackOff`` with back-off);
- securityContext becomes engine flags: ``runAsUser``/``runAsGroup`` the user,
  ``readOnlyRootFilesystem`` a read-only root, ``capabilities`` cap-drop/cap-add,
  ``allowPrivilegeEscalation: false`` no-new-privileges; ``emptyDir`` volumes become tmpfs mounts;
  ``command``/``args``/``env`` pass through; each containerPort is published on 127.0.0.1 only;
- startup, readiness and liveness probes (httpGet, tcpSocket, exec) really run, at their period
  and thresholds; a failed liveness or startup probe restarts the container; every failed probe
  is recorded as the kubelet records it: a ``Warning`` ``Unhealthy`` Event ("Readiness probe
  failed: HTTP probe failed with statuscode: 503"), aggregated (``recorder.py``);
- an exit is counted in ``restartCount`` and waits out ``CrashLoopBackOff`` (back-off doubling
  from ``backoff_s`` up to 30 times it, as 10 s to 5 min in Kubernetes) before the next start.

Containers are named ``fake-kubelet-<pod uid>-<container>`` and removed with their pod.
"""

from __future__ import annotations

import base64
import copy
import json
import socket
import threading
import time
import urllib.error
import urllib.request

from tests.fakes.kube import recorder
from tests.fakes.kube import store as st
from tests.fakes.kube.store import KINDS, ApiError, Object, Store

PODS, SECRETS = KINDS["pods"], KINDS["secrets"]
TICK_S = 0.2


class DockerKubelet:
    """Run every pod the controller hands over as real containers; stop them when the pod goes."""

    def __init__(self, store: Store, docker_client, *, backoff_s: float = 10.0):
        import docker

        self.store, self.docker, self.backoff_s = store, docker_client, backoff_s
        self.workers: dict[str, _PodWorker] = {}
        # the engine API for pulls, without this machine's docker logins: a node has only the pod's
        # pull secrets (the SDK would otherwise add a login from ~/.docker/config.json)
        self.pulls = docker.APIClient(**docker.utils.kwargs_from_env(), timeout=120)
        self.pulls._auth_configs = docker.auth.AuthConfig({})

    def sync(self, pods: list[Object]) -> None:
        """Start a worker for each new pod; stop those whose pod is gone."""
        live = {p["metadata"]["uid"]: p for p in pods}
        for uid, pod in live.items():
            if uid not in self.workers:
                self.workers[uid] = _PodWorker(self, pod)
                self.workers[uid].start()
        for uid in set(self.workers) - set(live):
            self.workers.pop(uid).stop()

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop()
        self.workers.clear()
        self.pulls.close()


class _Container:
    """What the worker knows of one container: the engine's container, probe counters, back-off."""

    def __init__(self, spec: Object):
        self.spec = spec
        self.engine = None
        self.status = {"name": spec["name"], "image": spec["image"], "imageID": "", "ready": False,
                       "started": False, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}
        self.next_try = 0.0  # monotonic time of the next pull or start
        self.backoff = 0.0
        self.started_at = 0.0
        self.next_probe: dict[str, float] = {}
        self.counts: dict[str, tuple[int, int]] = {}  # probe -> (successes, failures) in a row


class _PodWorker(threading.Thread):
    def __init__(self, kubelet: DockerKubelet, pod: Object):
        super().__init__(name=f"fake-kubelet-{pod['metadata']['name']}", daemon=True)
        self.kubelet, self.pod = kubelet, pod
        self.uid = pod["metadata"]["uid"]
        self.stopping = threading.Event()
        self.containers = [_Container(c) for c in pod["spec"]["containers"]]

    def stop(self) -> None:
        self.stopping.set()
        self.join(15)
        for c in self.containers:
            if c.engine is not None:
                try:
                    c.engine.remove(force=True, v=True)
                except Exception:  # already gone
                    pass

    def run(self) -> None:
        while not self.stopping.is_set():
            now = time.monotonic()
            for c in self.containers:
                try:
                    self._step(c, now)
                except Exception as e:  # the engine refused something the kubelet would report
                    c.status.update(ready=False, started=False, state={"waiting": {
                        "reason": "RunContainerError", "message": str(e)[:500]}})
            self._report()
            self.stopping.wait(TICK_S)

    # --- one container ----------------------------------------------------------

    def _step(self, c: _Container, now: float) -> None:
        waiting = c.status["state"].get("waiting") or {}
        if c.engine is None:
            if now >= c.next_try:
                self._pull_and_create(c, now)
            elif waiting.get("reason") == "ErrImagePull":
                c.status["state"] = {"waiting": {"reason": "ImagePullBackOff",
                                                 "message": f'Back-off pulling image "{c.spec["image"]}"'}}
            return
        if waiting.get("reason") == "CrashLoopBackOff":
            if now >= c.next_try:
                self._start(c, now)
            return
        c.engine.reload()
        if c.engine.status in ("exited", "dead"):
            self._exited(c, now, c.engine.attrs["State"])
            return
        self._probe(c, now)

    def _pull_and_create(self, c: _Container, now: float) -> None:
        image = c.spec["image"]
        try:
            self._pull(image)
        except Exception as e:
            c.backoff = self._next_backoff(c.backoff)
            c.next_try = now + c.backoff
            c.status["state"] = {"waiting": {"reason": "ErrImagePull", "message": (
                f'failed to pull and unpack image "{image}": {_engine_message(e)}')}}
            return
        c.engine = self.kubelet.docker.containers.create(image, name=f"fake-kubelet-{self.uid}-{c.spec['name']}",
                                                         labels={"pinotage-test": "fake-kubelet"},
                                                         **engine_options(self.pod["spec"], c.spec))
        c.status["imageID"] = image
        c.backoff = 0.0
        self._start(c, now)

    def _pull(self, image: str) -> None:
        repository, _, digest = image.partition("@")
        if not digest:
            repository, _, digest = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "latest")
        auth = self._login(repository.split("/", 1)[0])
        # the registry is asked with this login even when the engine holds the image already, as a
        # node that never pulled it would be (the test engine is shared with the builds)
        self.kubelet.pulls.inspect_distribution(image, auth_config=auth or None)
        for line in self.kubelet.pulls.pull(repository, tag=digest, stream=True, decode=True,
                                            auth_config=auth or None):
            if "error" in line:
                raise RuntimeError(line["error"])

    def _login(self, host: str) -> dict:
        """Return the login the pod's own pull secrets hold for host (an empty dict: none)."""
        namespace = self.pod["metadata"]["namespace"]
        for ref in self.pod["spec"].get("imagePullSecrets") or ():
            try:
                secret = self.kubelet.store.get(SECRETS, namespace, ref.get("name", ""))
            except ApiError:
                continue
            if secret.get("type") != "kubernetes.io/dockerconfigjson":
                continue
            auths = json.loads(base64.b64decode((secret.get("data") or {}).get(".dockerconfigjson", ""))).get("auths")
            for key, entry in (auths or {}).items():
                if key.split("://", 1)[-1].split("/", 1)[0] == host:
                    user, _, password = base64.b64decode(entry["auth"]).decode().partition(":") if entry.get(
                        "auth") else (entry.get("username", ""), "", entry.get("password", ""))
                    return {"username": user, "password": password, "serveraddress": host}
        return {}

    def _start(self, c: _Container, now: float) -> None:
        c.engine.start()
        c.started_at = now
        c.next_probe, c.counts = {}, {}
        c.status.update(ready=False, started="startupProbe" not in c.spec,
                        state={"running": {"startedAt": st.now_rfc3339()}})

    def _exited(self, c: _Container, now: float, state: dict, reason: str = "") -> None:
        code = state.get("ExitCode", 137)
        c.status["lastState"] = {"terminated": {
            "exitCode": code, "reason": reason or ("Completed" if code == 0 else "Error"),
            "startedAt": (c.status["state"].get("running") or {}).get("startedAt", st.now_rfc3339()),
            "finishedAt": st.now_rfc3339()}}
        c.status["restartCount"] += 1
        c.backoff = self._next_backoff(c.backoff)
        c.next_try = now + c.backoff
        c.status.update(ready=False, started=False, state={"waiting": {"reason": "CrashLoopBackOff", "message": (
            f"back-off {c.backoff:g}s restarting failed container={c.spec['name']} pod={self.pod['metadata']['name']}"
            f"_{self.pod['metadata']['namespace']}({self.uid})")}})

    def _next_backoff(self, current: float) -> float:
        base = self.kubelet.backoff_s
        return min(current * 2, base * 30) if current else base

    # --- probes -------------------------------------------------------------------

    def _probe(self, c: _Container, now: float) -> None:
        if not c.status["started"]:
            if not self._run_probe(c, "startupProbe", now, on_fail=lambda: self._kill(c, now, "startup")):
                return
            c.status["started"] = True
        if "readinessProbe" not in c.spec:
            c.status["ready"] = True
        else:
            passed = self._run_probe(c, "readinessProbe", now)
            if passed is not None:
                c.status["ready"] = passed
        if "livenessProbe" in c.spec:
            self._run_probe(c, "livenessProbe", now, on_fail=lambda: self._kill(c, now, "liveness"))

    def _run_probe(self, c: _Container, name: str, now: float, on_fail=None) -> bool | None:
        """Run the probe when it is due; return True past successThreshold, False past failureThreshold, None if not due."""
        probe = c.spec[name]
        if now < c.next_probe.get(name, c.started_at + probe.get("initialDelaySeconds", 0)):
            return None
        c.next_probe[name] = now + probe.get("periodSeconds", 10)
        ok, output = self._check(c, probe)
        if not ok:
            recorder.record(self.kubelet.store, self.pod, c.spec["name"], reason="Unhealthy",
                            message=f"{name[:-len('Probe')].capitalize()} probe failed: {output}")
        successes, failures = c.counts.get(name, (0, 0))
        successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
        c.counts[name] = (successes, failures)
        if failures >= probe.get("failureThreshold", 3):
            if on_fail:
                on_fail()
            return False
        if successes >= probe.get("successThreshold", 1):
            return True
        return None

    def _check(self, c: _Container, probe: Object) -> tuple[bool, str]:
        """Run a probe once; return whether it passed and, when not, why in the prober's words."""
        timeout = probe.get("timeoutSeconds", 1)
        if "exec" in probe:
            code, output = c.engine.exec_run(probe["exec"].get("command") or [], user=_user(self.pod["spec"], c.spec))
            return code == 0, (output or b"").decode(errors="replace").strip()
        target = probe.get("httpGet") or probe.get("tcpSocket") or {}
        port = self._host_port(c, target.get("port"))
        if port is None:
            return False, f"no port {target.get('port')} published"
        if "tcpSocket" in probe:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=timeout).close()
                return True, ""
            except OSError as e:
                return False, f"dial tcp 127.0.0.1:{port}: {e}"
        url = f"http://127.0.0.1:{port}{target.get('path', '/')}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                code = r.status
        except urllib.error.HTTPError as e:
            code = e.code
        except OSError as e:
            return False, f'Get "{url}": {e}'
        return 200 <= code < 400, f"HTTP probe failed with statuscode: {code}"

    def _host_port(self, c: _Container, port) -> int | None:
        if isinstance(port, str):
            port = next((p["containerPort"] for p in c.spec.get("ports") or () if p.get("name") == port), None)
        bound = (c.engine.attrs["NetworkSettings"]["Ports"] or {}).get(f"{port}/tcp") or []
        return int(bound[0]["HostPort"]) if bound else None

    def _kill(self, c: _Container, now: float, which: str) -> None:
        c.engine.kill()
        c.engine.reload()
        self._exited(c, now, c.engine.attrs["State"], reason="Error")
        c.status["lastState"]["terminated"]["message"] = f"Container {c.spec['name']} failed {which} probe"

    # --- status ---------------------------------------------------------------------

    def _report(self) -> None:
        statuses = [copy.deepcopy(c.status) for c in self.containers]
        ready = all(s["ready"] for s in statuses)
        unready = [s["name"] for s in statuses if not s["ready"]]
        running = any("running" in s["state"] or s["restartCount"] for s in statuses)
        store = self.kubelet.store
        with store.cond:
            try:
                fresh = store.get(PODS, self.pod["metadata"]["namespace"], self.pod["metadata"]["name"])
            except ApiError:
                self.stopping.set()
                return
            old = fresh.get("status") or {}
            stamp = st.now_rfc3339()
            conditions = {c["type"]: c for c in old.get("conditions") or ()}
            status = {"phase": "Running" if running else "Pending", "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
                      "startTime": old.get("startTime", stamp), "qosClass": old.get("qosClass", "Burstable"),
                      "containerStatuses": statuses, "conditions": []}
            for kind, value in (("PodScheduled", True), ("Initialized", True), ("ContainersReady", ready),
                                ("Ready", ready)):
                text = "True" if value else "False"
                previous = conditions.get(kind, {})
                cond = {"type": kind, "status": text, "lastTransitionTime": previous.get("lastTransitionTime", stamp)
                        if previous.get("status") == text else stamp}
                if not value:
                    cond.update(reason="ContainersNotReady", message=f"containers with unready status: "
                                                                     f"[{' '.join(unready)}]")
                status["conditions"].append(cond)
            if status != old:
                fresh["status"] = status
                store.replace(PODS, self.pod["metadata"]["namespace"], self.pod["metadata"]["name"], fresh)


def _user(pod_spec: Object, spec: Object) -> str | None:
    context = {**(pod_spec.get("securityContext") or {}), **(spec.get("securityContext") or {})}
    if context.get("runAsUser") is None:
        return None
    group = context.get("runAsGroup")
    return f"{context['runAsUser']}:{group}" if group is not None else str(context["runAsUser"])


def engine_options(pod_spec: Object, spec: Object) -> dict:
    """Map a container's spec and securityContext to docker SDK create() options."""
    context = spec.get("securityContext") or {}
    capabilities = context.get("capabilities") or {}
    volumes = {v["name"]: v for v in pod_spec.get("volumes") or ()}
    tmpfs = {}
    for mount in spec.get("volumeMounts") or ():
        volume = volumes.get(mount["name"]) or {}
        if "emptyDir" not in volume:
            raise ValueError(f"the Docker kubelet mounts only emptyDir volumes, not {mount['name']}")
        size = (volume["emptyDir"] or {}).get("sizeLimit")
        tmpfs[mount["mountPath"]] = f"size={size.replace('Mi', 'm').replace('Gi', 'g')}" if size else ""
    options = {
        "user": _user(pod_spec, spec), "read_only": bool(context.get("readOnlyRootFilesystem")),
        "cap_drop": capabilities.get("drop") or None, "cap_add": capabilities.get("add") or None,
        "security_opt": ["no-new-privileges"] if context.get("allowPrivilegeEscalation") is False else None,
        "tmpfs": tmpfs or None,
        "environment": {e["name"]: e.get("value", "") for e in spec.get("env") or ()} or None,
        "ports": {f"{p['containerPort']}/tcp": ("127.0.0.1", None) for p in spec.get("ports") or ()} or None,
    }
    if spec.get("command"):
        options["entrypoint"] = spec["command"]
    if spec.get("args"):
        options["command"] = spec["args"]
    return {k: v for k, v in options.items() if v is not None}


def _engine_message(error: Exception) -> str:
    return str(getattr(error, "explanation", None) or error).strip().splitlines()[0][:300]
