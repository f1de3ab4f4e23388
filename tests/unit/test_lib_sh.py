"""scripts/lib.sh's ensure_venv: one install serves scripts/demo and scripts/test alike."""

from __future__ import annotations

import hashlib
import subprocess

import pytest

from tests.conftest import ROOT


def _stamp() -> str:
    data = b"".join((ROOT / name).read_bytes() for name in ("setup.cfg", "pyproject.toml", "requirements.lock"))
    return hashlib.sha256(data).hexdigest()[:16]


def _ensure_venv(venv, extras: str) -> subprocess.CompletedProcess:
    # The virtualenv has a python but no pip: any attempt to install fails loudly.
    return subprocess.run(["bash", "-c", f'. "{ROOT}/scripts/lib.sh"; ensure_venv "$1"', "-", extras],
                          env={"PATH": "/usr/bin:/bin", "PINOTAGE_VENV": str(venv)},
                          capture_output=True, text=True, timeout=30)


@pytest.fixture
def venv(tmp_path):
    folder = tmp_path / "venv"
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "python").symlink_to("/bin/true")
    return folder


@pytest.mark.parametrize("stamp, extras", [
    ("{stamp}", ""), ("{stamp}", "test"),  # this version's stamp, for the demo and for the tests
    ("{stamp}-test", ""), ("{stamp}-test", "test"),  # an earlier version's stamp, made by scripts/test
], ids=["demo", "test", "demo-after-old-test", "test-after-old-test"])
def test_an_installed_virtualenv_serves_any_extras(venv, stamp, extras):
    (venv / ".pinotage-installed").write_text(stamp.format(stamp=_stamp()) + "\n")
    done = _ensure_venv(venv, extras)
    assert done.returncode == 0 and "installing" not in done.stderr, done.stderr


def test_a_changed_lock_installs_again(venv):
    (venv / ".pinotage-installed").write_text("0123456789abcdef\n")
    done = _ensure_venv(venv, "")
    assert "installing pinotage into" in done.stderr
    assert done.returncode != 0  # no pip in this virtualenv: the install was attempted and failed
