"""The redeploy step's choice: the last good release of the app, to run again on a rebuilt cluster.

The records come from the cluster's own ledger (the ConfigMap every deploy writes) or, on a
cluster built anew, from the newest copy of that ConfigMap that ``pinotage cluster backup``
saved under ``state_dir/backups``. The deploy itself is the pipeline's own (``runner.redeploy``,
handed to the step by the CLI): the app's Lease, the rollout gate, the rollback when it fails,
and a record in the cluster's ledger.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline import files
from pipeline.errors import BadInput
from pipeline.ledger import Record, last_deployed, record_from_json

LEDGER_KEY = "records.json"


def backup_records(config: Any) -> tuple[list[Record], str]:
    """Return the records of the newest backup that holds the app's ledger, and that file's path."""
    import yaml

    folder = config.path(config.state_dir) / "backups"
    name = f"pinotage-ledger-{config.app}"
    for stamp in sorted(folder.iterdir(), reverse=True) if folder.is_dir() else ():
        path = stamp / f"{config.deploy.namespace}.yaml"
        if not path.is_file():
            continue
        try:
            docs = list(yaml.safe_load_all(files.read_text(path, what="backup")))
        except (yaml.YAMLError, RecursionError):
            raise BadInput(f"{path}: the backup is not valid YAML", hint="remove that backup folder") from None
        for doc in docs:
            named = isinstance(doc, dict) and isinstance(doc.get("metadata"), dict) and doc["metadata"].get("name")
            if named == name and doc.get("kind") == "ConfigMap":
                return _records(doc, f"{path}: configmap/{name} {LEDGER_KEY}"), str(path)
    return [], ""


def _records(configmap: dict, where: str) -> list[Record]:
    """Read the ledger a backed-up ConfigMap holds, each record checked."""
    try:
        items = json.loads((configmap.get("data") or {}).get(LEDGER_KEY, "[]"))
    except (ValueError, TypeError, RecursionError):
        raise BadInput(f"{where}: not JSON", hint="remove that backup folder") from None
    if not isinstance(items, list):
        raise BadInput(f"{where}: expected a list of deploy records", hint="remove that backup folder")
    return [record_from_json(item, where=f"{where} record {number}") for number, item in enumerate(items, 1)]


def last_good(records: list[Record], app: str) -> Record | None:
    """Return the app's newest record whose release went live by digest: what a new cluster runs again."""
    return last_deployed([r for r in records if r.app == app and "@" in r.image])
