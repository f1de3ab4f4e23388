"""A preview's objects and facts, pure: built from ``deploy.manifest`` and read back from the cluster.

A preview of pull request 42 of the app ``presentation`` is the Deployment and the ClusterIP
Service ``presentation-pr-42`` in ``preview.namespace``, with one replica. Its labels select it
(``pinotage.dev/preview: <app>``); its annotations say which PR and commit it serves, its URL and
when its commit was deployed (what ``preview.max_age_h`` counts from).
"""

from __future__ import annotations

import copy
import dataclasses
from datetime import datetime, timezone

from pipeline.errors import BadInput

LABEL = "pinotage.dev/preview"  # value: the app; selects every preview
NAME_LABEL = "app.kubernetes.io/name"
PR = "pinotage.dev/pr"
COMMIT = "pinotage.dev/commit"
IMAGE_ANNOTATION = "pinotage.dev/image"
URL = "pinotage.dev/url"
UPDATED = "pinotage.dev/updated-at"
FIELD_MANAGER = "pinotage-preview"
MAX_NAME = 63  # a Service name is a DNS-1035 label


@dataclasses.dataclass(frozen=True)
class Preview:
    """One live preview, as its Deployment's labels and annotations describe it."""

    name: str
    pr: str
    commit: str
    image: str
    url: str
    updated_at: str  # ISO 8601, UTC: when its current commit was deployed

    def age_s(self, now: datetime) -> float:
        return (now - _parse(self.updated_at)).total_seconds() if self.updated_at else float("inf")


def name_for(app: str, pr: str) -> str:
    """Return the preview's Deployment and Service name: ``<app>-pr-<number>``."""
    name = f"{app}-pr-{pr}"
    if len(name) > MAX_NAME:
        raise BadInput(f"app: {app!r} makes the preview name {name!r} longer than {MAX_NAME} characters")
    return name


def url_for(template: str, name: str, namespace: str) -> str:
    """Fill in ``preview.url``."""
    return template.format(name=name, namespace=namespace)


def bodies(manifest: dict, *, app: str, pr: str, namespace: str, image: str, commit: str, url: str,
           now: datetime, pull_secret: str = "") -> tuple[dict, dict]:
    """Return the preview's Deployment and Service, from the app's Deployment manifest with ``image``."""
    name = name_for(app, pr)
    labels = {NAME_LABEL: name, "app.kubernetes.io/part-of": "pinotage", LABEL: app}
    deployment = copy.deepcopy(manifest)
    deployment["metadata"] = {"name": name, "namespace": namespace, "labels": labels, "annotations": {
        PR: pr, COMMIT: commit, IMAGE_ANNOTATION: image, URL: url,
        UPDATED: now.astimezone(timezone.utc).isoformat(timespec="seconds")}}
    spec = deployment["spec"]
    spec["replicas"] = 1  # a preview is looked at by a few people: one pod, within the namespace's quota
    spec["selector"] = {"matchLabels": {NAME_LABEL: name}}
    template = spec["template"]
    template.setdefault("metadata", {})["labels"] = dict(labels)
    containers = template["spec"]["containers"]
    container = next((c for c in containers if c["name"] == manifest["metadata"]["name"]), containers[0])
    container["image"] = image
    if pull_secret:
        template["spec"]["imagePullSecrets"] = [{"name": pull_secret}]
    ports = [{"name": p["name"], "port": 80, "targetPort": p["name"], "protocol": p.get("protocol", "TCP")}
             for p in container.get("ports", []) if p.get("name")][:1]
    if not ports:
        raise BadInput(f"deploy.manifest: container {container['name']!r} names no port for the preview's Service")
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": name, "namespace": namespace, "labels": labels,
                            "annotations": {PR: pr, URL: url}},
               "spec": {"type": "ClusterIP", "selector": {NAME_LABEL: name}, "ports": ports}}
    return deployment, service


def preview_of(deployment: dict) -> Preview:
    """Read a preview from its live Deployment."""
    meta = deployment["metadata"]
    notes = meta.get("annotations") or {}
    return Preview(name=meta["name"], pr=notes.get(PR, ""), commit=notes.get(COMMIT, ""),
                   image=notes.get(IMAGE_ANNOTATION, ""), url=notes.get(URL, ""), updated_at=notes.get(UPDATED, ""))


def stale(previews: list[Preview], pr_states: dict[str, str], *, now: datetime,
          max_age_s: float) -> list[tuple[Preview, str]]:
    """Return each preview to delete and why: its PR is no longer open, or it had no new commit for too long.

    ``pr_states`` maps a PR number to GitHub's state ("open", "closed"; "merged" when merged).
    """
    out = []
    for preview in previews:
        state = pr_states.get(preview.pr, "unknown")
        if state != "open":
            out.append((preview, f"pull request #{preview.pr} is {state}"))
        elif preview.age_s(now) > max_age_s:
            hours = preview.age_s(now) / 3600
            out.append((preview, f"no new commit for {hours:.0f} h (preview.max_age_h is {max_age_s / 3600:g})"))
    return out


def table(previews: list[Preview], now: datetime) -> list[str]:
    """Format previews for ``pinotage preview list``: name, PR, commit, age, URL."""
    rows = [("preview", "pr", "commit", "age", "url")]
    for p in sorted(previews, key=lambda p: int(p.pr) if p.pr.isdigit() else 0):
        rows.append((p.name, f"#{p.pr}", p.commit[:12], _age(p.age_s(now)), p.url))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]


def _age(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{max(seconds, 0):.0f}s"


def _parse(stamp: str) -> datetime:
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
