"""The one place that connects to a Kubernetes cluster: kubeconfig, context and namespace.

Where the credentials come from, first match wins:

1. ``kubeconfig`` in the configuration (``PINOTAGE_KUBECONFIG``, ``--set kubeconfig=…``);
2. ``KUBECONFIG`` in the environment (a ``:``-separated list is merged, as kubectl does);
3. the in-cluster ServiceAccount (a Jenkins agent running as a pod).

The context is ``deploy.kube_context`` (empty: the kubeconfig's current context) and the
namespace is always ``deploy.namespace``, never the kubeconfig's, so a deploy cannot land in
whatever namespace a laptop happened to have selected.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping

from pipeline.errors import BadInput

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
UNREADABLE_HINT = "check it with 'kubectl config view', which hides the secrets"
MAX_KUBECONFIG_BYTES = 1024 * 1024
CREDENTIAL_KEYS = frozenset({"token", "password", "client-key-data", "id-token", "refresh-token",
                             "client-secret", "access-token"})


@dataclasses.dataclass(frozen=True)
class Cluster:
    api: Any  # kubernetes.client.ApiClient
    namespace: str
    source: str  # where the credentials came from, for messages (never the credentials)


def connect(config, environ: Mapping[str, str]) -> Cluster:
    """Build an API client from the configuration; raise BadInput naming what is wrong."""
    import yaml
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config

    context = config.deploy.kube_context or None
    path = config.kubeconfig or environ.get("KUBECONFIG", "")
    if path:
        source = "kubeconfig" if config.kubeconfig else "KUBECONFIG"
        files = [str(config.path(p)) if source == "kubeconfig" else p for p in path.split(os.pathsep) if p]
        for file in files:
            if not Path(file).is_file():
                raise BadInput(f"{source}: {file}: no such file",
                               hint="set PINOTAGE_KUBECONFIG (or KUBECONFIG) to the deployer's kubeconfig")
            _check_readable(source, file)
        try:
            api = k8s_config.new_client_from_config(config_file=os.pathsep.join(files), context=context,
                                                    persist_config=False)
        except k8s_config.ConfigException as e:
            what = f"context {context!r}" if context else "the current context"
            raise BadInput(f"{source}: {os.pathsep.join(files)}: cannot use {what}: {e}",
                           hint="check deploy.kube_context against 'kubectl config get-contexts'") from e
        except (yaml.YAMLError, ValueError, TypeError, AttributeError, KeyError, IndexError) as e:
            # from None: the loader's message may quote the file, which holds credentials
            raise BadInput(f"{source}: {os.pathsep.join(files)}: not a readable kubeconfig ({type(e).__name__})",
                           hint=UNREADABLE_HINT) from None
        return Cluster(api, config.deploy.namespace, f"{source} {os.pathsep.join(files)}")
    if environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = k8s_client.Configuration()
        try:
            k8s_config.incluster_config.InClusterConfigLoader(
                token_filename=f"{SERVICE_ACCOUNT_DIR}/token", cert_filename=f"{SERVICE_ACCOUNT_DIR}/ca.crt",
                environ=environ).load_and_set(configuration)
        except k8s_config.ConfigException as e:
            raise BadInput(f"in-cluster configuration: {e}") from e
        return Cluster(k8s_client.ApiClient(configuration), config.deploy.namespace, "in-cluster service account")
    raise BadInput("no Kubernetes credentials: kubeconfig, KUBECONFIG and the in-cluster service account are all "
                   "missing", hint="set PINOTAGE_KUBECONFIG to the deployer's kubeconfig")


def _check_readable(source: str, file: str) -> None:
    """Parse one kubeconfig file; raise BadInput naming the file and line, quoting nothing from it.

    The parser's own messages quote the text around a problem, and the file holds credentials,
    so they are never shown, nor chained (``from None``). Every credential in it is given to the
    redaction layer, and a token the HTTP library would refuse (a line break in it) is named here.
    """
    from pipeline import files, redact, safe_yaml

    text = files.read_text(file, what="kubeconfig", hint=UNREADABLE_HINT, name=f"{source}: {file}",
                           limit_bytes=MAX_KUBECONFIG_BYTES)
    document = safe_yaml.load(text, where=f"{source}: {file}", quote=False)
    if document is not None and not isinstance(document, dict):
        raise BadInput(f"{source}: {file}: not a kubeconfig (its top level is not a mapping)",
                       hint=UNREADABLE_HINT) from None
    for value in _credentials(document):
        redact.remember(value)
    users = (document or {}).get("users")
    for entry in users if isinstance(users, list) else []:
        user = entry.get("user") if isinstance(entry, dict) else None
        token = user.get("token") if isinstance(user, dict) else None
        if isinstance(token, str) and token != token.strip() or isinstance(token, str) and any(
                c.isspace() for c in token):
            name = entry.get("name", "?")
            raise BadInput(f"{source}: {file}: user {str(name)[:60]!r}: the token holds a space or a line break",
                           hint="write the token on one line, with no trailing newline") from None


def _credentials(data) -> list[str]:
    """Return every credential value in a kubeconfig, at any depth."""
    if isinstance(data, list):
        return [value for item in data for value in _credentials(item)]
    if not isinstance(data, dict):
        return []
    found = []
    for key, value in data.items():
        if isinstance(value, str) and str(key) in CREDENTIAL_KEYS:
            found.append(value)
        else:
            found += _credentials(value)
    return found
