"""The Kubernetes target: server-side apply, a watching rollout gate, rollback, a Lease, a ledger.

One deploy, in order:

1. take the app's Lease (``coordination.k8s.io``), waiting while another live deploy holds it and
   taking it over when its holder stopped renewing it past its duration;
2. read the Deployment; refuse (``DeployRefused``, nothing written) a commit that is an
   ancestor of the deployed one (its ``pinotage.dev/commit`` annotation);
3. server-side apply ``deploy.manifest`` (field manager ``pinotage``) with the image by digest and
   the commit, build URL, ledger id and ``kubernetes.io/change-cause`` annotations, carrying the
   resourceVersion read in 2. A 409 goes back to 2: re-read, re-decide, never a blind retry;
4. gate: watch the Deployment, its ReplicaSets and pods, and judge each change with
   ``pipeline.rollout`` until done, failed, or ``deadlines.rollout_s``;
5. on failure, apply again the pod template that was serving before (only if that is still this
   deploy's Deployment: a newer deploy that landed meanwhile is never undone), gate that too,
   and raise ``DeployFailed`` saying which release serves again and at which revision.

The target writes no ledger record: the runner writes one per attempt, into the storage this
target provides (``ledger()``), a ConfigMap ``pinotage-ledger-<app>`` holding the newest records
as JSON. The Deployment's ledger-id annotation names the record of the deploy whose template it
runs, so after a rollback it names that earlier deploy's record.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import queue
import socket
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from pipeline import rollout
from pipeline.errors import BadInput, ClusterError, DeployFailed, DeployLocked, DeployRefused, PinotageError
from pipeline.ledger import Record, new_id
from pipeline.state import Deployment, Image, Release
from pipeline.targets import IsAncestor, Progress

FIELD_MANAGER = "pinotage"
COMMIT = "pinotage.dev/commit"
BUILD_URL = "pinotage.dev/build-url"
LEDGER_ID = "pinotage.dev/ledger-id"
CHANGE_CAUSE = "kubernetes.io/change-cause"
LEASE_DURATION_S = 30
LEDGER_KEY = "records.json"
LEDGER_KEEP = 200  # records kept in the ConfigMap (its limit is 1 MiB)
CONFLICT_ATTEMPTS = 5
WATCH_TIMEOUT_S = 290  # below API servers' request timeouts; the watch resumes from its resourceVersion


def make_target(config, environ: Mapping[str, str], progress: Progress) -> "KubernetesTarget":
    """Build the target from the configuration (the runner calls this for deploy.target=kubernetes)."""
    import yaml

    from pipeline import kube

    path = config.path(config.deploy.manifest)
    try:
        manifest = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise BadInput(f"deploy.manifest: {path}: cannot read a Deployment from it ({e})") from e
    if not isinstance(manifest, dict) or manifest.get("kind") != "Deployment":
        raise BadInput(f"deploy.manifest: {path}: expected one Deployment, got "
                       f"{(manifest or {}).get('kind') if isinstance(manifest, dict) else type(manifest).__name__}")
    cluster = kube.connect(config, environ)
    return KubernetesTarget(cluster.api, namespace=cluster.namespace, manifest=manifest, app=config.app,
                            rollout_s=config.deadlines.rollout_s, lock_s=config.deadlines.lock_s)


class KubernetesTarget:
    """Deploy a release to a Deployment on a cluster (see the module docstring for the order)."""

    name = "kubernetes"

    def __init__(self, api, *, namespace: str, manifest: dict, app: str, rollout_s: float, lock_s: float,
                 lease_duration_s: float = LEASE_DURATION_S, unschedulable_grace_s: float = rollout.UNSCHEDULABLE_GRACE_S,
                 identity: str = ""):
        from kubernetes import client

        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)
        self.coordination = client.CoordinationV1Api(api)
        self.namespace = namespace
        self.manifest = manifest
        self.deployment_name = manifest["metadata"]["name"]
        self.app = app
        self.rollout_s = rollout_s
        self.lock_s = lock_s
        self.lease_duration_s = lease_duration_s
        self.unschedulable_grace_s = unschedulable_grace_s
        self.identity = identity or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._ledger = ClusterLedger(self.core, namespace, f"pinotage-ledger-{app}")

    # --- the Target protocol ----------------------------------------------------

    def ledger(self) -> "ClusterLedger":
        return self._ledger

    def deployed(self) -> Release | None:
        """Return what the Deployment runs now, from its annotations and image."""
        live = self._read()
        return _release_of(live) if live else None

    def deploy(self, release: Release, *, is_ancestor: IsAncestor, progress: Progress) -> Deployment:
        """Apply the release, gate it, and roll back by itself when the gate fails."""
        ledger_id = release.ledger_id or new_id()
        with Lease(self.coordination, self.namespace, f"pinotage-deploy-{self.app}", self.identity,
                   duration_s=self.lease_duration_s, wait_s=self.lock_s, progress=progress):
            def decide(live: dict | None) -> dict:
                current = _release_of(live) if live else None
                if current and current.commit and current.commit != release.commit \
                        and is_ancestor(release.commit, current.commit):
                    raise DeployRefused(f"{release.commit[:12]} is older than the deployed {current.commit[:12]}: "
                                        "not deploying it", hint="deploy a newer commit, or use 'pinotage rollback'")
                progress(f"applying {release.image.pinned} to deployment/{self.deployment_name} "
                         f"in namespace {self.namespace}")
                return self._render(release, ledger_id, _change_cause("deploy", release), live=live)

            applied, live = self._apply_decided(decide, what="deploy", progress=progress)
            current = _release_of(live) if live else None
            fallback = self._serving_template(live)
            verdict = self._gate(applied, progress)
            if isinstance(verdict, rollout.Done):
                return Deployment(target=self.name, revision=str(self._revision()), previous=current,
                                  release=dataclasses.replace(release, ledger_id=ledger_id))
            if fallback is None or current is None:
                raise DeployFailed(f"the rollout of {release.commit[:12]} failed ({verdict.reason}: "
                                   f"{verdict.message}); nothing to roll back to (no earlier successful deploy)",
                                   rolled_back=False, hint="fix the release and deploy again")
            progress(f"rollout failed ({verdict.reason}); rolling back to {current.commit[:12]}")
            try:
                back = self._return_to(current, fallback, expected_ledger_id=ledger_id, progress=progress,
                                       why=f"{release.commit[:12]} failed: {verdict.reason}")
            except (DeployRefused, DeployFailed) as e:
                raise DeployFailed(f"the rollout of {release.commit[:12]} failed ({verdict.reason}); {e.message}",
                                   rolled_back=False, hint=e.hint) from e
            raise DeployFailed(f"the rollout of {release.commit[:12]} failed ({verdict.reason}: {verdict.message}); "
                               f"rolled back to {current.commit[:12]}, which serves again", rolled_back=True,
                               returned_to=current, revision=back.revision)

    def rollback(self, to_commit: str | None = None, *, progress: Progress) -> Deployment:
        """Return to the previous successful deploy, or the named one, unless a newer deploy lands first."""
        with Lease(self.coordination, self.namespace, f"pinotage-deploy-{self.app}", self.identity,
                   duration_s=self.lease_duration_s, wait_s=self.lock_s, progress=progress):
            live = self._read()
            if live is None:
                raise DeployRefused(f"deployment/{self.deployment_name} does not exist: nothing to roll back")
            current = _release_of(live)
            # only "deployed" records put their own release live ("rolled-back" ones failed)
            good = [r for r in self._ledger.records() if r.outcome == "deployed" and "@" in r.image]
            if to_commit:
                matches = [r for r in good if r.commit.startswith(to_commit)]
            else:
                matches = [r for r in good if r.commit != current.commit]
            if not matches:
                raise DeployRefused(f"no successful deploy of {to_commit or 'an earlier commit'} in the ledger",
                                    hint="see 'pinotage history'")
            target = matches[-1]
            if target.commit == current.commit:
                raise DeployRefused(f"{target.commit[:12]} is already deployed")
            name, _, digest = target.image.partition("@")
            # the Deployment will name the record of the deploy whose template it runs again
            release = Release(image=Image(name=name, tag="", digest=digest, commit=target.commit),
                              commit=target.commit, build_url=target.build_url, ledger_id=target.id)
            template = self._template_of(live, target) or self._render(release, "", "", live=None)["spec"]["template"]
            deployment = self._return_to(release, template, expected_ledger_id=current.ledger_id, progress=progress,
                                         why=f"rollback requested from {current.commit[:12]}")
            return dataclasses.replace(deployment, previous=current)

    # --- steps -------------------------------------------------------------------

    def _return_to(self, release: Release, template: dict, *, expected_ledger_id: str, progress: Progress,
                   why: str) -> Deployment:
        """Apply an earlier release's template and gate it; refuse when someone else's deploy is live now."""
        def decide(live: dict | None) -> dict:
            live_id = ((live or {}).get("metadata", {}).get("annotations") or {}).get(LEDGER_ID, "")
            if live is None or live_id != expected_ledger_id:
                raise DeployRefused(f"not rolling back to {release.commit[:12]}: a newer deploy "
                                    f"({live_id or 'unknown'}) has landed since")
            body = self._render(release, release.ledger_id, _change_cause("rollback", release, why), live=live)
            body["spec"]["template"] = _clean_template(template)
            return body

        applied, _ = self._apply_decided(decide, what="rollback", progress=progress)
        verdict = self._gate(applied, progress)
        if isinstance(verdict, rollout.Done):
            return Deployment(target=self.name, revision=str(self._revision()), release=release)
        raise DeployFailed(f"the rollback to {release.commit[:12]} failed too ({verdict.reason}: {verdict.message})",
                           rolled_back=False, attempted=release,
                           hint="the cluster needs a person: kubectl rollout status shows why")

    def _apply_decided(self, decide: Callable[[dict | None], dict], *, what: str,
                       progress: Progress) -> tuple[dict, dict | None]:
        """Read the Deployment, let ``decide`` turn it into a body (or refuse), and apply that body.

        The body carries the resourceVersion that was read, so a write that lost a race gets a 409:
        then the Deployment is read and the decision made again, never blindly retried.
        Return what was applied and what the decision was made on.
        """
        for _ in range(CONFLICT_ATTEMPTS):
            live = self._read()
            body = decide(live)
            try:
                return self._apply(body), live
            except _Conflict:
                progress("the Deployment changed since it was read: reading it again")
        raise ClusterError(f"deployment/{self.deployment_name} kept changing under the {what} "
                           f"({CONFLICT_ATTEMPTS} conflicts in a row)")

    def _read(self) -> dict | None:
        from kubernetes.client import ApiException

        try:
            response = self.apps.read_namespaced_deployment(self.deployment_name, self.namespace,
                                                            _preload_content=False)
        except ApiException as e:
            if e.status == 404:
                return None
            raise _cluster_error("read", f"deployment/{self.deployment_name}", e) from e
        return json.loads(response.data)

    def _revision(self) -> int:
        live = self._read()
        return rollout.revision(live) if live else 0

    def _render(self, release: Release, ledger_id: str, cause: str, *, live: dict | None) -> dict:
        body = copy.deepcopy(self.manifest)
        meta = body.setdefault("metadata", {})
        meta["namespace"] = self.namespace
        annotations = meta.setdefault("annotations", {})
        annotations.update({COMMIT: release.commit, BUILD_URL: release.build_url, LEDGER_ID: ledger_id,
                            CHANGE_CAUSE: cause})
        if live is not None:
            meta["resourceVersion"] = live["metadata"]["resourceVersion"]
        containers = body["spec"]["template"]["spec"]["containers"]
        container = next((c for c in containers if c["name"] == self.deployment_name), containers[0])
        container["image"] = release.image.pinned
        return body

    def _apply(self, body: dict) -> dict:
        from kubernetes.client import ApiException

        try:
            response = self.apps.patch_namespaced_deployment(
                self.deployment_name, self.namespace, body, field_manager=FIELD_MANAGER, force=True,
                _content_type="application/apply-patch+yaml", _preload_content=False)
        except ApiException as e:
            if e.status == 409:
                raise _Conflict() from e
            raise _cluster_error("apply", f"deployment/{self.deployment_name}", e) from e
        return json.loads(response.data)

    def _serving_template(self, live: dict | None) -> dict | None:
        """Return the live pod template if its rollout had succeeded: what a failed deploy returns to."""
        if live is None:
            return None
        judged = rollout.verdict(live, now=datetime.now(timezone.utc))
        return copy.deepcopy(live["spec"]["template"]) if isinstance(judged, rollout.Done) else None

    def _template_of(self, live: dict, record: Record) -> dict | None:
        """Find the pod template a recorded deploy ran, in the Deployment's ReplicaSet history."""
        sets = self._list("replicasets", _selector(live))
        owned = [rs for rs in sets if any(o.get("uid") == live["metadata"]["uid"]
                                          for o in rs["metadata"].get("ownerReferences") or ())]
        for rs in sorted(owned, key=rollout.revision, reverse=True):
            images = [c["image"] for c in rs["spec"]["template"]["spec"]["containers"]]
            if (rs["metadata"].get("annotations") or {}).get(COMMIT) == record.commit and record.image in images:
                template = copy.deepcopy(rs["spec"]["template"])
                template["metadata"].get("labels", {}).pop("pod-template-hash", None)
                return template
        return None

    def _list(self, resource: str, selector: str) -> list[dict]:
        from kubernetes.client import ApiException

        call = {"replicasets": self.apps.list_namespaced_replica_set, "pods": self.core.list_namespaced_pod}[resource]
        try:
            return json.loads(call(self.namespace, label_selector=selector, _preload_content=False).data)["items"]
        except ApiException as e:
            raise _cluster_error("list", resource, e) from e

    # --- the gate ------------------------------------------------------------------

    def _gate(self, applied: dict, progress: Progress) -> rollout.Verdict:
        """Watch the rollout and judge every change until it is done, failed, or past the deadline."""
        events: queue.Queue = queue.Queue()
        selector = _selector(applied)
        streams = [
            _Watch(self.apps.list_namespaced_deployment, self.namespace, events, "deployments",
                   field_selector=f"metadata.name={self.deployment_name}"),
            _Watch(self.apps.list_namespaced_replica_set, self.namespace, events, "replicasets",
                   label_selector=selector),
            _Watch(self.core.list_namespaced_pod, self.namespace, events, "pods", label_selector=selector),
        ]
        seen: dict[str, dict[str, dict]] = {"deployments": {}, "replicasets": {}, "pods": {}}
        synced: set[str] = set()
        generation = applied["metadata"].get("generation", 0)
        deadline = time.monotonic() + self.rollout_s
        said = ""
        for stream in streams:
            stream.start()
        try:
            while True:
                batch = []
                try:
                    # the timeout only re-judges time-based rules (Unschedulable grace); the API is not polled
                    batch.append(events.get(timeout=max(0.0, min(1.0, deadline - time.monotonic()))))
                    while True:
                        batch.append(events.get_nowait())
                except queue.Empty:
                    pass
                for kind, event, payload in batch:
                    if event == "ERROR":
                        raise payload
                    if event == "SYNC":
                        seen[kind] = {o["metadata"]["uid"]: o for o in payload}
                        synced.add(kind)
                    elif event == "DELETED":
                        seen[kind].pop(payload["metadata"]["uid"], None)
                    else:
                        seen[kind][payload["metadata"]["uid"]] = payload
                deployment = next(iter(seen["deployments"].values()), None)
                if len(synced) == 3 and deployment is not None:
                    if deployment["metadata"].get("generation", 0) < generation:
                        verdict: rollout.Verdict = rollout.Waiting("Waiting for the applied spec to be stored...")
                    else:
                        verdict = rollout.verdict(deployment, seen["replicasets"].values(), seen["pods"].values(),
                                                  now=datetime.now(timezone.utc),
                                                  unschedulable_grace_s=self.unschedulable_grace_s)
                    message = verdict.message
                    if message != said:
                        progress(message)
                        said = message
                    if not isinstance(verdict, rollout.Waiting):
                        return verdict
                if time.monotonic() >= deadline:
                    return rollout.Failed("DeadlineExceeded", f"the rollout did not finish within "
                                                              f"{self.rollout_s:g} s (deadlines.rollout_s)")
        finally:
            for stream in streams:
                stream.stop()


class _Conflict(Exception):
    """The API server answered 409: what was read is no longer current."""


class _Watch(threading.Thread):
    """List, then watch from the list's resourceVersion; put (kind, SYNC|ADDED|MODIFIED|DELETED, obj) events."""

    def __init__(self, list_call: Callable, namespace: str, events: queue.Queue, kind: str, **selectors: str):
        super().__init__(name=f"pinotage-watch-{kind}", daemon=True)
        self.list_call, self.namespace, self.events, self.kind = list_call, namespace, events, kind
        self.selectors = selectors
        self.stopping = threading.Event()
        self.response = None

    def run(self) -> None:
        from kubernetes.client import ApiException
        from kubernetes.watch.watch import iter_resp_lines

        try:
            version = ""
            while not self.stopping.is_set():
                if not version:
                    listed = json.loads(self.list_call(self.namespace, _preload_content=False, **self.selectors).data)
                    self.events.put((self.kind, "SYNC", listed["items"]))
                    version = listed["metadata"]["resourceVersion"]
                self.response = self.list_call(self.namespace, watch=True, resource_version=version,
                                               allow_watch_bookmarks=True, timeout_seconds=WATCH_TIMEOUT_S,
                                               _preload_content=False, **self.selectors)
                if self.stopping.is_set():
                    break
                for line in iter_resp_lines(self.response):
                    if not line:
                        continue
                    event = json.loads(line)
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        if obj.get("code") == 410:
                            version = ""  # expired: list again
                            break
                        raise ClusterError(f"watching {self.kind}: {obj.get('message')}")
                    version = obj["metadata"].get("resourceVersion", version)
                    if event["type"] != "BOOKMARK":
                        self.events.put((self.kind, event["type"], obj))
        except ApiException as e:
            if not self.stopping.is_set():
                self.events.put((self.kind, "ERROR", _cluster_error("watch", self.kind, e)))
        except ClusterError as e:
            self.events.put((self.kind, "ERROR", e))
        except Exception as e:  # the connection was shut down by stop(), or broke
            if not self.stopping.is_set():
                self.events.put((self.kind, "ERROR", ClusterError(f"watching {self.kind}: {e}")))

    def stop(self) -> None:
        self.stopping.set()
        if self.response is not None:
            try:
                self.response.shutdown()
                self.response.release_conn()
            except Exception:  # already closed
                pass
        self.join(5)


class Lease:
    """Hold the app's deploy Lease for the duration of a with-block, renewing it in the background."""

    def __init__(self, api, namespace: str, name: str, identity: str, *, duration_s: float, wait_s: float,
                 progress: Progress):
        self.api, self.namespace, self.name, self.identity = api, namespace, name, identity
        self.duration_s, self.wait_s, self.progress = duration_s, wait_s, progress
        self.stopping = threading.Event()
        self.renewer: threading.Thread | None = None

    def __enter__(self) -> "Lease":
        self.acquire()
        self.renewer = threading.Thread(target=self._renew, name="pinotage-lease", daemon=True)
        self.renewer.start()
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.stopping.set()
        if self.renewer:
            self.renewer.join(5)
        if exc_type is None:
            self.release()
            return
        try:
            self.release()
        except Exception as e:  # the error already unwinding is the one the user must see
            self.progress(f"{getattr(e, 'message', e)}; the deploy lock is freed when it expires"
                          f" ({self.duration_s:g} s)")

    def acquire(self) -> None:
        """Take the Lease: create it, take it when free or stale, else wait for it up to wait_s."""
        from kubernetes.client import ApiException

        deadline = time.monotonic() + self.wait_s
        told = ""
        while True:
            lease = self._get()
            try:
                if lease is None:
                    self.api.create_namespaced_lease(self.namespace, {
                        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                        "metadata": {"name": self.name, "namespace": self.namespace},
                        "spec": self._spec(transitions=0)}, _preload_content=False)
                    return
                spec = lease.get("spec") or {}
                holder = spec.get("holderIdentity") or ""
                if not holder or holder == self.identity or _expired(spec):
                    if holder and holder != self.identity:
                        self.progress(f"taking over the deploy lock from {holder}: not renewed for "
                                      f"{spec.get('leaseDurationSeconds')} s")
                    lease["spec"] = self._spec(transitions=(spec.get("leaseTransitions") or 0) + (holder != self.identity))
                    self.api.replace_namespaced_lease(self.name, self.namespace, lease, _preload_content=False)
                    return
            except ApiException as e:
                if e.status == 409:
                    continue  # someone else wrote it between our read and write: decide again
                raise _cluster_error("take", f"lease/{self.name}", e) from e
            if holder != told:
                self.progress(f"waiting for the deploy lock held by {holder}")
                told = holder
            if time.monotonic() >= deadline:
                raise DeployLocked(f"another deploy ({holder}) held lease/{self.name} for over {self.wait_s:g} s",
                                   hint="wait for it, or raise deadlines.lock_s")
            # a Lease changes only when its holder renews or leaves; half a second keeps the wait short
            time.sleep(0.5)

    def release(self) -> None:
        from kubernetes.client import ApiException

        lease = self._get()
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
            return
        lease["spec"].pop("holderIdentity", None)
        try:
            self.api.replace_namespaced_lease(self.name, self.namespace, lease, _preload_content=False)
        except ApiException as e:
            if e.status != 409:  # 409: taken over meanwhile, so it is not ours to release
                raise _cluster_error("release", f"lease/{self.name}", e) from e

    def _renew(self) -> None:
        from kubernetes.client import ApiException

        while not self.stopping.wait(self.duration_s / 3):
            lease = self._get()
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return  # lost it: the deploy finishes, the next one decides afresh
            lease["spec"]["renewTime"] = _micro_now()
            try:
                self.api.replace_namespaced_lease(self.name, self.namespace, lease, _preload_content=False)
            except ApiException:
                continue

    def _get(self) -> dict | None:
        from kubernetes.client import ApiException

        try:
            return json.loads(self.api.read_namespaced_lease(self.name, self.namespace, _preload_content=False).data)
        except ApiException as e:
            if e.status == 404:
                return None
            raise _cluster_error("read", f"lease/{self.name}", e) from e

    def _spec(self, *, transitions: int) -> dict:
        now = _micro_now()
        return {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.duration_s),
                "acquireTime": now, "renewTime": now, "leaseTransitions": int(transitions)}


class ClusterLedger:
    """Store the deploy records (the runner writes them) in a ConfigMap: newest last, at most LEDGER_KEEP."""

    def __init__(self, core, namespace: str, name: str):
        self.core, self.namespace, self.name = core, namespace, name

    def records(self) -> list[Record]:
        """Return every record, oldest first."""
        found = self._get()
        return [Record(**item) for item in _parse(found)] if found else []

    def append(self, record: Record) -> None:
        """Add a record; a concurrent writer's 409 re-reads and appends again."""
        from kubernetes.client import ApiException

        for _ in range(CONFLICT_ATTEMPTS * 2):
            found = self._get()
            items = (_parse(found) if found else []) + [dataclasses.asdict(record)]
            data = {LEDGER_KEY: json.dumps(items[-LEDGER_KEEP:], indent=1)}
            try:
                if found is None:
                    self.core.create_namespaced_config_map(self.namespace, {
                        "apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": self.name, "namespace": self.namespace,
                                     "labels": {"app.kubernetes.io/part-of": "pinotage"}},
                        "data": data}, _preload_content=False)
                else:
                    found["data"] = data
                    self.core.replace_namespaced_config_map(self.name, self.namespace, found, _preload_content=False)
                return
            except ApiException as e:
                if e.status == 409:
                    continue
                raise _cluster_error("write", f"configmap/{self.name}", e) from e
        raise ClusterError(f"configmap/{self.name} kept changing; the record {record.id} was not written")

    def _get(self) -> dict | None:
        from kubernetes.client import ApiException

        try:
            return json.loads(self.core.read_namespaced_config_map(self.name, self.namespace,
                                                                   _preload_content=False).data)
        except ApiException as e:
            if e.status == 404:
                return None
            raise _cluster_error("read", f"configmap/{self.name}", e) from e


# --- helpers ---------------------------------------------------------------------------

def _parse(configmap: dict) -> list[dict]:
    try:
        return json.loads((configmap.get("data") or {}).get(LEDGER_KEY, "[]"))
    except ValueError as e:
        raise ClusterError(f"configmap/{configmap['metadata']['name']}: {LEDGER_KEY} is not JSON ({e})") from e


def _release_of(deployment: dict) -> Release:
    annotations = deployment["metadata"].get("annotations") or {}
    containers = deployment["spec"]["template"]["spec"]["containers"]
    name = deployment["metadata"]["name"]
    image = next((c for c in containers if c["name"] == name), containers[0])["image"]
    repository, _, digest = image.partition("@")
    tag = ""
    if not digest:
        repository, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "latest")
    commit = annotations.get(COMMIT, "")
    return Release(image=Image(name=repository, tag=tag, digest=digest, commit=commit), commit=commit,
                   build_url=annotations.get(BUILD_URL, ""), ledger_id=annotations.get(LEDGER_ID, ""))


def _clean_template(template: dict) -> dict:
    template = copy.deepcopy(template)
    meta = template.setdefault("metadata", {})
    meta.pop("creationTimestamp", None)
    (meta.get("labels") or {}).pop("pod-template-hash", None)
    return template


def _selector(deployment: dict) -> str:
    labels = deployment["spec"]["selector"]["matchLabels"]
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _change_cause(verb: str, release: Release, why: str = "") -> str:
    parts = [f"pinotage {verb} {release.commit[:12]}"]
    if why:
        parts.append(f"({why})")
    if release.build_url:
        parts.append(release.build_url)
    return " ".join(parts)


def _expired(spec: dict) -> bool:
    renewed = rollout.parse_time(spec.get("renewTime") or spec.get("acquireTime"))
    if renewed is None:
        return True
    return (datetime.now(timezone.utc) - renewed).total_seconds() > (spec.get("leaseDurationSeconds") or 0)


def _cluster_error(action: str, what: str, e) -> PinotageError:
    try:
        status = json.loads(e.body or "{}")
    except ValueError:
        status = {}
    message = status.get("message") or e.reason or "no answer"
    hint = ("the deployer Role (k8s/presentation/rbac.yaml) does not allow this" if e.status == 403 else
            "check the kubeconfig's credentials" if e.status == 401 else "")
    return ClusterError(f"cannot {action} {what}: {e.status} {status.get('reason', '')}: {message}".replace("  ", " "),
                        hint=hint)


def _micro_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
