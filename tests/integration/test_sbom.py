"""The app's SBOM written by the real CycloneDX tool (tools/cyclonedx, installed by scripts/test)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

import pytest

from pipeline import sbom
from pipeline.config import Config, ImageConfig
from tests.conftest import ROOT, need

pytestmark = pytest.mark.integration

APP = ROOT / "docker" / "presentation"


def lock_packages() -> set[tuple[str, str, bool]]:
    """Return (name, version, dev) of every package in the app's lockfile.

    An alias ("string-width-cjs": npm:string-width@4.2.3) is under the package's own name, as in the SBOM.
    """
    lock = json.loads((APP / "package-lock.json").read_text())["packages"]
    return {(entry.get("name") or path.split("node_modules/")[-1], entry["version"], bool(entry.get("dev")))
            for path, entry in lock.items() if path}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The real app's SBOM, written by the tool into two state folders."""
    if not (ROOT / sbom.LOCAL_TOOL).is_file() and shutil.which(sbom.TOOL) is None:
        need("the CycloneDX tool", "scripts/test installs it under tools/cyclonedx")
    made = []
    for _ in range(2):
        state = tmp_path_factory.mktemp("state")
        config = Config(root=str(ROOT), state_dir=str(state), image=ImageConfig(context="docker/presentation"))
        environ = {"PATH": os.environ["PATH"], "HOME": str(state), "NODE_ENV": "production"}
        made.append(sbom.generate(config, environ))
    return config, made[0], made[1]


def app_copy(tmp_path):
    """A repository holding a copy of the app's package.json and lockfile, and a state folder."""
    shutil.copytree(APP, tmp_path / "app", ignore=shutil.ignore_patterns("node_modules", "slides"))
    return Config(root=str(tmp_path), state_dir="state", image=ImageConfig(context="app")), \
        {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}


def tool_runs(monkeypatch) -> list:
    """Count the runs of the tool: each is a subprocess started through SubprocessShell."""
    runs = []
    real = sbom.SubprocessShell.run

    def counted(self, argv, **kwargs):
        runs.append(argv)
        return real(self, argv, **kwargs)

    monkeypatch.setattr(sbom.SubprocessShell, "run", counted)
    return runs


def test_a_build_of_the_same_lockfile_reuses_the_kept_sbom(written, tmp_path, monkeypatch):
    _, made, _ = written
    config, environ = app_copy(tmp_path)
    runs = tool_runs(monkeypatch)
    first, second = sbom.generate(config, environ), sbom.generate(config, environ)
    assert len(runs) == 1 and not first.reused and second.reused
    assert (second.digest, second.packages, second.path) == (first.digest, first.packages, first.path) \
        and first.digest == made.digest


def test_a_changed_lockfile_or_a_changed_kept_file_runs_the_tool_again(written, tmp_path, monkeypatch):
    config, environ = app_copy(tmp_path)
    runs = tool_runs(monkeypatch)
    first = sbom.generate(config, environ)
    shutil.rmtree(tmp_path / ".cache")  # only the state folder's copy is left
    with open(first.path, "ab") as kept:
        kept.write(b" ")  # the kept file no longer has its digest: it is not trusted
    again = sbom.generate(config, environ)
    assert not again.reused and len(runs) == 2 and again.digest == first.digest
    package = tmp_path / "app" / "package.json"
    document = json.loads(package.read_text())
    document["description"] = "changed"
    package.write_text(json.dumps(document))
    third = sbom.generate(config, environ)
    assert not third.reused and len(runs) == 3 and third.digest != first.digest
    assert not sbom.generate(config, {**environ, "npm_config_omit": "dev"}).reused  # npm's settings count too


def test_a_new_state_folder_reuses_the_sbom_from_the_users_cache(written, tmp_path, monkeypatch):
    config, environ = app_copy(tmp_path)
    runs = tool_runs(monkeypatch)
    first = sbom.generate(config, environ)
    elsewhere = dataclasses.replace(config, state_dir="another-state")
    again = sbom.generate(elsewhere, environ)
    assert len(runs) == 1 and again.reused and again.digest == first.digest
    assert sbom.load(elsewhere, again.digest) == open(first.path, "rb").read()  # kept in the new folder too
    cached = next((tmp_path / ".cache" / "pinotage" / "sbom").glob("*.cdx.json"))
    cached.write_text("{}")  # not an SBOM: the tool runs
    assert not sbom.generate(dataclasses.replace(config, state_dir="a-third"), environ).reused and len(runs) == 2


def test_the_sbom_lists_every_package_of_the_lockfile_with_its_version(written):
    _, made, _ = written
    document = json.loads(open(made.path, "rb").read())
    assert document["bomFormat"] == "CycloneDX"
    listed = {(name, version) for name, version, _ in sbom.components(document)}
    in_lock = lock_packages()
    assert len(in_lock) > 100 and {(n, v) for n, v, _ in in_lock} <= listed
    shipped = {f"{name}@{version}" for name, version, dev in in_lock if not dev}
    assert set(made.packages) == shipped  # NODE_ENV=production in the caller's environment changes nothing


def test_the_sbom_is_kept_under_its_digest_and_is_reproducible(written):
    config, made, again = written
    assert (made.digest, made.packages) == (again.digest, again.packages)  # two runs of the tool, two folders
    assert sbom.load(config, made.digest) == open(made.path, "rb").read()
    assert made.path.endswith(made.digest.removeprefix("sha256:") + ".cdx.json")


def test_a_relative_repository_root_finds_the_tool(written, monkeypatch, tmp_path):
    _, made, _ = written
    monkeypatch.chdir(ROOT)
    config = Config(root=".", state_dir=str(tmp_path), image=ImageConfig(context="docker/presentation"))
    assert sbom.generate(config, {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}).digest == made.digest
