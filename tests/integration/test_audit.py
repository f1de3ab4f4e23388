"""The vulnerability gate with the real npm client: a fixture app whose lockfile pins a version with
a published high-severity advisory, the real app, and an advisory service that cannot be reached.

npm asks the advisory service double on loopback (tests/fakes/npm_advisories.py); with
PINOTAGE_TEST_NPM_REGISTRY set (e.g. https://registry.npmjs.org/) the same tests ask that registry.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import audit
from pipeline.config import AuditConfig, Config, ImageConfig
from tests.conftest import ROOT, free_port, need
from tests.fakes.npm_advisories import FakeAdvisories

pytestmark = pytest.mark.integration

FIXTURE_PACKAGE = {"name": "audit-fixture", "version": "1.0.0", "private": True,
                   "dependencies": {"lodash": "4.17.20"}, "devDependencies": {"minimist": "1.2.5"}}
# lodash 4.17.20 has GHSA-35jh-r3h4-6jhm (high); minimist 1.2.5, a dev dependency only, has
# GHSA-xvch-5gv4-984h (critical), which an audit of production dependencies must not name.
FIXTURE_LOCK = {
    "name": "audit-fixture", "version": "1.0.0", "lockfileVersion": 3, "requires": True,
    "packages": {
        "": {k: FIXTURE_PACKAGE[k] for k in ("name", "version", "dependencies", "devDependencies")},
        "node_modules/lodash": {"version": "4.17.20", "license": "MIT",
                                "resolved": "https://registry.npmjs.org/lodash/-/lodash-4.17.20.tgz"},
        "node_modules/minimist": {"version": "1.2.5", "dev": True, "license": "MIT",
                                  "resolved": "https://registry.npmjs.org/minimist/-/minimist-1.2.5.tgz"},
    },
}


@pytest.fixture(scope="module")
def registry():
    """The registry npm audits against: a real one when named, else the double."""
    if shutil.which("npm") is None:
        need("npm", "the audit runs the npm client")
    real = os.environ.get("PINOTAGE_TEST_NPM_REGISTRY")
    if real:
        yield real
        return
    with FakeAdvisories() as fake:
        yield fake.url


@pytest.fixture
def fixture_app(tmp_path) -> Path:
    app = tmp_path / "app"
    app.mkdir()
    (app / "package.json").write_text(json.dumps(FIXTURE_PACKAGE))
    (app / "package-lock.json").write_text(json.dumps(FIXTURE_LOCK))
    return app


def a_config(app: Path, **audit_settings) -> Config:
    return Config(root=str(app.parent), image=ImageConfig(context=app.name),
                  audit=AuditConfig(**{"python_lock": "", **audit_settings}))


def environ(registry: str, tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "npm_config_registry": registry, "npm_config_cache": str(tmp_path / "npm-cache")}


def test_a_published_high_advisory_fails_the_build_and_is_named(fixture_app, registry, tmp_path):
    said: list[str] = []
    with pytest.raises(audit.AuditFailed) as failed:
        audit.gate(a_config(fixture_app), environ(registry, tmp_path), said.append)
    assert "npm lodash@4.17.20: high https://github.com/advisories/GHSA-35jh-r3h4-6jhm" in failed.value.message
    assert any(line.startswith("FAIL npm lodash@4.17.20: high") for line in said)
    assert not any("minimist" in line for line in said)  # a dev dependency: not shipped, not audited


def test_fail_on_critical_lets_a_high_advisory_pass_and_still_lists_it(fixture_app, registry, tmp_path):
    said: list[str] = []
    report = audit.gate(a_config(fixture_app, fail_on="critical"), environ(registry, tmp_path), said.append)
    assert [f.package for f in report.findings] == ["lodash"]
    assert said == ["     " + report.findings[0].line()]


def test_the_real_app_passes(registry, tmp_path):
    app = ROOT / "docker/presentation"
    report = audit.gate(a_config(app), environ(registry, tmp_path), lambda line: None)
    assert not [f for f in report.findings if f.severity in ("high", "critical")]
    assert report.unreachable == ()


@pytest.mark.parametrize("unreachable", ["warn", "fail"])
def test_an_unreachable_advisory_service_follows_audit_unreachable(fixture_app, tmp_path, unreachable):
    if shutil.which("npm") is None:
        need("npm", "the audit runs the npm client")
    closed = f"http://127.0.0.1:{free_port()}/"  # nothing listens there
    said: list[str] = []
    config = a_config(fixture_app, unreachable=unreachable)
    if unreachable == "fail":
        with pytest.raises(audit.AuditFailed, match=r"^audit: npm audit: the advisory service gave no report"):
            audit.gate(config, environ(closed, tmp_path), said.append)
    else:
        report = audit.gate(config, environ(closed, tmp_path), said.append)
        assert report.findings == ()
    [line] = said
    assert line.startswith(f"{'FAIL' if unreachable == 'fail' else 'warn'} npm audit: the advisory service gave no report")
    assert "ECONNREFUSED" in line or "127.0.0.1" in line


def test_pip_audit_behind_an_unreachable_service_is_one_line(tmp_path):
    """pip-audit asks PyPI's JSON API; with PyPI out of reach the lock is not taken as clean."""
    closed = f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "https_proxy", "http_proxy")}
    env.update(HTTPS_PROXY=closed, HTTP_PROXY=closed)
    lock = tmp_path / "requirements.lock"
    lock.write_text("six==1.17.0 \\\n    --hash=sha256:4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274\n")
    with pytest.raises(audit.Unreachable, match=r"^pip-audit: "):
        audit.audit_python(lock, env)


def test_pinotage_audit_exits_1_naming_the_advisory(fixture_app, registry, tmp_path):
    done = subprocess.run([sys.executable, "-m", "pipeline", "audit", "--set", "audit.python_lock=",
                           "--set", f"image.context={fixture_app.name}"],
                          cwd=fixture_app.parent, env=environ(registry, tmp_path), capture_output=True, text=True)
    assert done.returncode == 1
    assert "pinotage: error: audit: npm lodash@4.17.20: high https://github.com/advisories/GHSA-35jh-r3h4-6jhm" \
        in done.stderr
