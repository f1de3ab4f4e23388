"""The build context and the plan: from Jenkins' environment, from a real git checkout."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipeline import context as ctx
from pipeline import git as gitfacts
from pipeline.errors import BadInput

COMMIT = "0123456789abcdef0123456789abcdef01234567"
JENKINS = {"BUILD_NUMBER": "7", "BUILD_URL": "https://ci.example/job/p/7/", "JOB_NAME": "presentation/master",
           "GIT_COMMIT": COMMIT, "JENKINS_URL": "https://ci.example/"}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid",
                           "-c", "init.defaultBranch=master", "-c", "advice.detachedHead=false", *args],
                          cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def commit(repo: Path, name: str) -> str:
    (repo / name).write_text(name)
    git(repo, "add", name)
    git(repo, "commit", "-q", "-m", name)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path) -> Path:
    git(tmp_path, "init", "-q")
    commit(tmp_path, "a")
    return tmp_path


@pytest.mark.parametrize("env, event, branch, change_id", [
    ({"BRANCH_NAME": "master"}, "default-branch", "master", ""),
    ({"BRANCH_NAME": "feature/slides"}, "branch", "feature/slides", ""),
    ({"BRANCH_NAME": "PR-12", "CHANGE_ID": "12", "CHANGE_TARGET": "master", "CHANGE_BRANCH": "fix-typo"},
     "pull-request", "fix-typo", "12"),
    ({"BRANCH_NAME": "PR-13", "CHANGE_ID": "13", "CHANGE_TARGET": "master", "CHANGE_FORK": "mallory"},
     "pull-request", "PR-13", "13"),
    # A PR whose source branch is called master is still a pull request, never a release.
    ({"BRANCH_NAME": "PR-14", "CHANGE_ID": "14", "CHANGE_BRANCH": "master", "CHANGE_FORK": "mallory"},
     "pull-request", "master", "14"),
    ({"BRANCH_NAME": "v1.2.0", "TAG_NAME": "v1.2.0"}, "tag", "v1.2.0", ""),
], ids=["default-branch", "other-branch", "pull-request", "pull-request-from-fork",
        "fork-pr-named-master", "tag"])
def test_jenkins_environment_gives_the_event(env, event, branch, change_id):
    context = ctx.read({**JENKINS, **env}, default_branch="master")
    assert (context.event, context.branch, context.change_id) == (event, branch, change_id)
    assert context.commit == COMMIT
    assert context.build_url == JENKINS["BUILD_URL"] and context.build_number == "7"
    assert context.dirty is False


def test_jenkins_pull_request_keeps_target_and_fork():
    env = {**JENKINS, "BRANCH_NAME": "PR-13", "CHANGE_ID": "13", "CHANGE_TARGET": "master", "CHANGE_FORK": "mallory"}
    context = ctx.read(env, default_branch="master")
    assert (context.change_target, context.change_fork) == ("master", "mallory")


@pytest.mark.parametrize("env, message", [
    ({"GIT_COMMIT": "abc123"}, "env GIT_COMMIT: expected a full 40-hex commit hash, got 'abc123'"),
    ({"CHANGE_ID": "12; rm -rf /"}, "env CHANGE_ID: expected a pull request number, got '12; rm -rf /'"),
], ids=["short-commit", "change-id-not-a-number"])
def test_jenkins_bad_values_name_the_variable(env, message):
    with pytest.raises(BadInput) as caught:
        ctx.read({**JENKINS, "BRANCH_NAME": "master", **env}, default_branch="master")
    assert caught.value.message == message


def test_jenkins_clone_url_loses_its_token():
    env = {**JENKINS, "BRANCH_NAME": "master", "GIT_URL": "https://bot:ghp_secret@github.com/acme/slides.git"}
    assert ctx.read(env, default_branch="master").source_url == "https://github.com/acme/slides.git"


def test_jenkins_without_git_commit_reads_the_checkout(repo):
    env = {k: v for k, v in JENKINS.items() if k != "GIT_COMMIT"}
    context = ctx.read({**env, "BRANCH_NAME": "master"}, default_branch="master", cwd=str(repo))
    assert context.commit == git(repo, "rev-parse", "HEAD")


@pytest.mark.parametrize("setup, event, branch, dirty", [
    (lambda r: None, "default-branch", "master", False),
    (lambda r: git(r, "checkout", "-q", "-b", "slides"), "branch", "slides", False),
    (lambda r: (git(r, "tag", "v1"), git(r, "checkout", "-q", "--detach")), "tag", "v1", False),
    (lambda r: git(r, "checkout", "-q", "--detach"), "branch", "", False),
    (lambda r: (r / "new.md").write_text("x"), "default-branch", "master", True),
    (lambda r: (r / "a").write_text("changed"), "default-branch", "master", True),
], ids=["default-branch", "other-branch", "detached-at-tag", "detached", "untracked-file", "modified-file"])
def test_git_checkout_gives_the_event(repo, setup, event, branch, dirty):
    setup(repo)
    context = ctx.read({"PATH": "/usr/bin:/bin"}, default_branch="master", cwd=str(repo))
    assert (context.event, context.branch, context.dirty) == (event, branch, dirty)
    assert context.commit == git(repo, "rev-parse", "HEAD")


def test_git_origin_url_loses_its_token(repo):
    git(repo, "remote", "add", "origin", "https://x-access-token:ghs_secret@github.com/acme/slides.git")
    assert ctx.from_git(str(repo), default_branch="master").source_url == "https://github.com/acme/slides.git"


def test_outside_a_checkout_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="not inside a git checkout"):
        ctx.read({}, default_branch="master", cwd=str(tmp_path))


@pytest.mark.parametrize("event, steps, reads_credentials", [
    ("default-branch", ("build", "smoke", "push", "deploy", "gate", "ledger", "status"), True),
    ("tag", ("build", "smoke", "push", "status"), True),
    ("pull-request", ("build", "smoke"), False),
    ("branch", ("build", "smoke"), False),
], ids=["default-branch", "tag", "pull-request", "branch"])
def test_plan_for_each_event(event, steps, reads_credentials):
    plan = ctx.plan_for(ctx.BuildContext(commit=COMMIT, branch="x", event=event, change_id="3"), "master")
    assert plan.steps == steps
    assert plan.reads_credentials is reads_credentials
    assert ("push" in plan) is ("push" in steps)


def test_state_round_trip_and_refusal():
    context = ctx.BuildContext(commit=COMMIT, branch="master", event="default-branch", build_url="u")
    assert ctx.from_json(ctx.to_json(context)) == context
    with pytest.raises(BadInput, match="not a build context"):
        ctx.from_json({**ctx.to_json(context), "event": "deploy-everything"})
    with pytest.raises(BadInput, match="not a build context"):
        ctx.from_json({**ctx.to_json(context), "password": "x"})


def test_for_stage_prefers_the_state_file(repo):
    written = ctx.BuildContext(commit=COMMIT, branch="master", event="default-branch")
    assert ctx.for_stage(written, {}, default_branch="master", cwd=str(repo)) == written
    assert ctx.for_stage(None, {}, default_branch="master", cwd=str(repo)).commit == git(repo, "rev-parse", "HEAD")


@pytest.mark.parametrize("older, newer, expected", [
    ("first", "third", True),
    ("third", "first", False),
    ("third", "third", False),
    ("side", "third", False),
    ("unknown", "third", False),
], ids=["ancestor", "descendant", "same-commit", "diverged", "unknown-commit"])
def test_strict_ancestry(repo, older, newer, expected):
    commits = {"first": git(repo, "rev-parse", "HEAD")}
    git(repo, "checkout", "-q", "-b", "side")
    commits["side"] = commit(repo, "s")
    git(repo, "checkout", "-q", "master")
    commit(repo, "b")
    commits["third"] = commit(repo, "c")
    commits["unknown"] = "f" * 40
    assert gitfacts.is_strict_ancestor(gitfacts.open_repo(str(repo)), commits[older], commits[newer]) is expected
