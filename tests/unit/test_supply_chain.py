"""Pins that can be verified: base images by digest, apt keys by fingerprint, Python deps by hash."""

from __future__ import annotations

import configparser
import importlib.metadata
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
FINGERPRINT = re.compile(r"\b[0-9A-F]{40}\b")


def dockerfiles() -> list[Path]:
    return sorted(p for p in (ROOT / "docker").rglob("*") if p.is_file() and p.name.startswith("Dockerfile"))


def from_defaults(text: str) -> list[str]:
    """Return each FROM's image as its build-argument defaults make it (stage names excluded)."""
    args: dict[str, str] = {}
    stages: set[str] = set()
    images = []
    for line in text.replace("\\\n", " ").splitlines():
        words = line.split()
        if not words:
            continue
        if words[0].upper() == "ARG" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            args.setdefault(name, value.strip('"'))
        elif words[0].upper() == "FROM":
            rest = [w for w in words[1:] if not w.startswith("--")]
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), ""), rest[0])
            if image not in stages:
                images.append(image)
            if len(rest) >= 3 and rest[1].upper() == "AS":
                stages.add(rest[2])
    return images


@pytest.mark.parametrize("path", dockerfiles(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_default_base_image_is_pinned_by_digest(path):
    images = from_defaults(path.read_text())
    assert images, f"{path}: no FROM"
    for image in images:
        assert DIGEST.search(image), f"{path}: FROM {image or '(empty default)'} has no @sha256 digest"
        assert ":" in image.split("@")[0].rsplit("/", 1)[-1], f"{path}: {image} has no tag beside its digest"


def test_the_digest_check_catches_a_tag_only_default():
    text = "ARG BASE=node:24-bookworm-slim\nFROM ${BASE} AS build\nFROM build\n"
    assert from_defaults(text) == ["node:24-bookworm-slim"]
    assert not DIGEST.search(from_defaults(text)[0])


APT_KEY_FILES = [*dockerfiles(), ROOT / "scripts/packer/provision.sh"]


@pytest.mark.parametrize("path", APT_KEY_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_apt_key_is_checked_against_its_fingerprint(path):
    text = path.read_text()
    if "gpg --dearmor" not in text and "signed-by" not in text:
        pytest.skip(f"{path.relative_to(ROOT)} installs no apt key")
    assert not re.search(r"apt-key\s+add", text), f"{path}: apt-key add trusts a key for every repository"
    assert "gpg --show-keys --with-colons" in text, f"{path}: a key is fetched but its fingerprint is not read"
    assert FINGERPRINT.search(text), f"{path}: no published fingerprint to compare with"
    assert not re.search(r"curl[^\n]*\|\s*(?:sudo\s+)?gpg", text), f"{path}: a key is piped into gpg unchecked"


def provision_functions(tmp_path: Path) -> Path:
    """Write provision.sh's key functions (and only those) to a file a test can source."""
    text = (ROOT / "scripts/packer/provision.sh").read_text()
    parts = [re.search(rf"^{name}\(\) \{{\n.*?^\}}\n", text, re.S | re.M).group(0)
             for name in ("key_fingerprint", "install_apt_key")]
    functions = tmp_path / "functions.sh"
    functions.write_text("\n".join(parts))
    return functions


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory):
    """Make a throw-away signing key; return its armored file and fingerprint."""
    if shutil.which("gpg") is None:
        pytest.skip("gpg is not installed")
    home = tmp_path_factory.mktemp("gnupg")
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", "Test <test@example.invalid>",
                    "ed25519", "sign", "never"], env=env, check=True, capture_output=True)
    listing = subprocess.run(["gpg", "--with-colons", "--list-keys"], env=env, check=True,
                             capture_output=True, text=True).stdout
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    armored = home / "key.asc"
    subprocess.run(["gpg", "--armor", "--export", "-o", str(armored)], env=env, check=True)
    return armored, fingerprint


@pytest.mark.parametrize("right", [True, False], ids=["published fingerprint", "another fingerprint"])
def test_provision_installs_an_apt_key_only_with_its_fingerprint(tmp_path, signing_key, right):
    armored, fingerprint = signing_key
    expected = fingerprint if right else "0" * 40
    keyring = tmp_path / "keyrings/test.gpg"
    done = subprocess.run(
        ["bash", "-c", f'set -euo pipefail; . "$0"; install_apt_key "file://$1" "$2" "$3"',
         str(provision_functions(tmp_path)), str(armored), expected, str(keyring)],
        env={"PATH": os.environ["PATH"], "GNUPGHOME": str(tmp_path)}, capture_output=True, text=True)
    if right:
        assert done.returncode == 0, done.stderr
        assert keyring.read_bytes()[:1] != b"-"  # dearmored: a binary keyring apt reads
    else:
        assert done.returncode == 1
        assert f"has key {fingerprint}, expected {expected}" in done.stderr
        assert not keyring.exists()


# --- the Python lock ---------------------------------------------------------------------------

def setup_cfg_requirements() -> list[Requirement]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    lines = parser["options"]["install_requires"].splitlines()
    for extra in parser["options.extras_require"].values():
        lines += extra.splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.strip().startswith("#")]


def lock_pins(text: str) -> dict[str, tuple[str, list[str]]]:
    """Return each locked package's version and what the lock says pulls it in ("# via")."""
    pins: dict[str, tuple[str, list[str]]] = {}
    current = None
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ ;\\]+)", line)
        if match:
            current = canonicalize_name(match.group(1))
            pins[current] = (match.group(2), [])
        elif current and line.strip().startswith("#"):
            pins[current][1].append(line.strip("# ").removeprefix("via").strip())
    return pins


def lock_disagreements(requirements: list[Requirement], pins: dict[str, tuple[str, list[str]]]) -> list[str]:
    """Return every way the lock and setup.cfg disagree (empty: they agree)."""
    problems = []
    wanted = {canonicalize_name(r.name): r for r in requirements}
    for name, requirement in wanted.items():
        if name not in pins:
            problems.append(f"{requirement}: not in requirements.lock")
        elif not requirement.specifier.contains(pins[name][0], prereleases=True):
            problems.append(f"{requirement}: the lock has {pins[name][0]}")
    for name, (version, via) in pins.items():
        if any(v.startswith("pinotage (setup.cfg)") for v in via) and name not in wanted:
            problems.append(f"{name}=={version}: top-level in the lock, not in setup.cfg")
    return problems


def test_the_lock_agrees_with_setup_cfg():
    pins = lock_pins((ROOT / "requirements.lock").read_text())
    assert lock_disagreements(setup_cfg_requirements(), pins) == [], \
        "refresh the lock: see docs/supply-chain.md"


@pytest.mark.parametrize("requirement, lock, problem", [
    ("PyYAML>=6.0,<7", "requests==2.32.0 \\\n    # via pinotage (setup.cfg)\n", "PyYAML<7,>=6.0: not in requirements.lock"),
    ("requests>=2.31,<3", "requests==3.0.1 \\\n    # via pinotage (setup.cfg)\n", "requests<3,>=2.31: the lock has 3.0.1"),
    ("requests>=2.31,<3", "requests==2.32.0 \\\n    # via pinotage (setup.cfg)\nsix==1.0 \\\n    # via\n"
     "    #   pinotage (setup.cfg)\n    #   other\n", "six==1.0: top-level in the lock, not in setup.cfg"),
], ids=["missing", "outside the range", "stale top-level"])
def test_the_lock_check_finds_each_disagreement(requirement, lock, problem):
    assert problem in lock_disagreements([Requirement(requirement)], lock_pins(lock))


def test_every_locked_dependency_has_hashes():
    lines = (ROOT / "requirements.lock").read_text().splitlines()
    pinned = [i for i, line in enumerate(lines) if re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*==", line)]
    assert len(pinned) > 10
    for i in pinned:
        assert lines[i].endswith("\\") and "--hash=sha256:" in lines[i + 1], lines[i]


def test_this_environment_was_installed_from_the_lock():
    """scripts/test installs the lock with --require-hashes: what runs here is what it pins."""
    pins = lock_pins((ROOT / "requirements.lock").read_text())
    wrong = []
    for name, (version, _) in pins.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            wrong.append(f"{name}: not installed")
            continue
        if installed != version:
            wrong.append(f"{name}: {installed} installed, {version} locked")
    assert wrong == []


def test_the_fake_jenkins_answers_as_the_shipped_lts():
    from tests.fakes import jenkins as fake

    assert f"jenkins/jenkins:{fake.VERSION}-lts-" in (ROOT / "docker/jenkins/Dockerfile").read_text()


def test_every_build_runs_the_audit_stage_with_no_credential():
    text = (ROOT / "Jenkinsfile").read_text()
    start = text.index("stage('Audit')")
    block = text[start:text.index("stage(", start + 1)]
    assert "sh 'pinotage audit" in block
    assert "when" not in block and "withCredentials" not in block  # branch and PR builds too, no secret
    assert text.index("stage('Build')") < start < text.index("stage('Release')")
