"""The run issue's commands at the CLI: context, run --dry-run, deploy/gate input checks, history, status.

None of these needs a Docker engine: DOCKER_HOST points nowhere, so any attempt to reach one fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from pipeline import cli, ledger
from pipeline.config import SECRETS
from tests.fakes.github import FakeGithub
from tests.unit.test_context import commit, git

NO_ENGINE = "unix:///nonexistent/docker.sock"
TOKEN = "ghp_unit_test_token"


class SecretTrap(Mapping):
    """An environment that raises when a secret is read."""

    def __init__(self, values: dict[str, str]):
        self.values = values

    def __getitem__(self, key):
        if key in SECRETS.values():
            raise AssertionError(f"{key} was read")
        return self.values[key]

    def __iter__(self):
        return iter(self.values)

    def __len__(self):
        return len(self.values)


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    commit(repo, "README")
    monkeypatch.chdir(repo)
    return repo


def env(repo: Path, **extra: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": str(repo.parent), "DOCKER_HOST": NO_ENGINE,
            "PINOTAGE_STATE_DIR": str(repo.parent / "state"), **extra}


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if ".git" not in p.parts}


@pytest.mark.parametrize("branch, event, steps", [
    ("master", "default-branch", "build → smoke → push → deploy → gate → ledger → status"),
    ("topic", "branch", "build → smoke"),
], ids=["default-branch", "other-branch"])
def test_dry_run_prints_the_plan_and_touches_nothing(repo, capsys, branch, event, steps):
    if branch != "master":
        git(repo, "checkout", "-q", "-b", branch)
    before = files(repo.parent)
    environ = SecretTrap(env(repo, PINOTAGE_REGISTRY_PASSWORD="x", PINOTAGE_GITHUB_TOKEN="y"))
    assert cli.main(["run", "--dry-run"], environ=environ) == 0
    out = capsys.readouterr().out
    rows = dict(line.split(None, 1) for line in out.splitlines() if line.strip())
    assert rows["event"] == event and rows["plan"] == steps
    assert out.splitlines()[-1].endswith("nothing was built, pushed or deployed")
    assert files(repo.parent) == before


def test_context_prints_json_and_writes_the_state(repo, capsys):
    state = repo.parent / "s.json"
    assert cli.main(["context", "--json", "--state", str(state)], environ=env(repo)) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["context"]["event"] == "default-branch"
    assert printed["plan"]["reads_credentials"] is True
    assert json.loads(state.read_text())["context"] == printed["context"]


EARLIER_BUILD = {"version": 1, "context": {"commit": "e" * 40, "branch": "master"},
                 "image": {"name": "r/app", "tag": "e" * 40, "digest": "sha256:" + "e" * 64, "built": False},
                 "deployment": {"target": "docker", "revision": "7"}}


@pytest.mark.parametrize("stale", [json.dumps(EARLIER_BUILD), "{not json", json.dumps({"version": 99})],
                         ids=["earlier-build-with-image-and-deployment", "corrupt-file", "other-version"])
def test_context_replaces_a_state_file_left_in_a_reused_workspace(repo, capsys, stale):
    state = repo.parent / "s.json"
    state.write_text(stale)
    assert cli.main(["context", "--json", "--state", str(state)], environ=env(repo)) == 0
    printed = json.loads(capsys.readouterr().out)
    assert json.loads(state.read_text()) == {"version": 1, "context": printed["context"],
                                             "stage": {"name": "context", "result": "passed", "build_url": ""}}


def test_context_in_a_jenkins_pull_request(repo, capsys):
    head = git(repo, "rev-parse", "HEAD")
    jenkins = env(repo, BRANCH_NAME="PR-9", CHANGE_ID="9", CHANGE_TARGET="master", CHANGE_FORK="mallory",
                  GIT_COMMIT=head, BUILD_NUMBER="3", BUILD_URL="https://ci/3/")
    assert cli.main(["context", "--state", str(repo.parent / "s.json")], environ=SecretTrap(jenkins)) == 0
    out = capsys.readouterr().out
    assert "pull request  #9 into master from fork mallory" in out
    assert "credentials   none are read" in out


@pytest.mark.parametrize("command, state, branch, code, message", [
    ("deploy", None, "topic", 1, "this branch build does not deploy"),
    ("deploy", {"version": 1}, "master", 2, "no pushed image (with a digest) in the state file"),
    ("gate", {"version": 1, "image": {"name": "r/x", "tag": "t", "digest": ""}}, "master", 2, "no pushed image"),
    ("deploy", {"version": 1, "image": {"name": "r/x", "tag": "t", "digest": "sha256:" + "0" * 64,
                                         "commit": "f" * 40}}, "master", 2, "the image is of commit ffffffffffff"),
    ("deploy", "not json", "master", 2, "not a Pinotage state file"),
    ("smoke", {"version": 1, "image": {"name": "r/x", "tag": "t", "size": 3}}, "master", 2,
     "s.json: image: not an image: unknown key 'size'"),
    ("push", {"version": 1, "image": {"name": "r/x"}}, "master", 2, "s.json: image: not an image: missing key 'tag'"),
    ("deploy", {"version": 1, "images": {}}, "master", 2, "s.json: not a Pinotage state file: unknown key 'images'"),
    ("smoke", {"version": 1, "image": {"name": "r/x", "tag": 7}}, "master", 2, "s.json: image: not an image: tag is a number, expected a string"),
], ids=["branch-does-not-deploy", "nothing-pushed", "gate-without-digest", "state-of-another-build", "broken-state",
        "smoke-unknown-image-key", "push-missing-image-key", "unknown-top-level-key", "a-tag-that-is-no-string"])
def test_stages_check_their_input_before_touching_anything(repo, capsys, command, state, branch, code,
                                                                    message):
    if branch != "master":
        git(repo, "checkout", "-q", "-b", branch)
    path = repo.parent / "s.json"
    if state is not None:
        path.write_text(state if isinstance(state, str) else json.dumps(state))
    assert cli.main([command, "--state", str(path)], environ=env(repo)) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_history_reads_the_ledger_without_an_engine(repo, capsys):
    store = ledger.FileLedger(repo.parent / "state" / "ledger-presentation.jsonl")
    for n, outcome in enumerate(("deployed", "refused", "rolled-back"), 1):
        store.append(ledger.Record(id=f"i{n}", app="presentation", commit=f"{n}" * 40, image=f"r/x@sha256:{n}",
                                   target="docker", build_url="", started_at=f"2024-01-0{n}T00:00:00+00:00",
                                   finished_at="", outcome=outcome, phases_s={"deploy": float(n)}))
    assert cli.main(["history", "--limit", "2"], environ=env(repo)) == 0
    out, err = capsys.readouterr()
    assert [line.split()[1] for line in out.splitlines()[1:]] == ["refused", "rolled-back"]
    assert "warning: live release not known (no Docker engine answers" in err  # the ledger still shows
    assert cli.main(["history", "--json"], environ=env(repo)) == 0
    assert [r["outcome"] for r in json.loads(capsys.readouterr().out)] == ["deployed", "refused", "rolled-back"]
    assert cli.main(["history", "--limit", "0"], environ=env(repo)) == 2
    assert "--limit: expected a number above 0, got 0" in capsys.readouterr().err


def test_history_when_empty(repo, capsys):
    assert cli.main(["history"], environ=env(repo)) == 0
    assert capsys.readouterr().out == "no deploys recorded yet\n"


def test_status_reports_to_github(repo, capsys):
    head = git(repo, "rev-parse", "HEAD")
    with FakeGithub(token=TOKEN, repos=("acme/slides",)) as hub:
        settings = env(repo, PINOTAGE_GITHUB_API_URL=hub.url, PINOTAGE_GITHUB_REPO="acme/slides")
        assert cli.main(["status", "success", "--description", "deployed"],
                        environ={**settings, "PINOTAGE_GITHUB_TOKEN": TOKEN}) == 0
        assert hub.states("acme/slides", head) == ["success"]
        assert cli.main(["status", "failure"], environ={**settings, "PINOTAGE_GITHUB_TOKEN": "wrong"}) == 1
        assert cli.main(["status", "failure"], environ=settings) == 2
    err = capsys.readouterr().err
    assert "401 Bad credentials" in err and "PINOTAGE_GITHUB_TOKEN is not set" in err
    assert "wrong" not in err


def test_run_help_lists_every_run_command():
    done = subprocess.run([sys.executable, "-m", "pipeline", "--help"], capture_output=True, text=True, check=True)
    for command in ("context", "run", "deploy", "gate", "rollback", "history", "status"):
        line = next(line for line in done.stdout.splitlines() if line.strip().startswith(command + " "))
        assert "not available yet" not in line


@pytest.mark.parametrize("token, repo_slug, required, expect", [
    (TOKEN, "acme/slides", True, "acme/slides"),
    (TOKEN, "acme/slides", False, "acme/slides"),
    ("", "acme/slides", False, ""),
    ("", "acme/slides", True, "PINOTAGE_GITHUB_TOKEN is not set"),
    (TOKEN, "", False, "github.repo: not set"),
], ids=["status-command-reports", "run-reports", "run-without-token-sends-nothing",
        "status-command-without-token-is-bad-input", "no-repository-is-bad-input-for-both"])
def test_one_status_reporter_serves_the_status_command_and_the_runner(repo, token, repo_slug, required, expect):
    from pipeline import config as config_module
    from pipeline import context as ctx
    from pipeline import services
    from pipeline.errors import BadInput

    head = git(repo, "rev-parse", "HEAD")
    with FakeGithub(token=TOKEN, repos=("acme/slides",)) as hub:
        settings = env(repo, PINOTAGE_GITHUB_API_URL=hub.url, PINOTAGE_GITHUB_REPO=repo_slug,
                       **({"PINOTAGE_GITHUB_TOKEN": token} if token else {}))
        config = config_module.load(environ=settings, config_path=None, overrides=[])
        context = ctx.read(settings, default_branch=config.default_branch)
        if "/" in expect:
            assert services.report_status(config, context, settings, "pending", "d", required=required) == expect
            assert hub.states("acme/slides", head) == ["pending"]
        elif expect:
            with pytest.raises(BadInput, match=expect):
                services.report_status(config, context, settings, "pending", "d", required=required)
        else:
            assert services.report_status(config, context, settings, "pending", "d", required=required) == ""
            assert hub.states("acme/slides", head) == []


FOUND_DIGEST = "sha256:" + "f" * 64


@pytest.mark.parametrize("command, found, code, message", [
    ("build", False, 1, "no Docker engine answers"),  # got past the point a credential was read before
    ("build", True, 0, "built:    no ("),
    ("smoke", True, 0, "smoke:    skipped ("),
    ("push", True, 0, "pushed:   no ("),
], ids=["master-build-builds-without-the-registry-login", "build-skips-what-lookup-found",
        "smoke-skips-what-lookup-found", "push-skips-what-lookup-found"])
def test_default_branch_stages_after_lookup_read_no_credential(repo, capsys, command, found, code, message):
    """In Jenkins only the Lookup and Push stages hold the registry login: Build never reads it."""
    head = git(repo, "rev-parse", "HEAD")
    state = repo.parent / "s.json"
    environ = SecretTrap(env(repo, PINOTAGE_REGISTRY_PASSWORD="never-read"))
    assert cli.main(["context", "--state", str(state)], environ=environ) == 0
    if found:
        data = json.loads(state.read_text())
        data["image"] = {"name": "127.0.0.1:5000/pinotage/presentation", "tag": head, "tags": [head],
                         "digest": FOUND_DIGEST, "commit": head, "built": False}
        state.write_text(json.dumps(data))
    capsys.readouterr()
    assert cli.main([command, "--state", str(state)], environ=environ) == code
    out, err = capsys.readouterr()
    assert message in (out + err)
    if found:
        assert json.loads(state.read_text())["image"]["digest"] == FOUND_DIGEST


def test_lookup_is_refused_on_a_branch(repo, capsys):
    git(repo, "checkout", "-q", "-b", "topic")
    state = repo.parent / "s.json"
    environ = SecretTrap(env(repo, PINOTAGE_REGISTRY_PASSWORD="never-read"))
    assert cli.main(["context", "--state", str(state)], environ=environ) == 0
    assert cli.main(["lookup", "--state", str(state)], environ=environ) == 1
    assert "this branch build does not push" in capsys.readouterr().err


# --- the Jenkinsfile's commit statuses and `github hook` ------------------------------

JENKINSFILE = Path(__file__).resolve().parents[2] / "Jenkinsfile"


def jenkinsfile_status_calls() -> dict[str, list[str]]:
    """Return the Jenkinsfile's `pinotage status` calls by state, as the jobs check reads them."""
    from pipeline import jobs

    calls, problems = jobs.calls_in_jenkinsfile(JENKINSFILE.read_text(), "Jenkinsfile")
    assert problems == []
    found = {}
    for call in calls:
        if call.argv[:1] == ("status",):
            kind = "final" if "--build-result" in call.argv else call.argv[1]
            assert kind not in found, f"two {kind} status calls"
            found[kind] = list(call.argv)
    return found


def test_every_stage_command_records_its_stage_for_the_failure_status():
    """A stage whose command takes no --state would leave the failure status naming the stage before it."""
    from pipeline import jobs

    calls, _ = jobs.calls_in_jenkinsfile(JENKINSFILE.read_text(), "Jenkinsfile")
    stage_calls = [call.argv for call in calls if call.argv[0] not in ("status", "history")]
    assert len(stage_calls) >= 8
    assert [argv for argv in stage_calls if argv[-2:] != ("--state", "pinotage-state.json")] == []


def bound_variables() -> set[str]:
    """Return every variable the Jenkinsfile's withCredentials bind (a build's environment holds them)."""
    import re

    return set(re.findall(r"\b(?:usernameVariable|passwordVariable|variable)\s*:\s*'(\w+)'", JENKINSFILE.read_text()))


def master_build(repo: Path, hub, **extra: str) -> dict[str, str]:
    """A master build's environment, with every credential variable the Jenkinsfile binds (the token real)."""
    bound = {name: "bound-in-jenkins" for name in bound_variables() if name != "PINOTAGE_KUBECONFIG"}
    return {**env(repo, PINOTAGE_GITHUB_API_URL=hub.url, PINOTAGE_GITHUB_REPO="acme/slides", BRANCH_NAME="master",
                  BUILD_NUMBER="9", BUILD_URL="https://ci.example/job/presentation/job/master/9/"),
            **bound, "PINOTAGE_GITHUB_TOKEN": TOKEN, **extra}


def test_a_master_build_failing_in_build_ends_with_a_failure_naming_build(repo, capsys):
    """The Jenkinsfile's own calls: pending first, the Build stage fails (no engine), the top-level post reports."""
    calls = jenkinsfile_status_calls()
    head = git(repo, "rev-parse", "HEAD")
    with FakeGithub(token=TOKEN, repos=("acme/slides",)) as hub:
        settings = master_build(repo, hub)
        assert cli.main(calls["pending"], environ=settings) == 0
        assert cli.main(["context", "--state", "pinotage-state.json"], environ={**settings, "STAGE_NAME": "Context"}) == 0
        assert cli.main(["build", "--state", "pinotage-state.json"], environ={**settings, "STAGE_NAME": "Build"}) == 1
        assert cli.main(calls["final"], environ={**settings, "PINOTAGE_BUILD_RESULT": "FAILURE"}) == 0
        pending, failure = hub.statuses[("acme/slides", head)]
    assert (pending["state"], failure["state"]) == ("pending", "failure")
    assert failure["description"] == "failed in stage Build"
    assert failure["target_url"] == settings["BUILD_URL"]


def test_a_master_build_that_passes_ends_with_success_after_pending(repo):
    calls = jenkinsfile_status_calls()
    head = git(repo, "rev-parse", "HEAD")
    with FakeGithub(token=TOKEN, repos=("acme/slides",)) as hub:
        settings = master_build(repo, hub)
        for argv in (calls["pending"], ["context", "--state", "pinotage-state.json"], calls["final"]):
            assert cli.main(argv, environ={**settings, "STAGE_NAME": "Context", "PINOTAGE_BUILD_RESULT": "SUCCESS"}) == 0
        assert hub.states("acme/slides", head) == ["pending", "success"]
        assert hub.statuses[("acme/slides", head)][-1]["target_url"] == settings["BUILD_URL"]
        assert hub.statuses[("acme/slides", head)][-1]["description"] == cli.stages.SUCCESS_TEXT


@pytest.mark.parametrize("result, state", [("SUCCESS", "success"), ("FAILURE", "failure"), ("ABORTED", "failure")])
def test_a_status_that_cannot_be_sent_never_fails_the_build(repo, capsys, result, state):
    argv = jenkinsfile_status_calls()["final"]
    assert "--best-effort" in argv
    with FakeGithub(token=TOKEN, repos=("acme/slides",)) as hub:
        assert cli.main(argv, environ=master_build(repo, hub, PINOTAGE_GITHUB_TOKEN="revoked",
                                                   PINOTAGE_BUILD_RESULT=result)) == 0
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"pinotage: warning: status {state} not reported:") and "401 Bad credentials" in line


def test_a_stale_state_file_from_another_build_names_no_stage(repo):
    with FakeGithub(token=TOKEN, repos=("acme/slides",)) as hub:
        settings = master_build(repo, hub)
        assert cli.main(["context"], environ={**settings, "STAGE_NAME": "Context",
                                              "BUILD_URL": "https://ci.example/job/8/"}) == 0
        assert cli.main(jenkinsfile_status_calls()["final"], environ={**settings, "PINOTAGE_BUILD_RESULT": "FAILURE"}) == 0
        [failure] = hub.statuses.values()
    assert failure[0]["description"] == "failed before its first pinotage stage"


HOOK_URL = "https://jenkins.example.com/github-webhook/"


def hook_env(repo: Path, hub, **extra: str) -> dict[str, str]:
    return {**env(repo, PINOTAGE_GITHUB_API_URL=hub.url, PINOTAGE_GITHUB_REPO="acme/slides",
                  PINOTAGE_JENKINS_URL="https://jenkins.example.com/", PINOTAGE_GITHUB_TOKEN=TOKEN,
                  PINOTAGE_GITHUB_WEBHOOK_SECRET="s3cret-hook"), **extra}


def test_github_hook_creates_then_writes_nothing(repo, capsys):
    with FakeGithub(token=TOKEN, repos=("acme/slides",)) as hub:
        assert cli.main(["github", "hook", "--dry-run"], environ=hook_env(repo, hub)) == 0
        assert hub.writes() == []
        assert cli.main(["github", "hook"], environ=hook_env(repo, hub)) == 0
        assert cli.main(["github", "hook"], environ=hook_env(repo, hub)) == 0
        assert [(r.method, r.status) for r in hub.writes()] == [("POST", 201)]
        assert hub.hooks["acme/slides"][0]["config"]["url"] == HOOK_URL
    out = capsys.readouterr().out.splitlines()
    assert out == [f"webhook {HOOK_URL}: create (events pull_request, push, content type json, secret set)"
                   " (dry run: nothing written)",
                   f"webhook {HOOK_URL}: create (events pull_request, push, content type json, secret set)",
                   f"webhook {HOOK_URL}: up to date (hook 1)"]


@pytest.mark.parametrize("scopes, token, code, message", [
    (("repo:status",), TOKEN, 2, "github hook: the token grants repo:status, not admin:repo_hook"),
    (("repo",), "ghp_stale_token_value", 1, "GitHub refused the token (401 Bad credentials)"),
], ids=["lacks-admin-repo-hook", "refused"])
def test_github_hook_token_problems_are_one_line(repo, capsys, scopes, token, code, message):
    with FakeGithub(token=TOKEN, repos=("acme/slides",), scopes=scopes) as hub:
        assert cli.main(["github", "hook"], environ=hook_env(repo, hub, PINOTAGE_GITHUB_TOKEN=token)) == code
        assert hub.writes() == []
    [line] = capsys.readouterr().err.splitlines()
    assert message in line and token not in line and "s3cret-hook" not in line


@pytest.mark.parametrize("argv", [["status"], ["status", "success", "--build-result"]], ids=["neither", "both"])
def test_status_takes_either_a_state_or_the_build_result(repo, capsys, argv):
    assert cli.main(argv, environ=env(repo, PINOTAGE_GITHUB_TOKEN=TOKEN)) == 2
    assert capsys.readouterr().err.strip() == "pinotage: error: status: give either STATE or --build-result"
