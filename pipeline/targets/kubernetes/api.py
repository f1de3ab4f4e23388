"""What every part of the Kubernetes target says to the API server the same way: reads and errors."""

from __future__ import annotations

import json
from typing import Any, Callable

from pipeline.errors import ClusterError, PinotageError

CONFLICT_ATTEMPTS = 5  # 409s in a row before a write gives up: each one re-reads and decides again


def read_or_none(call: Callable[[], Any], what: str) -> dict | None:
    """Read one object with ``call`` (a client call with ``_preload_content=False``): 404 means none.

    Any other refusal is a ``ClusterError`` naming ``what`` (``deployment/presentation``).
    """
    from kubernetes.client import ApiException

    try:
        return json.loads(call().data)
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
