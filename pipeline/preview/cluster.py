"""Previews on the cluster, with the preview deployer's rights (k8s/previews/rbac.yaml) in one namespace.

Each write is a server-side apply (field manager ``pinotage-preview``), so a new commit of the
PR updates its preview in place; the Deployment is then gated by the Kubernetes target's watch
gate. Deleting a preview deletes its Deployment (its pods follow) and its Service.
"""

from __future__ import annotations

import json

from pipeline import rollout
from pipeline.errors import DeployFailed
from pipeline.preview.render import FIELD_MANAGER, LABEL, Preview, preview_of
from pipeline.shell import Progress
from pipeline.targets.kubernetes import pull_secret
from pipeline.targets.kubernetes.api import cluster_error
from pipeline.targets.kubernetes.gate import gate

APPLY = "application/apply-patch+yaml"


class PreviewCluster:
    """Apply, gate, list and delete the app's previews in ``namespace``."""

    def __init__(self, api, *, namespace: str, app: str, rollout_s: float, progress: Progress):
        from kubernetes import client

        self.apps, self.core = client.AppsV1Api(api), client.CoreV1Api(api)
        self.namespace, self.app, self.rollout_s, self.progress = namespace, app, rollout_s, progress

    def apply(self, deployment: dict, service: dict, pull: "pull_secret.PullSecret | None") -> None:
        """Apply the pull secret, the Service and the Deployment, then gate the rollout."""
        from kubernetes.client import ApiException

        name = deployment["metadata"]["name"]
        if pull is not None:
            pull_secret.apply(self.core, self.namespace, pull)
        try:
            self.core.patch_namespaced_service(name, self.namespace, service, field_manager=FIELD_MANAGER,
                                               force=True, _content_type=APPLY, _preload_content=False)
            answer = self.apps.patch_namespaced_deployment(name, self.namespace, deployment,
                                                           field_manager=FIELD_MANAGER, force=True,
                                                           _content_type=APPLY, _preload_content=False)
        except ApiException as e:
            raise cluster_error("apply", f"preview {name} in namespace {self.namespace}", e) from e
        verdict = gate(self.apps, self.core, self.namespace, json.loads(answer.data), rollout_s=self.rollout_s,
                       unschedulable_grace_s=rollout.UNSCHEDULABLE_GRACE_S, progress=self.progress)
        if not isinstance(verdict, rollout.Done):
            raise DeployFailed(f"the preview {name} did not come up ({verdict.reason}: {verdict.message})",
                               rolled_back=False, hint="kubectl -n " + self.namespace + f" describe deploy/{name}")

    def list(self) -> list[Preview]:
        """Return every preview of the app in the namespace."""
        from kubernetes.client import ApiException

        try:
            answer = self.apps.list_namespaced_deployment(self.namespace, label_selector=f"{LABEL}={self.app}",
                                                          _preload_content=False)
        except ApiException as e:
            raise cluster_error("list", f"previews in namespace {self.namespace}", e) from e
        return [preview_of(item) for item in json.loads(answer.data)["items"]]

    def delete(self, name: str) -> None:
        """Delete a preview's Deployment and Service; one already gone is not an error."""
        from kubernetes.client import ApiException

        for call, kind in ((self.apps.delete_namespaced_deployment, "deployment"),
                           (self.core.delete_namespaced_service, "service")):
            try:
                call(name, self.namespace, propagation_policy="Background", _preload_content=False)
            except ApiException as e:
                if e.status != 404:
                    raise cluster_error("delete", f"{kind}/{name} in namespace {self.namespace}", e) from e
