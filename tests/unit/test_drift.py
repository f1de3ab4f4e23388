"""pipeline.drift: managedFields (FieldsV1) in, the drifted fields Pinotage owns out; and the ledger's live mark."""

from __future__ import annotations

import copy

import pytest

from pipeline import drift, ledger
from pipeline.state import Image, Release

CONTAINER = 'k:{"name":"app"}'
PINOTAGE_FIELDS = {"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
    CONTAINER: {".": {}, "f:name": {}, "f:image": {}, "f:ports": {'k:{"containerPort":8080,"protocol":"TCP"}': {
        ".": {}, "f:containerPort": {}}}}}}}}}


def deployment(replicas=2, image="r/app@sha256:1", *, fields=None, extra_label="") -> dict:
    managed = [{"manager": "pinotage", "operation": "Apply", "fieldsType": "FieldsV1",
                "fieldsV1": copy.deepcopy(PINOTAGE_FIELDS if fields is None else fields)}]
    labels = {"team": extra_label} if extra_label else {}
    if extra_label:
        managed.append({"manager": "kubectl-label", "operation": "Update", "fieldsType": "FieldsV1",
                        "fieldsV1": {"f:metadata": {"f:labels": {"f:team": {}}}}})
    return {"metadata": {"name": "app", "labels": labels, "managedFields": managed},
            "spec": {"replicas": replicas, "progressDeadlineSeconds": 600, "template": {"spec": {"containers": [
                {"name": "app", "image": image, "ports": [{"containerPort": 8080, "protocol": "TCP"}]}]}}},
            "status": {"replicas": replicas}}


def test_owned_paths_reads_fields_v1_leaves():
    assert drift.owned_paths(deployment(), "pinotage") == {
        ("f:spec", "f:replicas"),
        ("f:spec", "f:template", "f:spec", "f:containers", CONTAINER, "f:name"),
        ("f:spec", "f:template", "f:spec", "f:containers", CONTAINER, "f:image"),
        ("f:spec", "f:template", "f:spec", "f:containers", CONTAINER, "f:ports",
         'k:{"containerPort":8080,"protocol":"TCP"}', "f:containerPort")}
    assert drift.owned_paths(deployment(), "someone-else") == set()


@pytest.mark.parametrize("path, expected", [
    (("f:spec", "f:replicas"), (True, 2)),
    (("f:spec", "f:template", "f:spec", "f:containers", CONTAINER, "f:image"), (True, "r/app@sha256:1")),
    (("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"other"}', "f:image"), (False, None)),
    (("f:spec", "f:paused"), (False, None)),
    (("f:spec", "f:replicas", "f:deeper"), (False, None)),
], ids=["scalar", "keyed-item", "missing-item", "missing-field", "through-a-scalar"])
def test_value_at(path, expected):
    assert drift.value_at(deployment(), path) == expected


@pytest.mark.parametrize("live, would, expected", [
    (deployment(), deployment(), []),
    (deployment(replicas=5), deployment(), [("spec.replicas", "5", "2")]),
    (deployment(image="r/app@sha256:9"), deployment(),
     [("spec.template.spec.containers[name=app].image", '"r/app@sha256:9"', '"r/app@sha256:1"')]),
    # another manager's label and a server default (progressDeadlineSeconds) are not Pinotage's fields
    (deployment(extra_label="web"), deployment(), []),
    (dict(deployment(), spec={**deployment()["spec"], "progressDeadlineSeconds": 60}), deployment(), []),
    # kubectl took the field over: Pinotage owns it only in the dry run's answer, and that is enough
    (deployment(replicas=3, fields={"f:spec": {"f:paused": {}}}), deployment(), [("spec.replicas", "3", "2")]),
    # k8s/ no longer sets a field the last deploy set: owned only in the live object
    (deployment(), dict(deployment(fields={"f:spec": {"f:template": PINOTAGE_FIELDS["f:spec"]["f:template"]}}),
                        spec={k: v for k, v in deployment()["spec"].items() if k != "replicas"}),
     [("spec.replicas", "2", drift.ABSENT)]),
], ids=["same", "scaled", "image-set", "other-managers-label", "server-default", "taken-over", "no-longer-set"])
def test_differences(live, would, expected):
    found = [(d.field, d.live, d.wanted) for d in drift.differences(live, would, "pinotage")]
    assert found == expected


def test_report_lines():
    diffs = drift.differences(deployment(replicas=3), deployment(), "pinotage")
    assert drift.report("deployment/app", diffs) == [
        "deployment/app: 1 field drifted (live -> k8s/ and the ledger):", "  spec.replicas: 3 -> 2"]
    assert "no drift" in drift.report("deployment/app", [])[0]


def record(n: int, outcome: str = "deployed") -> ledger.Record:
    return ledger.Record(id=f"id{n}", app="app", commit=f"{n:040x}", image=f"r/app@sha256:{n}", target="kubernetes",
                         build_url="", started_at=f"2026-01-0{n}T00:00:00+00:00",
                         finished_at=f"2026-01-0{n}T00:01:00+00:00", outcome=outcome)


def live(n: int, ledger_id: str = "") -> Release:
    return Release(image=Image(name="r/app", tag="", digest=f"sha256:{n}"), commit=f"{n:040x}", ledger_id=ledger_id)


@pytest.mark.parametrize("records, now, marked, note", [
    ([record(1), record(2)], live(2, "id2"), "id2", ""),
    ([record(1), record(2)], live(1), "id1", "live: r/app@sha256:1 is not r/app@sha256:2"),
    ([record(1), record(2, "rolled-back")], live(1, "id1"), "id1", ""),
    ([record(1)], live(7), None, "live: r/app@sha256:7 is not r/app@sha256:1"),
    ([record(1)], None, None, "live: nothing, though the ledger last deployed r/app@sha256:1"),
], ids=["newest-live", "older-live", "rolled-back-to", "unknown-image", "nothing-live"])
def test_history_marks_live_and_notes_a_hand_made_image(records, now, marked, note):
    found = ledger.live_record(records, now)
    assert (found.id if found else None) == marked
    lines = ledger.table(records, live=now)
    assert [line.startswith("*") for line in lines[1:]] == [r.id == marked for r in records]
    notes = ledger.live_note(records, now)
    assert (notes[0].startswith(note) if note else notes == []), notes


def test_table_without_live_marks_nothing():
    lines = ledger.table([record(1)])
    assert not lines[1].startswith("*")
