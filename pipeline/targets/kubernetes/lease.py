"""The app's deploy lock: a ``coordination.k8s.io`` Lease, renewed while held, taken over when stale."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

from pipeline import rollout
from pipeline.errors import DeployLocked
from pipeline.targets import Progress
from pipeline.targets.kubernetes.api import KubeApi, cluster_error, path, read_or_none

LEASE_DURATION_S = 30


class Lease:
    """Hold the app's deploy Lease for the duration of a with-block, renewing it in the background."""

    def __init__(self, api: KubeApi, namespace: str, name: str, identity: str, *, duration_s: float, wait_s: float,
                 progress: Progress):
        self.api, self.namespace, self.name, self.identity = api, namespace, name, identity
        self.duration_s, self.wait_s, self.progress = duration_s, wait_s, progress
        self.path = path("coordination.k8s.io/v1", "leases", namespace, name)
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
                    self.api.create(path("coordination.k8s.io/v1", "leases", self.namespace), {
                        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                        "metadata": {"name": self.name, "namespace": self.namespace},
                        "spec": self._spec(transitions=0)})
                    return
                spec = lease.get("spec") or {}
                holder = spec.get("holderIdentity") or ""
                if not holder or holder == self.identity or _expired(spec):
                    if holder and holder != self.identity:
                        self.progress(f"taking over the deploy lock from {holder}: not renewed for "
                                      f"{spec.get('leaseDurationSeconds')} s")
                    lease["spec"] = self._spec(transitions=(spec.get("leaseTransitions") or 0) + (holder != self.identity))
                    self.api.replace(self.path, lease)
                    return
            except ApiException as e:
                if e.status == 409:
                    continue  # someone else wrote it between our read and write: decide again
                raise cluster_error("take", f"lease/{self.name}", e) from e
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
            self.api.replace(self.path, lease)
        except ApiException as e:
            if e.status != 409:  # 409: taken over meanwhile, so it is not ours to release
                raise cluster_error("release", f"lease/{self.name}", e) from e

    def _renew(self) -> None:
        from kubernetes.client import ApiException

        while not self.stopping.wait(self.duration_s / 3):
            lease = self._get()
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return  # lost it: the deploy finishes, the next one decides afresh
            lease["spec"]["renewTime"] = _micro_now()
            try:
                self.api.replace(self.path, lease)
            except ApiException:
                continue

    def _get(self) -> dict | None:
        return read_or_none(self.api, self.path, f"lease/{self.name}")

    def _spec(self, *, transitions: int) -> dict:
        now = _micro_now()
        return {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.duration_s),
                "acquireTime": now, "renewTime": now, "leaseTransitions": int(transitions)}


def _expired(spec: dict) -> bool:
    renewed = rollout.parse_time(spec.get("renewTime") or spec.get("acquireTime"))
    if renewed is None:
        return True
    return (datetime.now(timezone.utc) - renewed).total_seconds() > (spec.get("leaseDurationSeconds") or 0)


def _micro_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
