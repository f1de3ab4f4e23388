"""The image pull secret: the registry login the cluster's nodes pull the app's image with.

When the registry needs a login (Docker Hub with a private repository, the test registry), the
Kubernetes target server-side applies one ``kubernetes.io/dockerconfigjson`` Secret,
``pinotage-pull-<app>``, in the app's namespace before each deploy, and the Deployment names it
in ``imagePullSecrets``. An apply both creates and refreshes it (a rotated access token reaches
the nodes with the next deploy), and the deployer Role may apply exactly that Secret by name:
an apply that creates is authorized as a create with the name, which a POST is not.

The Secret's content lives in memory only: never printed, never written to a file.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import TYPE_CHECKING, Any

from pipeline.errors import ClusterError
from pipeline.targets.kubernetes.api import APPLY, KubeApi, path

if TYPE_CHECKING:
    from pipeline.registry import Credentials

FIELD_MANAGER = "pinotage"


@dataclasses.dataclass(frozen=True)
class PullSecret:
    """The Secret's name and the login it holds; the password never shows in repr."""

    name: str
    registry_url: str  # registry.url: its docker config key is the Secret's
    user: str
    password: str = dataclasses.field(repr=False)

    def body(self, namespace: str) -> dict:
        """Return the Secret to apply, in the form ``kubectl create secret docker-registry`` makes."""
        from pipeline.registry import config_key

        key = config_key(self.registry_url)
        login = f"{self.user}:{self.password}"
        config = {"auths": {key: {"username": self.user, "password": self.password,
                                  "auth": base64.b64encode(login.encode()).decode()}}}
        return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
                "metadata": {"name": self.name, "namespace": namespace,
                             "labels": {"app.kubernetes.io/part-of": "pinotage"}},
                "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()}}


def for_login(config: Any, credentials: Credentials | None) -> PullSecret | None:
    """Return the pull Secret for the configured registry's login, or None when there is no login."""
    if credentials is None:
        return None
    return PullSecret(secret_name(config.app), config.registry.url, credentials.user, credentials.password)


def secret_name(app: str) -> str:
    """Return the pull Secret's name for an app (the deployer Role names it too)."""
    return f"pinotage-pull-{app}"


def apply(api: KubeApi, namespace: str, secret: PullSecret) -> None:
    """Create or refresh the pull Secret with one server-side apply."""
    from kubernetes.client import ApiException

    try:
        api.patch(path("v1", "secrets", namespace, secret.name), secret.body(namespace), APPLY,
                  {"fieldManager": FIELD_MANAGER, "force": True})
    except ApiException as e:
        # the answer may quote the request; say only the status
        hint = "the deployer Role (k8s/presentation/rbac.yaml) names the Secret it may apply" if e.status == 403 else ""
        raise ClusterError(f"cannot apply secret/{secret.name} in namespace {namespace}: {e.status} {e.reason}",
                           hint=hint) from None
