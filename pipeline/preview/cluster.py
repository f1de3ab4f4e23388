"""Previews on the cluster, with the preview deployer's rights (k8s/previews/rbac.yaml) in one namespace.

Each write is a server-side apply (field manager ``pinotage-preview``), so a new commit of the
PR updates its preview in place; the Deployment is then gated by the Kubernetes target's watch
gate. Deleting a preview deletes its Deployment (its pods follow) and its Service.
"""

from __future__ import annotations

from pipeline import rollout
from pipeline.errors import DeployFailed
from pipeline.preview.render import FIELD_MANAGER, LABEL, Preview, preview_of
from pipeline.shell import Progress
from pipeline.targets.kubernetes import pull_secret
from pipeline.targets.kubernetes.api import APPLY, KubeApi, cluster_error, path
from pipeline.targets.kubernetes.gate import gate


class PreviewCluster:
    """Apply, gate, list and delete the app's previews in ``namespace``."""

    def __init__(self, api, *, namespace: str, app: str, rollout_s: float, progress: Progress):
        self.api = KubeApi(api)
        self.namespace, self.app, self.rollout_s, self.progress = namespace, app, rollout_s, progress

    def apply(self, deployment: dict, service: dict, pull: "pull_secret.PullSecret | None") -> None:
        """Apply the pull secret, the Service and the Deployment, then gate the rollout."""
        from kubernetes.client import ApiException

        name = deployment["metadata"]["name"]
        if pull is not None:
            pull_secret.apply(self.api, self.namespace, pull)
        apply = {"fieldManager": FIELD_MANAGER, "force": True}
        try:
            self.api.patch(path("v1", "services", self.namespace, name), service, APPLY, apply)
            applied = self.api.patch(path("apps/v1", "deployments", self.namespace, name), deployment, APPLY, apply)
        except ApiException as e:
            raise cluster_error("apply", f"preview {name} in namespace {self.namespace}", e) from e
        verdict = gate(self.api, self.namespace, applied, rollout_s=self.rollout_s,
                       unschedulable_grace_s=rollout.UNSCHEDULABLE_GRACE_S, progress=self.progress)
        if not isinstance(verdict, rollout.Done):
            raise DeployFailed(f"the preview {name} did not come up ({verdict.reason}: {verdict.message})",
                               rolled_back=False, hint="kubectl -n " + self.namespace + f" describe deploy/{name}")

    def list(self) -> list[Preview]:
        """Return every preview of the app in the namespace."""
        from kubernetes.client import ApiException

        try:
            answer = self.api.list(path("apps/v1", "deployments", self.namespace),
                                   {"labelSelector": f"{LABEL}={self.app}"})
        except ApiException as e:
            raise cluster_error("list", f"previews in namespace {self.namespace}", e) from e
        return [preview_of(item) for item in answer["items"]]

    def delete(self, name: str) -> None:
        """Delete a preview's Deployment and Service; one already gone is not an error."""
        from kubernetes.client import ApiException

        for group_version, kind in (("apps/v1", "deployment"), ("v1", "service")):
            try:
                self.api.delete(path(group_version, f"{kind}s", self.namespace, name),
                                {"propagationPolicy": "Background"})
            except ApiException as e:
                if e.status != 404:
                    raise cluster_error("delete", f"{kind}/{name} in namespace {self.namespace}", e) from e
