"""The cluster ledger's ConfigMap: the newest records that fit, and records checked when read back."""

from __future__ import annotations

import json

import pytest

from pipeline.errors import BadInput
from pipeline.targets.kubernetes import ledger as cluster_ledger


def item(n: int, message: str = "") -> dict:
    return {"id": f"id-{n}", "app": "p", "commit": f"{n:040x}", "image": f"r/p@sha256:{n:064x}", "target": "kubernetes",
            "build_url": "", "started_at": "2026-01-01T00:00:00+00:00", "finished_at": "2026-01-01T00:00:01+00:00",
            "outcome": "deployed", "message": message}


def test_fit_keeps_the_newest_records_under_the_count():
    text, dropped = cluster_ledger.fit([item(n) for n in range(250)])
    kept = json.loads(text)
    assert dropped == 50 and len(kept) == cluster_ledger.LEDGER_KEEP and kept[-1]["id"] == "id-249"


def test_fit_keeps_the_newest_records_under_the_configmap_size_limit():
    items = [item(n, message="x" * 8000) for n in range(150)]  # 1.2 MB in all
    text, dropped = cluster_ledger.fit(items)
    kept = json.loads(text)
    assert len(text.encode()) <= cluster_ledger.LEDGER_MAX_BYTES
    assert dropped == 150 - len(kept) > 0
    assert [k["id"] for k in kept] == [f"id-{n}" for n in range(150 - len(kept), 150)]


class FakeApi:
    """Answers the one read the ledger makes, with the ConfigMap it was given; refuses any other."""

    def __init__(self, data: str):
        self.data = data

    def get(self, resource: str) -> dict:
        assert resource == "/api/v1/namespaces/ns/configmaps/l", resource
        return {"metadata": {"name": "l"}, "data": {cluster_ledger.LEDGER_KEY: self.data}}


@pytest.mark.parametrize("data, expected", [
    ('{"a": 1}', "configmap/l records.json: expected a list of deploy records"),
    ("[" * 100_000, "configmap/l records.json: not JSON"),
    (json.dumps([item(1), {**item(2), "commit": 7}]),
     "configmap/l records.json record 2: not a deploy record: commit is a number, expected a string"),
    (json.dumps([{**item(1), "x": 1}]), "record 1: not a deploy record: unknown key 'x'"),
], ids=["not-a-list", "nested-deep", "wrong-type", "extra-key"])
def test_records_read_back_are_checked(data, expected):
    with pytest.raises(BadInput) as e:
        cluster_ledger.ClusterLedger(FakeApi(data), "ns", "l").records()
    assert expected in e.value.message


@pytest.mark.parametrize("text, expected", [
    ("kind: [", "the backup is not valid YAML"),
    ("kind: ConfigMap\nmetadata: {name: pinotage-ledger-presentation}\ndata: {records.json: '{'}\n", "not JSON"),
    ("kind: ConfigMap\nmetadata: {name: pinotage-ledger-presentation}\ndata: {records.json: '[{\"id\": 1}]'}\n",
     "records.json record 1: not a deploy record"),
    ("kind: ConfigMap\nmetadata: 7\n---\nkind: ConfigMap\nmetadata: {name: pinotage-ledger-presentation}\n"
     "data: {records.json: '{}'}\n", "expected a list of deploy records"),
], ids=["not-yaml", "not-json", "not-a-record", "metadata-not-a-mapping"])
def test_a_backed_up_ledger_is_checked_too(tmp_path, text, expected):
    from pipeline import config as config_module
    from pipeline.cluster import redeploy

    backup = tmp_path / ".pinotage" / "backups" / "20260101T000000Z" / "presentation.yaml"
    backup.parent.mkdir(parents=True)
    backup.write_text(text)
    with pytest.raises(BadInput) as e:
        redeploy.backup_records(config_module.load(environ={}, cwd=str(tmp_path)))
    assert expected in e.value.message and str(backup) in e.value.message
