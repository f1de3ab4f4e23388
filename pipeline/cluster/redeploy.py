"""The redeploy step's deploy: the last good release, again, through the Kubernetes target.

The records come from the cluster's own ledger (the ConfigMap every deploy writes) or, on a
cluster built anew, from the newest copy of that ConfigMap that ``pinotage cluster backup``
saved under ``state_dir/backups``. The deploy is the pipeline's own (``runner.deploy``): the
app's Lease, the rollout gate, the rollback when it fails, and a record in the cluster's ledger.
It connects with the control plane's admin kubeconfig, held in memory only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

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


def redeploy(config: Any, kubeconfig_text: str, *, say: Callable[[str], None],
             progress: Callable[[str], None]) -> str:
    """Deploy the last good release of the app through the Kubernetes target; return what happened."""
    import yaml
    from kubernetes import config as kube_config

    from pipeline import runner, services as services_module
    from pipeline.context import BuildContext
    from pipeline.state import Image
    from pipeline.targets.kubernetes import make_target

    api = kube_config.new_client_from_config_dict(yaml.safe_load(kubeconfig_text), persist_config=False)
    target = make_target(config, {}, progress, credentials=lambda: None, api=api)
    records, source = target.ledger().records(), f"the cluster's ledger (configmap/pinotage-ledger-{config.app})"
    if not _good(records, config.app):
        records, source = backup_records(config)
    record = _good(records, config.app)
    if record is None:
        return f"no successful deploy of {config.app} in the cluster's ledger nor in a backup: nothing to redeploy"
    say(f"last good deploy: {record.commit[:12]} {record.image}, from {source}")
    name, _, digest = record.image.partition("@")
    image = Image(name=name, tag="", digest=digest, commit=record.commit)
    context = BuildContext(commit=record.commit, branch=config.default_branch, event="default-branch",
                           build_url=record.build_url)
    services = services_module.Services(make_client=_refused, make_target=lambda: target, read_credentials=_refused,
                                        report_status=None, is_ancestor=lambda older, newer: False, phases=None)
    result = runner.deploy(config, context, image, services, say=say, progress=progress)
    if result.deployment is None:
        return result.note
    return f"redeployed {record.commit[:12]}: revision {result.deployment.revision} passed the rollout gate"


def _good(records: list[Record], app: str) -> Record | None:
    return last_deployed([r for r in records if r.app == app and "@" in r.image])


def _refused(*args: Any) -> Any:
    raise AssertionError("a redeploy builds nothing and reads no registry login")  # a bug if reached
