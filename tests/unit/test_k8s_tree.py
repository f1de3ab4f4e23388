"""Checks across every manifest under k8s/: what one add-on takes, another must not take too."""

from __future__ import annotations

import collections
from pathlib import Path

import yaml

K8S = Path(__file__).resolve().parents[2] / "k8s"


def node_ports() -> dict[int, list[str]]:
    taken: dict[int, list[str]] = collections.defaultdict(list)
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Service":
                for port in doc.get("spec", {}).get("ports", []):
                    if "nodePort" in port:
                        taken[port["nodePort"]].append(f"{path.relative_to(K8S)}:{doc['metadata']['name']}")
    return taken


def test_services_exist_with_node_ports():
    assert len(node_ports()) >= 3  # the presentation, Jenkins, Overleaf at least


def test_no_two_services_share_a_node_port():
    shared = {port: owners for port, owners in node_ports().items() if len(owners) > 1}
    assert shared == {}


def test_node_ports_are_in_the_default_range():
    assert all(30000 <= port <= 32767 for port in node_ports())
