"""The Kubernetes target's ledger storage: a ConfigMap ``pinotage-ledger-<app>`` holding records as JSON."""

from __future__ import annotations

import dataclasses
import json

from pipeline.errors import ClusterError
from pipeline.ledger import Record, record_from_json
from pipeline.targets.kubernetes.api import CONFLICT_ATTEMPTS, cluster_error, read_or_none

LEDGER_KEY = "records.json"
LEDGER_KEEP = 200  # records kept in the ConfigMap (its limit is 1 MiB)


class ClusterLedger:
    """Store the deploy records (the runner writes them) in a ConfigMap: newest last, at most LEDGER_KEEP."""

    def __init__(self, core, namespace: str, name: str):
        self.core, self.namespace, self.name = core, namespace, name

    def records(self) -> list[Record]:
        """Return every record, oldest first."""
        found = self._get()
        return [record_from_json(item, where=f"configmap/{self.name}") for item in _parse(found)] if found else []

    def append(self, record: Record) -> None:
        """Add a record; a concurrent writer's 409 re-reads and appends again."""
        from kubernetes.client import ApiException

        for _ in range(CONFLICT_ATTEMPTS * 2):
            found = self._get()
            items = (_parse(found) if found else []) + [dataclasses.asdict(record)]
            data = {LEDGER_KEY: json.dumps(items[-LEDGER_KEEP:], indent=1)}
            try:
                if found is None:
                    self.core.create_namespaced_config_map(self.namespace, {
                        "apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": self.name, "namespace": self.namespace,
                                     "labels": {"app.kubernetes.io/part-of": "pinotage"}},
                        "data": data}, _preload_content=False)
                else:
                    found["data"] = data
                    self.core.replace_namespaced_config_map(self.name, self.namespace, found, _preload_content=False)
                return
            except ApiException as e:
                if e.status == 409:
                    continue
                raise cluster_error("write", f"configmap/{self.name}", e) from e
        raise ClusterError(f"configmap/{self.name} kept changing; the record {record.id} was not written")

    def _get(self) -> dict | None:
        return read_or_none(
            lambda: self.core.read_namespaced_config_map(self.name, self.namespace, _preload_content=False),
            f"configmap/{self.name}")


def _parse(configmap: dict) -> list[dict]:
    try:
        return json.loads((configmap.get("data") or {}).get(LEDGER_KEY, "[]"))
    except ValueError as e:
        raise ClusterError(f"configmap/{configmap['metadata']['name']}: {LEDGER_KEY} is not JSON ({e})") from e
