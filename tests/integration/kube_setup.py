"""Setting up a namespace on a cluster (the double or a real one) as a cluster admin would."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml


def repointed(path: Path, namespace: str) -> list[dict]:
    """Return a file's manifests moved into namespace, their ServiceAccount subjects with them."""
    documents = []
    for doc in yaml.safe_load_all(path.read_text()):
        doc = copy.deepcopy(doc)
        doc["metadata"]["namespace"] = namespace
        for subject in doc.get("subjects", ()):
            subject["namespace"] = namespace
        documents.append(doc)
    return documents


def install_into(admin, path: Path, namespace: str) -> None:
    """Create a file's namespaced manifests (a ServiceAccount, its Role and binding) in namespace."""
    from kubernetes import utils

    for doc in repointed(path, namespace):
        utils.create_from_dict(admin, doc, namespace=namespace)


def account_token(admin, namespace: str, account: str = "pinotage-deployer") -> str:
    """Return an hour's token for a ServiceAccount (a TokenRequest, as kubectl create token makes)."""
    from kubernetes import client

    return client.CoreV1Api(admin).create_namespaced_service_account_token(account, namespace, {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600}}).status.token
