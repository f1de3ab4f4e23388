"""What every part of the Kubernetes target says to the API server the same way: calls, reads and errors.

``KubeApi`` sends each call over the kubernetes client's own transport, the ``ApiClient`` that
``pipeline.kube`` built from the kubeconfig (server, TLS, bearer token and its refresh hook,
default headers), but not through the generated typed classes (``AppsV1Api``, ``CoreV1Api``…):
building those and validating every call cost a run to this target 0.7 s of CPU (the slides
benchmark's Kubernetes row: 1.10 s before, 0.40 s after), and their models are never used here.
Bodies and answers are the API's JSON, as dicts.
"""

from __future__ import annotations

import json
from typing import Any, Mapping
from urllib.parse import quote

from pipeline.errors import ClusterError, PinotageError

CONFLICT_ATTEMPTS = 5  # 409s in a row before a write gives up: each one re-reads and decides again
APPLY = "application/apply-patch+yaml"  # server-side apply (a JSON body is YAML too)
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON = "application/json"


def path(group_version: str, resource: str, namespace: str, name: str = "") -> str:
    """Return a namespaced resource's path: ``/apis/apps/v1/namespaces/NS/deployments[/NAME]``.

    The core group (``v1``) lives under ``/api/v1``. The namespace and name are quoted whole.
    """
    root = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    found = f"{root}/namespaces/{quote(namespace, safe='')}/{resource}"
    return f"{found}/{quote(name, safe='')}" if name else found


class KubeApi:
    """Get, list, watch, create, replace, patch and delete resources by path; JSON dicts in and out.

    A non-2xx answer raises ``kubernetes.client.ApiException`` (its ``status``, ``reason`` and
    ``body`` the answer's), as the generated methods do; a broken connection raises urllib3's error.
    """

    def __init__(self, client: Any):
        self.client = client  # kubernetes.client.ApiClient

    def get(self, resource: str) -> dict:
        return self._json("GET", resource)

    def list(self, resources: str, query: Mapping[str, Any] | None = None) -> dict:
        return self._json("GET", resources, query)

    def watch(self, resources: str, query: Mapping[str, Any]) -> Any:
        """Open a watch; return the open urllib3 response, one JSON event a line (the caller closes it)."""
        return self._send("GET", resources, {**query, "watch": True})

    def create(self, resources: str, body: dict) -> dict:
        return self._json("POST", resources, body=body, content_type=JSON)

    def replace(self, resource: str, body: dict) -> dict:
        return self._json("PUT", resource, body=body, content_type=JSON)

    def patch(self, resource: str, body: dict, content_type: str, query: Mapping[str, Any] | None = None) -> dict:
        """Patch with ``content_type``: ``APPLY`` (with fieldManager, force), ``MERGE`` or ``STRATEGIC``."""
        return self._json("PATCH", resource, query, body=body, content_type=content_type)

    def delete(self, resource: str, query: Mapping[str, Any] | None = None) -> dict:
        return self._json("DELETE", resource, query)

    def _json(self, method: str, url_path: str, query: Mapping[str, Any] | None = None, *, body: dict | None = None,
              content_type: str = "") -> dict:
        return json.loads(self._send(method, url_path, query, body=body, content_type=content_type).data)

    def _send(self, method: str, url_path: str, query: Mapping[str, Any] | None = None, *, body: dict | None = None,
              content_type: str = "") -> Any:
        """Send one request as the generated methods do (same serialiser and auth); return the raw response."""
        from kubernetes.client import ApiException

        headers = {"Accept": JSON, **({"Content-Type": content_type} if content_type else {})}
        request = self.client.param_serialize(method, url_path, query_params=list((query or {}).items()),
                                              header_params=headers, body=body, auth_settings=["BearerToken"])
        answer = self.client.call_api(*request)
        if not 200 <= answer.status <= 299:
            answer.read()
            raise ApiException.from_response(http_resp=answer, body=None, data=None)
        return answer.response


def read_or_none(api: KubeApi, resource: str, what: str) -> dict | None:
    """Read one object at ``resource``: 404 means none.

    Any other refusal is a ``ClusterError`` naming ``what`` (``deployment/presentation``).
    """
    from kubernetes.client import ApiException

    try:
        return api.get(resource)
    except ApiException as e:
        if e.status == 404:
            return None
        raise cluster_error("read", what, e) from e


def cluster_error(action: str, what: str, e) -> PinotageError:
    """Say in one line what the API server refused (``cannot apply deployment/x: 403 Forbidden: …``)."""
    try:
        status = json.loads(e.body or "{}")
    except ValueError:
        status = {}
    message = status.get("message") or e.reason or "no answer"
    hint = ("the deployer Role (k8s/presentation/rbac.yaml) does not allow this" if e.status == 403 else
            "check the kubeconfig's credentials" if e.status == 401 else "")
    return ClusterError(f"cannot {action} {what}: {e.status} {status.get('reason', '')}: {message}".replace("  ", " "),
                        hint=hint)
