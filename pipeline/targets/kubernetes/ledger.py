"""The Kubernetes target's ledger storage: a ConfigMap ``pinotage-ledger-<app>`` holding records as JSON."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Callable

from pipeline.errors import BadInput, ClusterError
from pipeline.ledger import Record, record_from_json
from pipeline.targets.kubernetes.api import CONFLICT_ATTEMPTS, KubeApi, cluster_error, path, read_or_none

LEDGER_KEY = "records.json"
LEDGER_KEEP = 200  # records kept in the ConfigMap
LEDGER_MAX_BYTES = 900 * 1024  # a ConfigMap holds at most 1 MiB, its metadata included
EDITED_HINT = "the ledger ConfigMap was edited by hand? see it with 'kubectl get configmap NAME -o yaml'"


def _warn(line: str) -> None:
    print(f"pinotage: warning: {line}", file=sys.stderr)


class ClusterLedger:
    """Store the deploy records (the runner writes them) in a ConfigMap: newest last, at most LEDGER_KEEP."""

    def __init__(self, api: KubeApi, namespace: str, name: str, *, warn: Callable[[str], None] = _warn):
        self.api, self.namespace, self.name, self.warn = api, namespace, name, warn
        self.path = path("v1", "configmaps", namespace, name)

    def records(self) -> list[Record]:
        """Return every record, oldest first, each checked."""
        found = self._get()
        where = f"configmap/{self.name} {LEDGER_KEY}"
        return [record_from_json(item, where=f"{where} record {number}")
                for number, item in enumerate(_parse(found), 1)] if found else []

    def append(self, record: Record) -> None:
        """Add a record; a concurrent writer's 409 re-reads and appends again."""
        from kubernetes.client import ApiException

        for _ in range(CONFLICT_ATTEMPTS * 2):
            found = self._get()
            items = (_parse(found) if found else []) + [dataclasses.asdict(record)]
            text, dropped = fit(items)
            data = {LEDGER_KEY: text}
            try:
                if found is None:
                    self.api.create(path("v1", "configmaps", self.namespace), {
                        "apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": self.name, "namespace": self.namespace,
                                     "labels": {"app.kubernetes.io/part-of": "pinotage"}},
                        "data": data})
                else:
                    found["data"] = data
                    self.api.replace(self.path, found)
                if dropped:
                    self.warn(f"configmap/{self.name}: dropped the {dropped} oldest deploy records to stay under"
                              f" {LEDGER_KEEP} records and {LEDGER_MAX_BYTES // 1024} KiB")
                return
            except ApiException as e:
                if e.status == 409:
                    continue
                raise cluster_error("write", f"configmap/{self.name}", e) from e
        raise ClusterError(f"configmap/{self.name} kept changing; the record {record.id} was not written")

    def _get(self) -> dict | None:
        return read_or_none(self.api, self.path, f"configmap/{self.name}")


def fit(items: list[dict]) -> tuple[str, int]:
    """Serialise the newest records that fit the ConfigMap; return the JSON and how many were dropped."""
    keep = items[-LEDGER_KEEP:]
    text = json.dumps(keep, separators=(",", ":"))
    while len(text.encode()) > LEDGER_MAX_BYTES and len(keep) > 1:
        keep = keep[max(1, len(keep) // 10):]  # drop the oldest tenth at a time: a few passes at most
        text = json.dumps(keep, separators=(",", ":"))
    return text, len(items) - len(keep)


def _parse(configmap: dict) -> list:
    where = f"configmap/{(configmap.get('metadata') or {}).get('name', '?')} {LEDGER_KEY}"
    text = (configmap.get("data") or {}).get(LEDGER_KEY, "[]")
    try:
        items = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise BadInput(f"{where}: not JSON ({getattr(e, 'msg', type(e).__name__)})", hint=EDITED_HINT) from None
    if not isinstance(items, list):
        raise BadInput(f"{where}: expected a list of deploy records", hint=EDITED_HINT)
    return items
