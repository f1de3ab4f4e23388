"""The vulnerability gate: the app's production npm dependencies and Pinotage's locked Python ones.

Each audit is a command (``npm audit --omit=dev --json`` against the lockfile, ``pip-audit`` against
requirements.lock) apart from the pure reading of its answer (``npm_findings``, ``python_findings``)
and the pure verdict (``verdict``), so the decisions are tested from recorded answers and the
commands against the real tools.

An advisory service that cannot be reached (no answer, an error status, or an answer for none of
the packages asked about) is one line, and ``audit.unreachable`` says whether it fails the build:
an audit that could not ask is never taken for a clean one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

from pipeline.config import tool_environ
from pipeline.errors import BadInput, PinotageError
from pipeline.shell import SubprocessShell

SEVERITIES = ("low", "moderate", "high", "critical")  # audit.fail_on names one of the last three, or "off"
# PyPI's advisories carry no severity: a Python advisory counts as high (fails at high and moderate).
PYTHON_SEVERITY = "high"
NPM_AUDIT_TIMEOUT_S = 180
NPM_FETCH_TIMEOUT_MS = 60_000
PIP_AUDIT_TIMEOUT_S = 300


class AuditFailed(PinotageError):
    """The audit found advisories at or above audit.fail_on, or could not ask and must not pass."""


@dataclasses.dataclass(frozen=True)
class Finding:
    """One advisory that applies to one installed package version."""

    ecosystem: str  # "npm" | "python"
    package: str
    version: str
    advisory: str  # its URL, else its id
    title: str
    severity: str  # one of SEVERITIES

    def line(self) -> str:
        return f"{self.ecosystem} {self.package}@{self.version}: {self.severity} {self.advisory} ({self.title})"


@dataclasses.dataclass(frozen=True)
class Report:
    """What the audits found, and which advisory services could not be asked (one line each)."""

    findings: tuple[Finding, ...] = ()
    unreachable: tuple[str, ...] = ()


class Unreachable(Exception):
    """An advisory service gave no usable answer; the message is the one line shown."""


# --- reading the answers (pure) ----------------------------------------------------------------

def npm_findings(output: str, lock: Mapping[str, Any]) -> list[Finding]:
    """Read ``npm audit --json`` output: one Finding per advisory and installed version."""
    report = _json_object(output)
    if report is None or not isinstance(report.get("vulnerabilities"), dict):
        raise Unreachable(f"npm audit: the advisory service gave no report ({_npm_error(report, output)})")
    packages = lock.get("packages", {}) if isinstance(lock, Mapping) else {}
    findings = []
    for name, vulnerability in sorted(report["vulnerabilities"].items()):
        versions = sorted({packages.get(node, {}).get("version", "") for node in vulnerability.get("nodes", [])}
                          - {""}) or ["?"]
        for via in vulnerability.get("via", []):
            if not isinstance(via, dict):
                continue  # "depends on a vulnerable X": X is listed with its own advisory
            for version in versions:
                findings.append(Finding("npm", via.get("name", name), version,
                                        via.get("url") or str(via.get("source", "?")), via.get("title", ""),
                                        _severity(via.get("severity"))))
    return findings


def python_findings(output: str) -> list[Finding]:
    """Read ``pip-audit --format json`` output; a dependency it could not look up makes it unreachable."""
    report = _json_object(output)
    if report is None or not isinstance(report.get("dependencies"), list):
        raise Unreachable(f"pip-audit: the advisory service gave no report ({_last_line(output)})")
    dependencies = report["dependencies"]
    skipped = [d for d in dependencies if d.get("skip_reason")]
    if skipped:
        raise Unreachable(f"pip-audit: could not look up {len(skipped)} of {len(dependencies)} packages"
                          f" ({skipped[0]['skip_reason']})")
    return [Finding("python", d["name"], d["version"], v.get("id", "?"),
                    ", ".join(v.get("aliases", [])) or (v.get("description") or "").split("\n")[0][:80],
                    PYTHON_SEVERITY)
            for d in dependencies for v in d.get("vulns", [])]


def verdict(report: Report, *, fail_on: str, unreachable: str) -> tuple[list[Finding], list[str]]:
    """Return the findings that fail the build and the reasons it fails (empty: it passes)."""
    failing = [] if fail_on == "off" else [
        f for f in report.findings if SEVERITIES.index(f.severity) >= SEVERITIES.index(fail_on)]
    reasons = [f.line() for f in failing]
    if unreachable == "fail":
        reasons += list(report.unreachable)
    return failing, reasons


def _severity(value: Any) -> str:
    value = str(value or "").lower()
    return value if value in SEVERITIES else "high"  # npm's own default for an advisory without one


def _json_object(output: str) -> dict[str, Any] | None:
    """Find the JSON object in a tool's output (its warnings share the stream)."""
    lines = output.splitlines()
    for start, line in enumerate(lines):
        if line.startswith("{"):
            for end in range(len(lines), start, -1):
                try:
                    value = json.loads("\n".join(lines[start:end]))
                except ValueError:
                    continue
                return value if isinstance(value, dict) else None
    return None


def _npm_error(report: dict[str, Any] | None, output: str) -> str:
    if report is not None:
        error = report.get("error") if isinstance(report.get("error"), dict) else {}
        text = error.get("summary") or report.get("message") or error.get("code")
        if text:
            return str(text).splitlines()[0]
    return _last_line(output)


def _last_line(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no output"


# --- running the audits --------------------------------------------------------------------------

def audit_npm(app_dir: Path, environ: Mapping[str, str]) -> list[Finding]:
    """Audit the production dependencies in the app's lockfile; raise Unreachable when npm cannot ask."""
    lock_path = app_dir / "package-lock.json"
    try:
        lock = json.loads(lock_path.read_text())
    except (OSError, ValueError) as e:
        raise BadInput(f"{lock_path}: cannot read the app's lockfile ({e})") from e
    if shutil.which("npm", path=environ.get("PATH")) is None:
        raise BadInput("npm is not installed: the audit of the app's dependencies needs it",
                       hint="install npm (Debian: apt-get install npm)")
    # The lockfile alone: no node_modules, no install scripts, nothing from the app run.
    with tempfile.TemporaryDirectory(prefix="pinotage-audit-") as work:
        for name in ("package.json", "package-lock.json"):
            shutil.copy(app_dir / name, Path(work, name))
        done = SubprocessShell(cwd=work, env=_npm_environ(environ, work)).run(
            ["npm", "audit", "--omit=dev", "--json", "--fetch-retries=0",
             f"--fetch-timeout={NPM_FETCH_TIMEOUT_MS}"], timeout_s=NPM_AUDIT_TIMEOUT_S, check=False)
    return npm_findings(done.output, lock)


def audit_python(lock_path: Path, environ: Mapping[str, str]) -> list[Finding]:
    """Audit the hash-locked Python requirements with pip-audit against PyPI's advisories."""
    if not lock_path.is_file():
        raise BadInput(f"{lock_path}: no such requirements lock", hint="see docs/supply-chain.md to generate it")
    done = SubprocessShell(env=tool_environ(environ)).run(
        [sys.executable, "-m", "pip_audit", "--requirement", str(lock_path), "--require-hashes", "--disable-pip",
         "--vulnerability-service", "pypi", "--format", "json", "--progress-spinner", "off"],
        timeout_s=PIP_AUDIT_TIMEOUT_S, check=False)
    if "No module named pip_audit" in done.output:
        raise BadInput("pip-audit is not installed", hint="install Pinotage with its 'audit' extra")
    return python_findings(done.output)


def run(app_dir: Path, python_lock: Path | None, environ: Mapping[str, str]) -> Report:
    """Run both audits; an unreachable service becomes a line of the report, not an exception."""
    findings: list[Finding] = []
    unreachable: list[str] = []
    audits = [lambda: audit_npm(app_dir, environ)]
    if python_lock is not None:
        audits.append(lambda: audit_python(python_lock, environ))
    for audit in audits:
        try:
            findings += audit()
        except Unreachable as e:
            unreachable.append(str(e))
    return Report(tuple(findings), tuple(unreachable))


def _npm_environ(environ: Mapping[str, str], work: str) -> dict[str, str]:
    """Pass the environment on (the registry, proxy and CA settings npm reads) with a cache of its own."""
    env = tool_environ(environ)
    env.setdefault("npm_config_cache", os.path.join(work, ".npm"))
    env["npm_config_update_notifier"] = "false"
    env["npm_config_fund"] = "false"
    return env


def gate(config, environ: Mapping[str, str], say: Callable[[str], None]) -> Report:
    """Audit the configured app and lock, print what was found, and raise AuditFailed per audit.fail_on."""
    lock = config.path(config.audit.python_lock) if config.audit.python_lock else None
    report = run(config.path(config.image.context), lock, environ)
    failing, reasons = verdict(report, fail_on=config.audit.fail_on, unreachable=config.audit.unreachable)
    for finding in report.findings:
        say(("FAIL " if finding in failing else "     ") + finding.line())
    for line in report.unreachable:
        say(f"{'FAIL' if config.audit.unreachable == 'fail' else 'warn'} {line}")
    if reasons:
        raise AuditFailed(f"audit: {reasons[0]}"
                          + (f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""),
                          hint="upgrade the package, or see docs/supply-chain.md for audit.fail_on"
                               " and audit.unreachable")
    return report
