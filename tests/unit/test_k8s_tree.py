"""Checks across every manifest under k8s/: what one add-on takes, another must not take too,
and nothing is open on a node port without a login in front."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
import yaml

K8S = Path(__file__).resolve().parents[2] / "k8s"
PUBLIC = "pinotage.dev/public"  # the annotation that says, with a reason, that no login is needed


def services() -> list[tuple[str, dict]]:
    found = []
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Service":
                found.append((f"{path.relative_to(K8S)}:{doc['metadata']['name']}", doc))
    return found


def node_ports() -> dict[int, list[str]]:
    taken: dict[int, list[str]] = collections.defaultdict(list)
    for where, doc in services():
        for port in doc.get("spec", {}).get("ports", []):
            if "nodePort" in port:
                taken[port["nodePort"]].append(where)
    return taken


def exposed(doc: dict) -> bool:
    return doc.get("spec", {}).get("type") in ("NodePort", "LoadBalancer") or any(
        "nodePort" in port for port in doc.get("spec", {}).get("ports", []))


@pytest.mark.parametrize("where, doc", services(), ids=[where for where, _ in services()])
def test_no_node_port_without_a_login_in_front(where, doc):
    """Jenkins, Kibana, Overleaf: ClusterIP only (nginx with TLS, or kubectl port-forward, in front)."""
    if exposed(doc):
        reason = (doc["metadata"].get("annotations") or {}).get(PUBLIC, "")
        assert reason, f"{where} is open on every node without a login; make it ClusterIP"


def test_the_only_public_node_port_is_the_presentation():
    public = sorted(where for where, doc in services() if exposed(doc))
    assert public == ["presentation/service.yaml:presentation"]


def test_the_checks_see_every_service():
    names = {where.split(":")[1] for where, _ in services()}
    assert {"jenkins-service", "kibana", "sharelatex", "presentation"} <= names


def test_no_two_services_share_a_node_port():
    shared = {port: owners for port, owners in node_ports().items() if len(owners) > 1}
    assert shared == {}


def test_node_ports_are_in_the_default_range():
    assert all(30000 <= port <= 32767 for port in node_ports())
