"""The audit's pure parts: reading npm audit and pip-audit answers, and the verdict."""

from __future__ import annotations

import json

import pytest

from pipeline import audit, config as config_module
from pipeline.audit import Finding, Report
from pipeline.errors import ConfigError

LODASH_VIA = {"source": 1106913, "name": "lodash", "dependency": "lodash", "title": "Command Injection in lodash",
              "url": "https://github.com/advisories/GHSA-35jh-r3h4-6jhm", "severity": "high", "range": "<4.17.21"}
# npm audit --json as npm 11 prints it (trimmed), a warning line before it as on the shared stream.
NPM_REPORT = "npm warn config something\n" + json.dumps({
    "auditReportVersion": 2,
    "vulnerabilities": {
        "lodash": {"name": "lodash", "severity": "high", "isDirect": False, "via": [LODASH_VIA],
                   "effects": ["wrapper"], "range": "<4.17.21", "nodes": ["node_modules/lodash"]},
        "wrapper": {"name": "wrapper", "severity": "high", "isDirect": True, "via": ["lodash"], "effects": [],
                    "range": "*", "nodes": ["node_modules/wrapper"]},
    },
    "metadata": {"vulnerabilities": {"high": 2, "total": 2}},
}, indent=2)
LOCK = {"packages": {"node_modules/lodash": {"version": "4.17.20"}, "node_modules/wrapper": {"version": "1.0.0"}}}
NPM_405 = json.dumps({"message": "405 Method Not Allowed - POST https://registry.npmjs.org/-/npm/v1/security/"
                                 "advisories/bulk", "statusCode": 405})
NPM_REFUSED = json.dumps({"error": {"code": "ECONNREFUSED", "summary": "request to http://127.0.0.1:9/ failed",
                                    "detail": ""}})


def test_npm_findings_name_the_advisory_and_the_locked_version():
    assert audit.npm_findings(NPM_REPORT, LOCK) == [
        Finding("npm", "lodash", "4.17.20", "https://github.com/advisories/GHSA-35jh-r3h4-6jhm",
                "Command Injection in lodash", "high")]  # "wrapper" only depends on it: not a finding of its own


@pytest.mark.parametrize("output, reason", [
    (NPM_405, "405 Method Not Allowed"),
    (NPM_REFUSED, "request to http://127.0.0.1:9/ failed"),
    ("npm error code ENOLOCK\nnpm error audit This command requires an existing lockfile.", "existing lockfile"),
], ids=["proxy refuses POST", "connection refused", "no JSON at all"])
def test_npm_without_a_report_is_unreachable_with_one_line(output, reason):
    with pytest.raises(audit.Unreachable) as caught:
        audit.npm_findings(output, LOCK)
    assert reason in str(caught.value) and "\n" not in str(caught.value)


PIP_REPORT = json.dumps({"dependencies": [
    {"name": "requests", "version": "2.25.0", "vulns": [
        {"id": "PYSEC-2023-74", "fix_versions": ["2.31.0"], "aliases": ["CVE-2023-32681", "GHSA-j8r2-6x86-q33q"],
         "description": "Requests is a HTTP library..."}]},
    {"name": "six", "version": "1.17.0", "vulns": []}], "fixes": []})


def test_python_findings_count_as_high():
    assert audit.python_findings("No known vulnerabilities found\n" + PIP_REPORT) == [
        Finding("python", "requests", "2.25.0", "PYSEC-2023-74", "CVE-2023-32681, GHSA-j8r2-6x86-q33q", "high")]


def test_pip_audit_that_looked_up_nothing_is_unreachable_not_clean():
    skipped = json.dumps({"dependencies": [
        {"name": "six", "skip_reason": "Dependency not found on PyPI and could not be audited: six (1.17.0)"}]})
    with pytest.raises(audit.Unreachable, match=r"could not look up 1 of 1 packages"):
        audit.python_findings(skipped)


HIGH = Finding("npm", "a", "1", "GHSA-1", "t", "high")
MODERATE = Finding("npm", "b", "1", "GHSA-2", "t", "moderate")
CRITICAL = Finding("python", "c", "1", "PYSEC-3", "t", "critical")


@pytest.mark.parametrize("fail_on, unreachable, report, failing, reasons", [
    ("high", "fail", Report((HIGH, MODERATE, CRITICAL)), [HIGH, CRITICAL], 2),
    ("critical", "fail", Report((HIGH, MODERATE, CRITICAL)), [CRITICAL], 1),
    ("moderate", "fail", Report((HIGH, MODERATE)), [HIGH, MODERATE], 2),
    ("off", "fail", Report((CRITICAL,)), [], 0),
    ("high", "warn", Report((MODERATE,), ("npm audit: no answer",)), [], 0),
    ("high", "fail", Report((MODERATE,), ("npm audit: no answer",)), [], 1),
    ("off", "fail", Report((), ("npm audit: no answer",)), [], 1),
], ids=["high", "critical", "moderate", "off", "unreachable warns", "unreachable fails", "off still asks"])
def test_verdict(fail_on, unreachable, report, failing, reasons):
    found, why = audit.verdict(report, fail_on=fail_on, unreachable=unreachable)
    assert found == failing
    assert len(why) == reasons


@pytest.mark.parametrize("override, problem", [
    ("audit.fail_on=low", "audit.fail_on: expected one of critical, high, moderate, off, got 'low'"),
    ("audit.unreachable=ignore", "audit.unreachable: expected one of warn, fail, got 'ignore'"),
])
def test_audit_settings_are_checked(tmp_path, override, problem):
    with pytest.raises(ConfigError) as caught:
        config_module.load(environ={}, overrides=[override], cwd=str(tmp_path))
    assert any(problem in p for p in caught.value.problems)


def test_audit_defaults():
    settings = config_module.load(environ={}, cwd="/").audit
    assert (settings.fail_on, settings.unreachable, settings.python_lock) == ("high", "fail", "requirements.lock")


def test_tools_get_no_pinotage_setting_and_no_secret_is_read():
    from tests.unit.test_runner_cli import SecretTrap

    environ = SecretTrap({"PATH": "/usr/bin", "npm_config_registry": "http://127.0.0.1:9/",
                          "PINOTAGE_REGISTRY_PASSWORD": "never-read", "PINOTAGE_GITHUB_TOKEN": "never-read",
                          "PINOTAGE_DEPLOY_TARGET": "docker"})
    assert config_module.tool_environ(environ) == {"PATH": "/usr/bin", "npm_config_registry": "http://127.0.0.1:9/"}
