"""What the cluster is made of: its nodes, their addresses, and the files rendered for them.

The Vagrantfile computes the same names and addresses from the same PINOTAGE_CLUSTER_*
values (``vagrant_env``), so the two never need to be told about each other.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import string
from pathlib import Path
from typing import Mapping

from pipeline.config import Config
from pipeline.errors import BadInput

CONTROL_PLANE = "control"
API_PORT = 6443
# VirtualBox's first adapter (eth0) is NAT and the same address on every VM; the host-only
# adapter (eth1) is where the nodes reach each other.
HOST_ONLY_INTERFACE = "eth1"
VAGRANT_DIR = "scripts/vagrant"
PACKER_TEMPLATE = "scripts/packer/box.json"
KUBEADM_INIT = "scripts/kubeadm/init.yaml"
KUBEADM_JOIN = "scripts/kubeadm/join.yaml"
BOX_DIR = "build/box"


@dataclasses.dataclass(frozen=True)
class Node:
    name: str
    ip: str


@dataclasses.dataclass(frozen=True)
class Topology:
    control_plane: Node
    workers: tuple[Node, ...]
    kubernetes_version: str
    pod_subnet: str
    service_subnet: str

    @property
    def nodes(self) -> tuple[Node, ...]:
        return (self.control_plane, *self.workers)

    @property
    def api_server_endpoint(self) -> str:
        return f"{self.control_plane.ip}:{API_PORT}"

    def node(self, name: str) -> Node:
        """Return the node called name, or raise BadInput listing the known ones."""
        for node in self.nodes:
            if node.name == name:
                return node
        known = ", ".join(n.name for n in self.nodes)
        raise BadInput(f"NODE {name!r}: no such node in this cluster (known: {known})",
                       hint="cluster.workers sets how many workers there are")


def topology(config: Config) -> Topology:
    """Derive the nodes from the cluster configuration, or raise BadInput naming the bad field."""
    cluster = config.cluster
    if not re.fullmatch(r"\d+\.\d+\.\d+", cluster.kubernetes_version):
        raise BadInput(f"cluster.kubernetes_version: expected a version like 1.31.4, "
                       f"got {cluster.kubernetes_version!r}")
    try:
        first = ipaddress.IPv4Address(cluster.control_plane_ip)
    except ValueError:
        raise BadInput(f"cluster.control_plane_ip: expected an IPv4 address, got {cluster.control_plane_ip!r}") from None
    if int(str(first).rsplit(".", 1)[1]) + cluster.workers > 254:
        raise BadInput(f"cluster.control_plane_ip: {first} leaves no room for {cluster.workers} workers after it",
                       hint="workers take the addresses right after the control plane's")
    for key in ("pod_subnet", "service_subnet"):
        try:
            ipaddress.IPv4Network(getattr(cluster, key))
        except ValueError:
            raise BadInput(f"cluster.{key}: expected a network like 10.244.0.0/16, "
                           f"got {getattr(cluster, key)!r}") from None
    workers = tuple(Node(f"worker{i}", str(first + i)) for i in range(1, cluster.workers + 1))
    return Topology(Node(CONTROL_PLANE, str(first)), workers, cluster.kubernetes_version,
                    cluster.pod_subnet, cluster.service_subnet)


def vagrant_env(config: Config, environ: Mapping[str, str]) -> dict[str, str]:
    """Return the environment Vagrant runs in: the Vagrantfile's settings (it runs in VAGRANT_DIR).

    VAGRANT_CWD is not set: Packer's vagrant builder runs Vagrant in a folder of its own.
    """
    cluster = config.cluster
    env = dict(environ)
    for key in ("box_name", "box_version", "workers", "control_plane_ip", "control_plane_memory_mb",
                "worker_memory_mb", "cpus"):
        env[f"PINOTAGE_CLUSTER_{key.upper()}"] = str(getattr(cluster, key))
    return env


def box_file_stem(config: Config) -> str:
    """Name the built box's folder after its name and version (``pinotage-kubeadm-1.31.4``)."""
    return f"{config.cluster.box_name.replace('/', '-')}-{config.cluster.box_version}"


def render_init(config: Config, topo: Topology) -> str:
    """Fill in scripts/kubeadm/init.yaml for the control plane."""
    return _render(config.path(KUBEADM_INIT), {
        "control_plane_ip": topo.control_plane.ip,
        "node_name": topo.control_plane.name,
        "node_ip": topo.control_plane.ip,
        "kubernetes_version": topo.kubernetes_version,
        "pod_subnet": topo.pod_subnet,
        "service_subnet": topo.service_subnet,
    })


def render_join(config: Config, topo: Topology, node: Node, *, token: str, ca_cert_hash: str,
                api_server_endpoint: str) -> str:
    """Fill in scripts/kubeadm/join.yaml for one worker, with a token made just now."""
    return _render(config.path(KUBEADM_JOIN), {
        "api_server_endpoint": api_server_endpoint,
        "token": token,
        "ca_cert_hash": ca_cert_hash,
        "node_name": node.name,
        "node_ip": node.ip,
    })


def _render(path: Path, values: Mapping[str, str]) -> str:
    try:
        return string.Template(path.read_text()).substitute(values)
    except KeyError as e:
        raise BadInput(f"{path}: unknown placeholder ${{{e.args[0]}}}",
                       hint=f"the placeholders it may use: {', '.join(sorted(values))}") from None
    except OSError as e:
        raise BadInput(f"{path}: cannot read: {e.strerror}") from None
