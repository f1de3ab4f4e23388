"""pinotage doctor without services: the report's shape, exit codes, and no traceback or secret."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys

import pytest

from pipeline import doctor
from pipeline.doctor import Finding, Status
from pipeline.doctor import registry as registry_area

TOKENS = {"PINOTAGE_REGISTRY_PASSWORD": "reg-secret-3141", "PINOTAGE_GITHUB_TOKEN": "ghp_secret2718",
          "PINOTAGE_JENKINS_TOKEN": "11" + "ab" * 16}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is: nothing listens there


def pinotage(*args: str, cwd, env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


@pytest.fixture
def unreachable(tmp_path):
    """A repository whose every service is a closed port on loopback, with every secret set."""
    port = closed_port()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": f"https://127.0.0.1:{port}", "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "kube-secret-1618"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}))
    (tmp_path / "pinotage.yaml").write_text(
        f"registry: {{url: '127.0.0.1:{port}', user: ci}}\n"
        f"deploy: {{target: kubernetes}}\n"
        f"jenkins: {{url: 'http://127.0.0.1:{port}', user: ci}}\n"
        f"github: {{repo: team/presentation, api_url: 'http://127.0.0.1:{port}'}}\n")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PINOTAGE_KUBECONFIG": str(kubeconfig),
           "NO_PROXY": "*", **TOKENS}
    return tmp_path, env


def test_every_service_unreachable_is_one_line_an_area_and_exit_1(unreachable):
    cwd, env = unreachable
    done = pinotage("doctor", cwd=cwd, env=env)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    areas = [line.split()[1].rstrip(":") for line in done.stdout.splitlines()
             if line.startswith(("ok", "FAIL", "skipped"))]
    for area in ("registry", "kubernetes", "jenkins", "github"):
        assert areas.count(area) == 1, done.stdout
    for value in (*TOKENS.values(), "kube-secret-1618"):
        assert value not in done.stdout + done.stderr


def test_json_lists_every_check_and_says_not_ok(unreachable):
    cwd, env = unreachable
    done = pinotage("doctor", "--json", "--only", "config", "--only", "github", cwd=cwd, env=env)
    report = json.loads(done.stdout)
    assert report["ok"] is False and done.returncode == 1
    assert {check["area"] for check in report["checks"]} == {"config", "github"}
    assert {"area", "check", "status", "detail", "hint"} == set(report["checks"][0])


def test_a_configuration_that_does_not_load_is_bad_input(tmp_path):
    (tmp_path / "pinotage.yaml").write_text("image:\n  context: /var/jenkins_home\n")
    done = pinotage("doctor", cwd=tmp_path, env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)})
    assert done.returncode == 2
    assert "FAIL     config: loads" in done.stdout and "image.context" in done.stdout
    assert done.stdout.count("needs a configuration that loads") == 4


def test_an_unknown_area_is_a_usage_error(tmp_path):
    done = pinotage("doctor", "--only", "nosuch", cwd=tmp_path, env={"PATH": os.environ["PATH"]})
    assert done.returncode == 2 and "invalid choice" in done.stderr


@pytest.mark.parametrize("findings, code", [
    pytest.param([], 0, id="nothing-checked"),
    pytest.param([Finding("a", "x", Status.OK, "")], 0, id="all-ok"),
    pytest.param([Finding("a", "x", Status.SKIPPED, "")], 0, id="skipped-is-not-failed"),
    pytest.param([Finding("a", "x", Status.OK, ""), Finding("b", "y", Status.FAIL, "")], 1, id="one-failed"),
])
def test_exit_code(findings, code):
    assert doctor.exit_code(findings) == code


def test_render_puts_the_hint_under_a_failure_only():
    lines = doctor.render([Finding("registry", "login", Status.FAIL, "refused", "check the password"),
                           Finding("registry", "scope", Status.OK, "push,pull", "never shown")])
    assert lines[1].strip() == "hint: check the password"
    assert not any("never shown" in line for line in lines)
    assert lines[-1] == "1 ok, 1 failed, 0 skipped"


def jwt(claims: object) -> str:
    def part(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")
    return f"{part({'alg': 'RS256'})}.{part(claims)}.signature"


@pytest.mark.parametrize("token, granted", [
    pytest.param(jwt({"access": [{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}]}),
                 {"pull", "push"}, id="push-and-pull"),
    pytest.param(jwt({"access": [{"type": "repository", "name": "team/app", "actions": ["pull"]}]}),
                 {"pull"}, id="pull-only"),
    pytest.param(jwt({"access": [{"type": "repository", "name": "team/other", "actions": ["push"]}]}),
                 set(), id="another-repository"),
    pytest.param(jwt({"access": []}), set(), id="nothing-granted"),
    pytest.param(jwt({"sub": "x"}), None, id="no-access-claim"),
    pytest.param("opaque-token", None, id="not-a-jwt"),
    pytest.param("a.!!!.c", None, id="not-base64"),
])
def test_granted_reads_the_tokens_access_claim(token, granted):
    assert registry_area._granted(token, "team/app") == granted
