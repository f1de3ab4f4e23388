"""The ledger's file store: one JSON line per deploy attempt, read back whole."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing

import pytest

from pipeline import ledger
from pipeline.errors import BadInput, DeployRefused, PinotageError, UnknownRelease
from pipeline.state import Image, Release


def record(n: int, outcome: str = "deployed", **extra) -> ledger.Record:
    return ledger.Record(id=f"id-{n}", app="presentation", commit=f"{n:040x}",
                         image=f"127.0.0.1:5000/p@sha256:{n:064x}", target="docker", build_url=f"https://ci/{n}/",
                         started_at=f"2024-05-01T10:00:{n:02d}+00:00", finished_at=f"2024-05-01T10:01:{n:02d}+00:00",
                         outcome=outcome, phases_s={"build": 1.5, "deploy": 2.25}, **extra)


def test_records_come_back_oldest_first(tmp_path):
    store = ledger.FileLedger(tmp_path / "state" / "ledger.jsonl")
    assert store.records() == []
    written = [record(1, revision="1"), record(2, "refused", message="older than the live one"),
               record(3, "rolled-back", message="rolled back to 1: never healthy", revision="1")]
    for r in written:
        store.append(r)
    assert store.records() == written
    assert ledger.last_deployed(store.records()) == written[0]


def test_a_record_written_before_revisions_were_kept_reads_back(tmp_path):
    path = tmp_path / "ledger.jsonl"
    older = {k: v for k, v in ledger.record_to_json(record(1)).items() if k != "revision"}
    path.write_text(json.dumps(older) + "\n")
    assert ledger.FileLedger(path).records() == [record(1)]


def _append_many(path, start):
    store = ledger.FileLedger(path)
    for n in range(start, start + 50):
        store.append(record(n % 60, message="x" * 3000))


def test_concurrent_appends_keep_whole_lines(tmp_path):
    path = tmp_path / "ledger.jsonl"
    workers = [multiprocessing.Process(target=_append_many, args=(path, start)) for start in (0, 100, 200)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    assert len(ledger.FileLedger(path).records()) == 150


@pytest.mark.parametrize("line, message", [
    ("{not json", "ledger.jsonl:2: not JSON"),
    (json.dumps({"id": "x"}), "ledger.jsonl:2: not a deploy record"),
    (json.dumps({**ledger.record_to_json(record(1)), "outcome": "maybe"}),
     "ledger.jsonl:2: outcome 'maybe' is not one of deployed, rolled-back, failed, refused"),
], ids=["not-json", "missing-fields", "unknown-outcome"])
def test_a_bad_line_is_named(tmp_path, line, message):
    path = tmp_path / "ledger.jsonl"
    ledger.FileLedger(path).append(record(1))
    with open(path, "a") as f:
        f.write(line + "\n")
    with pytest.raises(BadInput) as caught:
        ledger.FileLedger(path).records()
    assert message in caught.value.message


def test_table_lines_up_and_shows_every_record():
    lines = ledger.table([record(1), record(12, "refused")])
    assert lines[0].split() == ["started", "outcome", "commit", "image", "target", "took", "build"]
    assert lines[1].split()[:3] == ["2024-05-01T10:00:01+00:00", "deployed", f"{1:040x}"[:12]]
    assert lines[2].split()[1] == "refused"
    assert "3.8 s" in lines[1]
    assert lines[1].index("deployed") == lines[2].index("refused")


def test_ids_sort_by_start_and_differ():
    ids = [ledger.new_id() for _ in range(20)]
    assert len(set(ids)) == 20
    assert all(i[:16] <= j[:16] for i, j in zip(ids, ids[1:]))


def deploy(n: int, outcome: str = "deployed") -> ledger.Record:
    """Return record n with a commit whose prefixes tell it apart (n < 10)."""
    return dataclasses.replace(record(n, outcome), commit=str(n) * 40)


def live_as(n: int) -> Release:
    """Return the release that deploy(n) put live, as a target reads it back."""
    return Release(image=Image(name="127.0.0.1:5000/p", tag="", digest=f"sha256:{n:064x}", commit=str(n) * 40),
                   commit=str(n) * 40)


HISTORY = [deploy(1), deploy(2), deploy(3, "rolled-back"), deploy(4, "failed"), deploy(5, "refused"),
           deploy(6), dataclasses.replace(deploy(7), image="127.0.0.1:5000/p:untagged")]


@pytest.mark.parametrize("records, live, to_commit, picked", [
    (HISTORY, live_as(6), None, 2),
    (HISTORY, live_as(2), None, 6),
    (HISTORY, None, None, 6),
    (HISTORY, live_as(6), "1111111", 1),
    ([deploy(1), dataclasses.replace(deploy(10), commit="ab" * 20)], live_as(1), "ABAB", 10),
    ([deploy(1), deploy(2), deploy(1)], live_as(2), None, 1),
    ([deploy(1), dataclasses.replace(deploy(2), commit="1" * 40)], live_as(1), None, None),
], ids=["the-newest-other-than-live", "past-a-newer-one-when-an-older-is-live", "nothing-live-takes-the-newest",
        "to-a-named-commit-prefix", "to-in-capitals", "the-newest-record-of-a-commit-names-its-id",
        "another-image-of-the-live-commit-is-not-earlier"])
def test_pick_rollback_chooses_the_newest_successful_deploy_that_is_not_live(records, live, to_commit, picked):
    if picked is None:
        with pytest.raises(DeployRefused, match="no earlier successful deploy"):
            ledger.pick_rollback(records, live=live, to_commit=to_commit)
        return
    chosen = ledger.pick_rollback(records, live=live, to_commit=to_commit)
    assert chosen.id == f"id-{picked}"
    assert chosen is [r for r in records if r.commit == chosen.commit][-1]


@pytest.mark.parametrize("records, live, to_commit, error, message", [
    (HISTORY, live_as(6), "3333", UnknownRelease, "--to 3333: no successful deploy of that commit in the ledger"),
    (HISTORY, live_as(6), "beef", UnknownRelease, "--to beef: no successful deploy of that commit"),
    (HISTORY, live_as(6), "7777", UnknownRelease, "no successful deploy"),
    (HISTORY, live_as(6), "66666666", DeployRefused,
     f"666666666666 (127.0.0.1:5000/p@sha256:{6:064x}) is already deployed"),
    ([deploy(1)], live_as(1), None, DeployRefused, "there is no earlier successful deploy to roll back to"),
    ([], None, None, DeployRefused, "there is no earlier successful deploy"),
], ids=["a-rolled-back-deploy-is-not-returned-to", "an-unknown-commit", "an-image-without-a-digest",
        "the-live-one-is-already-deployed", "only-the-live-one", "an-empty-ledger"])
def test_pick_rollback_refuses_saying_why(records, live, to_commit, error, message):
    with pytest.raises(error) as caught:
        ledger.pick_rollback(records, live=live, to_commit=to_commit)
    assert message in caught.value.message
    if "already" not in message:
        assert caught.value.hint == "see 'pinotage history'"


def test_an_unknown_release_is_bad_input_that_tried_nothing():
    error = UnknownRelease("--to beef: no successful deploy")
    assert error.exit_code == 2 and isinstance(error, DeployRefused)


def test_release_of_a_record_names_the_record_and_its_digest():
    release = ledger.release_of(record(4))
    assert release == Release(image=Image(name="127.0.0.1:5000/p", tag="", digest=f"sha256:{4:064x}",
                                          commit=f"{4:040x}"), commit=f"{4:040x}", build_url="https://ci/4/",
                              ledger_id="id-4")


def test_a_torn_last_line_is_reported_and_skipped_and_the_next_append_starts_a_line(tmp_path):
    path = tmp_path / "ledger.jsonl"
    store = ledger.FileLedger(path, warn=(warnings := []).append)
    store.append(record(1))
    whole = json.dumps(ledger.record_to_json(record(2)), sort_keys=True)
    with open(path, "a") as f:
        f.write(whole[: len(whole) // 2])  # a crash in the middle of an append
    assert store.records() == [record(1)]
    assert warnings == [f"{path}:2: the last record is cut short (a crash while it was written?); skipped it"]
    store.append(record(3))  # cuts the torn line away first, so the new record starts a line
    assert warnings[1].startswith(f"{path}: removed a last record a crash cut short")
    assert store.records() == [record(1), record(3)]
    assert len(warnings) == 2


def test_a_torn_line_that_is_not_the_last_is_bad_input(tmp_path):
    path = tmp_path / "ledger.jsonl"
    path.write_text('{"id": "x"\n' + json.dumps(ledger.record_to_json(record(1))) + "\n")
    with pytest.raises(BadInput, match=r"ledger.jsonl:1: not JSON"):
        ledger.FileLedger(path).records()


def test_a_ledger_that_cannot_be_written_is_one_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(PinotageError) as e:
        ledger.FileLedger(tmp_path / "file" / "ledger.jsonl").append(record(1))
    assert e.value.message.startswith(f"{tmp_path / 'file' / 'ledger.jsonl'}: the record id-1 was not written (")


def test_an_outcome_is_written_as_its_plain_name_and_reads_back_equal(tmp_path):
    store = ledger.FileLedger(tmp_path / "ledger.jsonl")
    written = record(1, ledger.DeployOutcome.ROLLED_BACK)
    store.append(written)
    assert '"outcome": "rolled-back"' in (tmp_path / "ledger.jsonl").read_text()
    assert store.records() == [written] and store.records()[0].outcome == "rolled-back"
    assert ledger.OUTCOMES == ("deployed", "rolled-back", "failed", "refused")
