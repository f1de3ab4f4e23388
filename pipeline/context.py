"""The build context: what happened (which event, which commit) and so what to do (the plan).

Inside Jenkins (a multibranch job sets ``BRANCH_NAME``) the context comes from the environment
Jenkins gives each build; anywhere else it comes from the git checkout. The plan follows from
the event alone:

- pull request, other branch: build and smoke test. No push, no deploy, no credential read,
  because a pull request from a fork can run any code in its Dockerfile and its tests;
- tag: build, smoke test, push (a tag names a release; it is not deployed by itself);
- default branch: build, smoke test, push, deploy, gate, ledger, commit status.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping

from pipeline import git as gitfacts
from pipeline.errors import BadInput

EVENTS = ("default-branch", "pull-request", "branch", "tag")


@dataclasses.dataclass(frozen=True)
class BuildContext:
    commit: str  # the full commit hash
    branch: str = ""  # the branch pushed, or the PR's source branch
    event: str = "branch"  # one of EVENTS
    dirty: bool = False  # the work tree has uncommitted changes (never in Jenkins)
    change_id: str = ""  # the pull request number
    change_target: str = ""  # the branch a pull request targets
    change_fork: str = ""  # the fork a pull request comes from, if any
    build_number: str = ""
    build_url: str = ""
    job_name: str = ""
    source_url: str = ""  # the repository URL, for the image's OCI source label

    @property
    def short_commit(self) -> str:
        return self.commit[:12]

    @property
    def same_repo_pr(self) -> bool:
        """Say whether this is a pull request from a branch of the repository itself (no fork named)."""
        return self.event == "pull-request" and bool(self.change_id) and not self.change_fork


STEPS = ("build", "smoke", "push", "deploy", "gate", "ledger", "status")
UNTRUSTED_STEPS = ("build", "smoke")
# a same-repository pull request, when previews are on: its author can push to the repository already
PREVIEW_STEPS = ("build", "smoke", "push", "preview", "status")
LOCAL_PREVIEW_STEPS = ("build", "smoke", "serve")  # pinotage run --preview, on a laptop
_PLANS = {
    "default-branch": STEPS,
    "tag": ("build", "smoke", "push", "status"),
    "pull-request": UNTRUSTED_STEPS,
    "branch": UNTRUSTED_STEPS,
}
_CHANGE_ID_RE = re.compile(r"^[0-9]+$")


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a run does for one event; steps are in the order the runner takes them."""

    event: str
    steps: tuple[str, ...]
    reason: str

    def __contains__(self, step: str) -> bool:
        return step in self.steps

    @property
    def reads_credentials(self) -> bool:
        """Say whether any step needs a secret (registry password, GitHub token)."""
        return any(step in self.steps for step in ("push", "deploy", "preview", "status"))


def plan_for(context: BuildContext, default_branch: str, *, previews: bool = False) -> Plan:
    """Decide what to do for the context's event; ``previews`` (preview.enabled) gives same-repo PRs a preview.

    A pull request from a fork (Jenkins sets CHANGE_FORK) never gets one: it reads no credential.
    """
    if previews and context.same_repo_pr:
        return Plan(event=context.event, steps=PREVIEW_STEPS,
                    reason=f"pull request #{context.change_id} comes from a branch of this repository: built,"
                           f" tested, pushed as pr-{context.change_id} and previewed")
    steps = _PLANS[context.event]
    reason = {
        "default-branch": f"a push to the default branch {default_branch!r} is released",
        "tag": f"tag {context.branch!r} names a release: its image is pushed, not deployed",
        "pull-request": f"pull request #{context.change_id} is built and tested only, without any credential"
                        + (f" (it comes from the fork {context.change_fork})" if context.change_fork else ""),
        "branch": f"branch {context.branch!r} is not the default branch {default_branch!r}: built and tested only,"
                  " without any credential",
    }[context.event]
    return Plan(event=context.event, steps=steps, reason=reason)


def local_preview_plan(context: BuildContext) -> Plan:
    """Plan ``pinotage run --preview``: build, smoke test, serve beside the local app; no push, no credential."""
    return Plan(event=context.event, steps=LOCAL_PREVIEW_STEPS,
                reason=f"--preview: {context.branch or context.short_commit} is built, smoke-tested and served on"
                       " preview.local_port beside the app; nothing is pushed and no credential is read")


def in_jenkins(environ: Mapping[str, str]) -> bool:
    """Say whether this is a Jenkins (multibranch) build."""
    return bool(environ.get("BRANCH_NAME")) and bool(environ.get("BUILD_NUMBER") or environ.get("JENKINS_URL"))


def read(environ: Mapping[str, str], *, default_branch: str, cwd: str = ".") -> BuildContext:
    """Read the context: from Jenkins' environment inside Jenkins, from the git checkout elsewhere."""
    if in_jenkins(environ):
        return from_jenkins(environ, default_branch=default_branch, cwd=cwd)
    return from_git(cwd, default_branch=default_branch)


def from_jenkins(environ: Mapping[str, str], *, default_branch: str, cwd: str = ".") -> BuildContext:
    """Read the context from the variables a Jenkins multibranch build sets."""
    branch_name = environ["BRANCH_NAME"]
    change_id = environ.get("CHANGE_ID", "")
    tag_name = environ.get("TAG_NAME", "")
    if change_id and not _CHANGE_ID_RE.match(change_id):
        raise BadInput(f"env CHANGE_ID: expected a pull request number, got {change_id!r}")
    commit = environ.get("GIT_COMMIT", "")
    if commit:
        commit = commit.lower()
        if not _commit_ok(commit):
            raise BadInput(f"env GIT_COMMIT: expected a full 40-hex commit hash, got {commit!r}")
    else:
        # Pipelines that check out with a bare `checkout scm` do not export GIT_COMMIT.
        commit = gitfacts.head_commit(gitfacts.open_repo(cwd))
    if change_id:
        event, branch = "pull-request", environ.get("CHANGE_BRANCH") or branch_name
    elif tag_name:
        event, branch = "tag", tag_name
    elif branch_name == default_branch:
        event, branch = "default-branch", branch_name
    else:
        event, branch = "branch", branch_name
    return BuildContext(
        commit=commit, branch=branch, event=event, dirty=False,
        change_id=change_id, change_target=environ.get("CHANGE_TARGET", ""),
        change_fork=environ.get("CHANGE_FORK", ""),
        build_number=environ.get("BUILD_NUMBER", ""), build_url=environ.get("BUILD_URL", ""),
        job_name=environ.get("JOB_NAME", ""),
        source_url=gitfacts.strip_userinfo(environ.get("GIT_URL", "")),
    )


def from_git(cwd: str, *, default_branch: str) -> BuildContext:
    """Read the context from the git checkout that holds cwd (a laptop, or a plain CI job)."""
    repo = gitfacts.open_repo(cwd)
    commit = gitfacts.head_commit(repo)
    branch = gitfacts.current_branch(repo)
    tag = "" if branch else gitfacts.tag_at_head(repo)
    if tag:
        event, branch = "tag", tag
    elif branch == default_branch:
        event = "default-branch"
    else:
        event = "branch"
    return BuildContext(commit=commit, branch=branch, event=event, dirty=gitfacts.is_dirty(repo),
                        source_url=gitfacts.origin_url(repo))


def to_json(context: BuildContext) -> dict[str, Any]:
    return dataclasses.asdict(context)


def from_json(data: Mapping[str, Any]) -> BuildContext:
    """Rebuild a context written to the state file, checking what later stages rely on."""
    known = {field.name for field in dataclasses.fields(BuildContext)}
    unknown = sorted(set(data) - known)
    if unknown or not _commit_ok(str(data.get("commit", ""))) or data.get("event") not in EVENTS:
        raise BadInput(f"state file: 'context' is not a build context ({unknown or data.get('commit')!r})",
                       hint="run 'pinotage context' again to write it")
    return BuildContext(**data)


def describe(context: BuildContext, plan: Plan) -> list[tuple[str, str]]:
    """List (label, value) lines for people: the context, then the plan."""
    rows = [("commit", context.commit + (" (dirty work tree)" if context.dirty else "")),
            ("event", context.event), ("branch", context.branch or "(detached)")]
    if context.change_id:
        rows.append(("pull request", f"#{context.change_id} into {context.change_target or '?'}"
                     + (f" from fork {context.change_fork}" if context.change_fork else "")))
    for label, value in (("build", context.build_url or context.build_number), ("job", context.job_name),
                         ("source", context.source_url)):
        if value:
            rows.append((label, value))
    rows.append(("plan", " → ".join(plan.steps)))
    rows.append(("why", plan.reason))
    rows.append(("credentials", "read when a step needs them" if plan.reads_credentials else "none are read"))
    return rows


def _commit_ok(commit: str) -> bool:
    return bool(gitfacts.COMMIT_RE.match(commit))


def for_stage(saved: BuildContext | None, environ: Mapping[str, str], *, default_branch: str,
              cwd: str = ".") -> BuildContext:
    """Return the context the Context stage wrote to the state file (``saved``), else read it afresh."""
    if saved is not None:
        return saved
    return read(environ, default_branch=default_branch, cwd=cwd)
