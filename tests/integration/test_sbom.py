"""The app's SBOM written by the real CycloneDX tool (tools/cyclonedx, installed by scripts/test)."""

from __future__ import annotations

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
    """The real app's SBOM, written twice into one state folder."""
    if not (ROOT / sbom.LOCAL_TOOL).is_file() and shutil.which(sbom.TOOL) is None:
        need("the CycloneDX tool", "scripts/test installs it under tools/cyclonedx")
    state = tmp_path_factory.mktemp("state")
    config = Config(root=str(ROOT), state_dir=str(state), image=ImageConfig(context="docker/presentation"))
    environ = {"PATH": os.environ["PATH"], "HOME": str(state), "NODE_ENV": "production"}
    return config, sbom.generate(config, environ), sbom.generate(config, environ)


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
    assert made == again
    assert sbom.load(config, made.digest) == open(made.path, "rb").read()
    assert made.path.endswith(made.digest.removeprefix("sha256:") + ".cdx.json")


def test_a_relative_repository_root_finds_the_tool(written, monkeypatch, tmp_path):
    _, made, _ = written
    monkeypatch.chdir(ROOT)
    config = Config(root=".", state_dir=str(tmp_path), image=ImageConfig(context="docker/presentation"))
    assert sbom.generate(config, {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}).digest == made.digest
