"""The SBOM's pure parts, and 'pinotage history --package' and 'pinotage sbom' over a ledger."""

from __future__ import annotations

import json

import pytest

from pipeline import cli, ledger, sbom
from pipeline.errors import BadInput
from tests.unit.test_runner_cli import env, repo  # noqa: F401 (the fixture)

DOCUMENT = {"bomFormat": "CycloneDX", "components": [
    {"name": "http-server", "version": "14.1.1", "properties": [{"name": "cdx:npm:package:path",
                                                                 "value": "node_modules/http-server"}]},
    {"group": "@antfu", "name": "install-pkg", "version": "1.1.0",
     "properties": [{"name": "cdx:npm:package:development", "value": "true"}]},
    {"group": "@types", "name": "node", "version": "22.0.0"},
]}


def test_components_and_what_ships():
    assert sbom.components(DOCUMENT) == [("http-server", "14.1.1", False), ("@antfu/install-pkg", "1.1.0", True),
                                         ("@types/node", "22.0.0", False)]
    assert sbom.shipped(DOCUMENT) == ("@types/node@22.0.0", "http-server@14.1.1")


@pytest.mark.parametrize("text, parsed", [
    ("http-server", ("http-server", "")), ("http-server@14.1.1", ("http-server", "14.1.1")),
    ("@types/node", ("@types/node", "")), ("@types/node@22.0.0", ("@types/node", "22.0.0")),
])
def test_parse_package(text, parsed):
    assert sbom.parse_package(text) == parsed


@pytest.mark.parametrize("text", ["", "@", "x@", "@types/node@"])
def test_parse_package_refuses(text):
    with pytest.raises(BadInput, match="--package: expected NAME or NAME@VERSION"):
        sbom.parse_package(text)


@pytest.mark.parametrize("name, version, found", [
    ("http-server", "14.1.1", True), ("http-server", "", True), ("http-server", "14.1.0", False),
    ("@types/node", "", True), ("node", "", False), ("http", "", False),
])
def test_ships(name, version, found):
    assert sbom.ships(("@types/node@22.0.0", "http-server@14.1.1"), name, version) is found


def a_record(n: int, outcome: str = "deployed", packages=(), digest="") -> ledger.Record:
    return ledger.Record(id=f"i{n}", app="presentation", commit=f"{n}" * 40, image=f"r/x@sha256:{n}",
                         target="docker", build_url="", started_at=f"2024-01-0{n}T00:00:00+00:00", finished_at="",
                         outcome=outcome, revision=f"rev{n}", sbom=digest, packages=tuple(packages))


def test_a_record_keeps_its_sbom_and_packages_through_json(tmp_path):
    store = ledger.FileLedger(tmp_path / "ledger.jsonl")
    record = a_record(1, packages=("a@1", "b@2"), digest="sha256:" + "0" * 64)
    store.append(record)
    assert store.records() == [record]


def kept(repo, data: bytes) -> str:
    """Keep an SBOM where the build would, under its digest; return the digest."""
    digest = sbom.digest_of(data)
    folder = repo.parent / "state" / "sbom"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{digest.removeprefix('sha256:')}.cdx.json").write_bytes(data)
    return digest


def test_history_answers_which_deploys_shipped_a_package(repo, capsys):  # noqa: F811
    store = ledger.FileLedger(repo.parent / "state" / "ledger-presentation.jsonl")
    store.append(a_record(1, packages=("lodash@4.17.20", "http-server@14.1.1")))
    store.append(a_record(2, packages=("lodash@4.17.21", "http-server@14.1.1")))
    store.append(a_record(3, outcome="failed", packages=("lodash@4.17.20",)))
    assert cli.main(["history", "--json", "--package", "lodash@4.17.20"], environ=env(repo)) == 0
    assert [r["commit"][0] for r in json.loads(capsys.readouterr().out)] == ["1", "3"]
    assert cli.main(["history", "--json", "--package", "http-server"], environ=env(repo)) == 0
    assert [r["commit"][0] for r in json.loads(capsys.readouterr().out)] == ["1", "2"]
    assert cli.main(["history", "--package", "lodash"], environ=env(repo)) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split()[-1] == "shipped" and [row.split()[-1] for row in rows] == [
        "lodash@4.17.20", "lodash@4.17.21", "lodash@4.17.20"]
    assert cli.main(["history", "--package", "left-pad@1.3.0"], environ=env(repo)) == 0
    assert capsys.readouterr().out == "no deploy shipped left-pad@1.3.0\n"
    assert cli.main(["history", "--package", "lodash@"], environ=env(repo)) == 2


def test_sbom_prints_or_saves_a_deployed_revisions_sbom(repo, capsys):  # noqa: F811
    first, second = (json.dumps({**DOCUMENT, "n": n}).encode() for n in (1, 2))
    store = ledger.FileLedger(repo.parent / "state" / "ledger-presentation.jsonl")
    store.append(a_record(1, digest=kept(repo, first)))
    store.append(a_record(2, digest=kept(repo, second)))
    store.append(a_record(3, outcome="failed", digest="sha256:" + "f" * 64))
    assert cli.main(["sbom"], environ=env(repo)) == 0  # the newest deploy that went live
    assert json.loads(capsys.readouterr().out)["n"] == 2
    assert cli.main(["sbom", "rev1", "-o", str(repo.parent / "out.json")], environ=env(repo)) == 0
    assert (repo.parent / "out.json").read_bytes() == first
    assert "saved to" in capsys.readouterr().err
    assert cli.main(["sbom", "1111111"], environ=env(repo)) == 0  # by commit
    assert json.loads(capsys.readouterr().out)["n"] == 1
    assert cli.main(["sbom", "rev3"], environ=env(repo)) == 2  # it failed: nothing of it was deployed
    assert "no deploy of revision 'rev3' in the ledger" in capsys.readouterr().err


def test_sbom_refuses_a_kept_file_whose_digest_changed(repo, capsys):  # noqa: F811
    digest = kept(repo, b'{"components": []}')
    (repo.parent / "state" / "sbom" / f"{digest.removeprefix('sha256:')}.cdx.json").write_bytes(b"{}")
    ledger.FileLedger(repo.parent / "state" / "ledger-presentation.jsonl").append(a_record(1, digest=digest))
    assert cli.main(["sbom"], environ=env(repo)) == 1
    assert f"its digest is {sbom.digest_of(b'{}')}, not {digest}" in capsys.readouterr().err


def test_a_deploy_without_an_sbom_says_so(repo, capsys):  # noqa: F811
    ledger.FileLedger(repo.parent / "state" / "ledger-presentation.jsonl").append(a_record(1))
    assert cli.main(["sbom"], environ=env(repo)) == 1
    assert "the deploy of 111111111111 recorded no SBOM" in capsys.readouterr().err
