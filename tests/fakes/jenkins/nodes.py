"""Nodes, clouds and credentials the double holds, and the JSON Jenkins answers about them.

Tests seed them through FakeJenkins' constructor (``nodes=``, ``clouds=``, ``credentials=``);
the built-in node is always there, with ``controller_executors`` executors.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import quote

BUILT_IN = "(built-in)"


@dataclasses.dataclass(frozen=True)
class Node:
    """A permanent agent (or, named ``(built-in)``, the controller's own node)."""

    name: str
    labels: tuple[str, ...] = ()
    executors: int = 1
    offline: bool = False
    remote_fs: str = "/home/jenkins"
    description: str = ""


@dataclasses.dataclass(frozen=True)
class PodTemplate:
    """A Kubernetes plugin pod template: its name and the labels it provisions agents for."""

    name: str
    labels: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Cloud:
    """A cloud (the Kubernetes plugin's) that provisions agents from its pod templates."""

    name: str = "kubernetes"
    templates: tuple[PodTemplate, ...] = ()


@dataclasses.dataclass(frozen=True)
class Credential:
    """A credential in a store's domain: its id and kind; the secret is held but never answered."""

    id: str
    kind: str = "usernamePassword"  # usernamePassword | string | sshUserPrivateKey | file
    description: str = ""
    secret: str = dataclasses.field(default="", repr=False)
    username: str = ""
    store: str = "system"  # "system", or a folder's full name
    domain: str = "_"


CREDENTIAL_KINDS = {
    "usernamePassword": ("Username with password",
                         "com.cloudbees.plugins.credentials.impl.UsernamePasswordCredentialsImpl"),
    "string": ("Secret text", "org.jenkinsci.plugins.plaincredentials.impl.StringCredentialsImpl"),
    "sshUserPrivateKey": ("SSH Username with private key",
                          "com.cloudbees.jenkins.plugins.sshcredentials.impl.BasicSSHUserPrivateKey"),
    "file": ("Secret file", "org.jenkinsci.plugins.plaincredentials.impl.FileCredentialsImpl"),
}


def computer_json(node: Node, url: str) -> dict[str, Any]:
    """Return what /computer/NAME/api/json answers for a node."""
    built_in = node.name == BUILT_IN
    self_label = "built-in" if built_in else node.name
    return {
        "_class": "hudson.model.Hudson$MasterComputer" if built_in else "hudson.slaves.SlaveComputer",
        "actions": [], "assignedLabels": [{"name": label} for label in (*node.labels, self_label)],
        "description": node.description, "displayName": "Built-In Node" if built_in else node.name,
        "executors": [{} for _ in range(node.executors)], "icon": "symbol-computer",
        "idle": True, "jnlpAgent": not built_in, "launchSupported": True, "manualLaunchAllowed": True,
        "numExecutors": node.executors, "offline": node.offline, "offlineCause": None,
        "offlineCauseReason": "", "oneOffExecutors": [], "temporarilyOffline": False,
    }


def computer_set_json(nodes: list[Node], url: str) -> dict[str, Any]:
    """Return what /computer/api/json answers."""
    computers = [computer_json(node, url) for node in nodes]
    return {"_class": "hudson.model.ComputerSet", "busyExecutors": 0, "computer": computers,
            "displayName": "Nodes", "totalExecutors": sum(n.executors for n in nodes if not n.offline)}


def node_config(node: Node) -> str:
    """Return a permanent agent's config.xml as Jenkins writes it."""
    return ("<?xml version='1.1' encoding='UTF-8'?>\n<slave>\n"
            f"  <name>{node.name}</name>\n  <description>{node.description}</description>\n"
            f"  <remoteFS>{node.remote_fs}</remoteFS>\n  <numExecutors>{node.executors}</numExecutors>\n"
            "  <mode>NORMAL</mode>\n  <retentionStrategy class=\"hudson.slaves.RetentionStrategy$Always\"/>\n"
            "  <launcher class=\"hudson.slaves.JNLPLauncher\">\n    <workDirSettings>\n"
            "      <disabled>false</disabled>\n      <internalDir>remoting</internalDir>\n"
            "      <failIfWorkDirIsMissing>false</failIfWorkDirIsMissing>\n    </workDirSettings>\n"
            "    <webSocket>false</webSocket>\n  </launcher>\n"
            f"  <label>{' '.join(node.labels)}</label>\n  <nodeProperties/>\n</slave>")


def label_json(label: str, nodes: list[Node], clouds: list[Cloud], url: str) -> dict[str, Any]:
    """Return what /label/NAME/api/json answers: the nodes carrying it and the clouds that can provision it."""
    carrying = [n for n in nodes if label in n.labels or label == (n.name if n.name != BUILT_IN else "built-in")]
    provisioning = [c for c in clouds if any(label in t.labels for t in c.templates)]
    return {"_class": "hudson.model.labels.LabelAtom", "name": label, "description": None,
            "busyExecutors": 0, "idleExecutors": sum(n.executors for n in carrying if not n.offline),
            "totalExecutors": sum(n.executors for n in carrying),
            "offline": not any(not n.offline for n in carrying),
            "nodes": [{"_class": "hudson.model.Hudson" if n.name == BUILT_IN else "hudson.slaves.DumbSlave",
                       "nodeName": "" if n.name == BUILT_IN else n.name} for n in carrying],
            "clouds": [{"_class": "org.csanchez.jenkins.plugins.kubernetes.KubernetesCloud", "name": c.name}
                       for c in provisioning],
            "tiedJobs": []}


def credential_json(credential: Credential) -> dict[str, Any]:
    """Return a credential as the credentials plugin describes it: never its secret."""
    type_name, _ = CREDENTIAL_KINDS[credential.kind]
    shown = f"{credential.username}/****** ({credential.description})" if credential.username else credential.id
    return {"_class": "com.cloudbees.plugins.credentials.CredentialsStoreAction$CredentialsWrapper",
            "description": credential.description, "displayName": shown, "fingerprint": None,
            "fullName": f"{credential.store}/{credential.domain}/{credential.id}", "id": credential.id,
            "typeName": type_name}


def domain_json(store: str, domain: str, credentials: list[Credential], url: str) -> dict[str, Any]:
    """Return what /credentials/store/STORE/domain/DOMAIN/api/json answers."""
    return {"_class": "com.cloudbees.plugins.credentials.CredentialsStoreAction$DomainWrapper",
            "credentials": [credential_json(c) for c in credentials],
            "description": "Credentials that should be available irrespective of domain specification"
                           " to requirements matching." if domain == "_" else "",
            "displayName": "Global credentials (unrestricted)" if domain == "_" else domain,
            "fullDisplayName": f"{store} » Global credentials (unrestricted)", "fullName": f"{store}/{domain}",
            "global": domain == "_", "urlName": quote(domain)}

