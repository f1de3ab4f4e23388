"""The Kubernetes target: server-side apply, a watching rollout gate, rollback, a Lease, a ledger.

One deploy, in order:

1. take the app's Lease (``coordination.k8s.io``), waiting while another live deploy holds it and
   taking it over when its holder stopped renewing it past its duration;
2. read the Deployment; refuse (``DeployRefused``, nothing written) a commit that is an
   ancestor of the deployed one (its ``pinotage.dev/commit`` annotation);
3. server-side apply ``deploy.manifest`` (field manager ``pinotage``) with the image by digest and
   the commit, build URL, ledger id and ``kubernetes.io/change-cause`` annotations, carrying the
   resourceVersion read in 2. A 409 goes back to 2: re-read, re-decide, never a blind retry.
   With a registry login, the pull Secret is applied first and the pod template names it
   (``pull_secret.py``);
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
import os
import socket
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable, Mapping

from pipeline import rollout
from pipeline.errors import BadInput, ClusterError, DeployFailed, DeployRefused
from pipeline.ledger import new_id, pick_rollback, release_of
from pipeline.state import Deployment, Image, Release
from pipeline.targets import IsAncestor, Progress
from pipeline.targets.kubernetes.api import APPLY, CONFLICT_ATTEMPTS, KubeApi, cluster_error, path, read_or_none
from pipeline.targets.kubernetes.gate import gate, selector
from pipeline.targets.kubernetes import pull_secret
from pipeline.targets.kubernetes.lease import LEASE_DURATION_S, Lease
from pipeline.targets.kubernetes.ledger import ClusterLedger

if TYPE_CHECKING:
    from pipeline.registry import Credentials

FIELD_MANAGER = "pinotage"
COMMIT = "pinotage.dev/commit"
BUILD_URL = "pinotage.dev/build-url"
LEDGER_ID = "pinotage.dev/ledger-id"
CHANGE_CAUSE = "kubernetes.io/change-cause"


def make_target(config, environ: Mapping[str, str], progress: Progress, *,
                credentials: Callable[[], Credentials | None], api=None) -> "KubernetesTarget":
    """Build the target from the configuration (``services.make_target`` calls this for deploy.target=kubernetes).

    ``credentials()`` gives the registry login the nodes pull with, asked for by a deploy only.
    ``api`` is a client made elsewhere (cluster redeploy's, from the new control plane); without
    one, the kubeconfig settings name the cluster.
    """
    from pipeline import kube

    manifest = read_manifest(config)
    if api is None:
        cluster = kube.connect(config, environ)
        api, namespace = cluster.api, cluster.namespace
    else:
        namespace = config.deploy.namespace
    return KubernetesTarget(api, namespace=namespace, manifest=manifest, app=config.app,
                            rollout_s=config.deadlines.rollout_s, lock_s=config.deadlines.lock_s,
                            read_pull_secret=lambda: pull_secret.for_login(config, credentials()))


def read_manifest(config) -> dict:
    """Read ``deploy.manifest``: one Deployment with a name (previews are made from it too)."""
    from pipeline import files, safe_yaml

    path = config.path(config.deploy.manifest)
    where = f"deploy.manifest: {path}"
    manifest = safe_yaml.load(files.read_text(path, what="manifest", name=where), where=where)
    if not isinstance(manifest, dict) or manifest.get("kind") != "Deployment":
        raise BadInput(f"{where}: expected one Deployment, got "
                       f"{(manifest or {}).get('kind') if isinstance(manifest, dict) else type(manifest).__name__}")
    metadata = manifest.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str) or not metadata["name"]:
        raise BadInput(f"{where}: the Deployment has no metadata.name")
    return manifest


class KubernetesTarget:
    """Deploy a release to a Deployment on a cluster (see the module docstring for the order)."""

    name = "kubernetes"

    def __init__(self, api, *, namespace: str, manifest: dict, app: str, rollout_s: float, lock_s: float,
                 lease_duration_s: float = LEASE_DURATION_S, unschedulable_grace_s: float = rollout.UNSCHEDULABLE_GRACE_S,
                 identity: str = "", read_pull_secret: Callable[[], "pull_secret.PullSecret | None"] = lambda: None):
        self.api = KubeApi(api)
        self.namespace = namespace
        self.manifest = manifest
        self.deployment_name = manifest["metadata"]["name"]
        self.app = app
        self.rollout_s = rollout_s
        self.lock_s = lock_s
        self.lease_duration_s = lease_duration_s
        self.unschedulable_grace_s = unschedulable_grace_s
        self.identity = identity or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.read_pull_secret = read_pull_secret  # read only by a deploy, which is when nodes pull
        self._ledger = ClusterLedger(self.api, namespace, f"pinotage-ledger-{app}")

    # --- the Target protocol ----------------------------------------------------

    def ledger(self) -> ClusterLedger:
        return self._ledger

    def url(self) -> str:
        """Return "": where a cluster serves the app (NodePort, ingress) is not the target's to know."""
        return ""

    def deployed(self) -> Release | None:
        """Return what the Deployment runs now, from its annotations and image."""
        live = self._read()
        return _release_of(live) if live else None

    def would_apply(self, release: Release) -> tuple[dict | None, dict | None]:
        """Return the live Deployment and what a deploy of ``release`` would make of it; write nothing.

        The deploy's own rendering of ``deploy.manifest`` is server-side applied with ``dryRun=All``
        (field manager ``pinotage``, forced, as a deploy is), so the answer carries the server's
        defaults and the managedFields the apply would leave. What a deploy takes from its run
        rather than from k8s/ (the commit, build URL, ledger id and change-cause annotations, the
        pull secret's name) is copied from the live object. (None, None) when nothing is live.
        """
        live = self._read()
        if live is None:
            return None, None
        annotations = live["metadata"].get("annotations") or {}
        pulls = live["spec"]["template"]["spec"].get("imagePullSecrets") or []
        body = self._render(dataclasses.replace(release, build_url=annotations.get(BUILD_URL, "")),
                            annotations.get(LEDGER_ID, ""), annotations.get(CHANGE_CAUSE, ""), live=None,
                            pull_secret=pulls[0]["name"] if len(pulls) == 1 else "")
        body["metadata"]["annotations"][COMMIT] = annotations.get(COMMIT, release.commit)
        return live, self._apply(body, dry_run=True)

    def stage(self, release: Release, *, progress: Progress) -> None:
        """Stage nothing: the nodes pull the image from the registry, so nothing can start before the push."""
        return None

    def deploy(self, release: Release, *, is_ancestor: IsAncestor, progress: Progress) -> Deployment:
        """Apply the release, gate it, and roll back by itself when the gate fails."""
        ledger_id = release.ledger_id or new_id()
        pull = self.read_pull_secret()
        with Lease(self.api, self.namespace, f"pinotage-deploy-{self.app}", self.identity,
                   duration_s=self.lease_duration_s, wait_s=self.lock_s, progress=progress):
            if pull is not None:
                progress(f"applying secret/{pull.name}: the registry login the nodes pull with")
                pull_secret.apply(self.api, self.namespace, pull)

            def decide(live: dict | None) -> dict:
                current = _release_of(live) if live else None
                if current and current.commit and current.commit != release.commit \
                        and is_ancestor(release.commit, current.commit):
                    raise DeployRefused(f"{release.commit[:12]} is older than the deployed {current.commit[:12]}: "
                                        "not deploying it", hint="deploy a newer commit, or use 'pinotage rollback'")
                progress(f"applying {release.image.pinned} to deployment/{self.deployment_name} "
                         f"in namespace {self.namespace}")
                return self._render(release, ledger_id, _change_cause("deploy", release), live=live,
                                    pull_secret=pull.name if pull else "")

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
        with Lease(self.api, self.namespace, f"pinotage-deploy-{self.app}", self.identity,
                   duration_s=self.lease_duration_s, wait_s=self.lock_s, progress=progress):
            live = self._read()
            if live is None:
                raise DeployRefused(f"deployment/{self.deployment_name} does not exist: nothing to roll back")
            current = _release_of(live)
            # the Deployment will name the record of the deploy whose template it runs again
            release = release_of(pick_rollback(self._ledger.records(), live=current, to_commit=to_commit))
            template = self._template_of(live, release) or self._render(release, "", "", live=None)["spec"]["template"]
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
        return read_or_none(self.api, self._path(), f"deployment/{self.deployment_name}")

    def _path(self) -> str:
        return path("apps/v1", "deployments", self.namespace, self.deployment_name)

    def _revision(self) -> int:
        live = self._read()
        return rollout.revision(live) if live else 0

    def _render(self, release: Release, ledger_id: str, cause: str, *, live: dict | None,
                pull_secret: str = "") -> dict:
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
        if pull_secret:
            body["spec"]["template"]["spec"]["imagePullSecrets"] = [{"name": pull_secret}]
        return body

    def _apply(self, body: dict, *, dry_run: bool = False) -> dict:
        from kubernetes.client import ApiException

        try:
            return self.api.patch(self._path(), body, APPLY, {"fieldManager": FIELD_MANAGER, "force": True,
                                                              **({"dryRun": "All"} if dry_run else {})})
        except ApiException as e:
            if e.status == 409:
                raise _Conflict() from e
            raise cluster_error("apply", f"deployment/{self.deployment_name}", e) from e

    def _serving_template(self, live: dict | None) -> dict | None:
        """Return the live pod template if its rollout had succeeded: what a failed deploy returns to."""
        if live is None:
            return None
        judged = rollout.verdict(live, now=datetime.now(timezone.utc))
        return copy.deepcopy(live["spec"]["template"]) if isinstance(judged, rollout.Done) else None

    def _template_of(self, live: dict, release: Release) -> dict | None:
        """Find the pod template a recorded deploy ran, in the Deployment's ReplicaSet history."""
        sets = self._replica_sets(selector(live))
        owned = [rs for rs in sets if any(o.get("uid") == live["metadata"]["uid"]
                                          for o in rs["metadata"].get("ownerReferences") or ())]
        for rs in sorted(owned, key=rollout.revision, reverse=True):
            images = [c["image"] for c in rs["spec"]["template"]["spec"]["containers"]]
            if (rs["metadata"].get("annotations") or {}).get(COMMIT) == release.commit \
                    and release.image.pinned in images:
                template = copy.deepcopy(rs["spec"]["template"])
                template["metadata"].get("labels", {}).pop("pod-template-hash", None)
                return template
        return None

    def _replica_sets(self, selector: str) -> list[dict]:
        from kubernetes.client import ApiException

        try:
            return self.api.list(path("apps/v1", "replicasets", self.namespace), {"labelSelector": selector})["items"]
        except ApiException as e:
            raise cluster_error("list", "replicasets", e) from e

    def _gate(self, applied: dict, progress: Progress) -> rollout.Verdict:
        return gate(self.api, self.namespace, applied, rollout_s=self.rollout_s,
                    unschedulable_grace_s=self.unschedulable_grace_s, progress=progress)


class _Conflict(Exception):
    """The API server answered 409: what was read is no longer current."""


# --- helpers ---------------------------------------------------------------------------

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


def _change_cause(verb: str, release: Release, why: str = "") -> str:
    parts = [f"pinotage {verb} {release.commit[:12]}"]
    if why:
        parts.append(f"({why})")
    if release.build_url:
        parts.append(release.build_url)
    return " ".join(parts)
