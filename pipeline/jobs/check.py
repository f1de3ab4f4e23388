"""Check the rendered jobs and the Jenkinsfile: well-formed XML, credentials only where the
default branch alone runs, and every ``pinotage …`` call one the CLI takes.

Pure but for reading the Jenkinsfile: the jobs come in rendered, the CLI's parser as a value.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import re
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterable, Iterator

from pipeline import casc, files
from pipeline.jobs.render import RenderedJob


# Root tags of jobs that build branches or pull requests of the repository.
BRANCH_JOB_ROOTS = (
    "org.jenkinsci.plugins.workflow.multibranch.WorkflowMultiBranchProject",
    "jenkins.branch.OrganizationFolder",
)


# Elements that, anywhere in a job, make it build pull requests.
PR_MARKERS = ("PullRequestDiscoveryTrait", "org.jenkinsci.plugins.ghprb.GhprbTrigger")


# The one credential a branch and pull-request job may name: its GitHub source's scan credential
# (docker/jenkins/casc.yaml declares it). GitHub Branch Source scans with it and posts the branch
# and pull-request commit statuses; no build step can bind it through the job.
SCAN_CREDENTIAL_ID = "pinotage-github"


SCAN_SOURCE = "GitHubSCMSource"


# The one guard besides the default branch under which the Jenkinsfile may bind credentials: a pull
# request from a branch of this repository. GitHub Branch Source sets CHANGE_FORK for a pull
# request from a fork only, so a fork's build never enters such a stage.
SAME_REPO_PR = "same-repository pull request"
_SAME_REPO_PR_GUARD = re.compile(r"\bwhen\s*\{\s*allOf\s*\{\s*changeRequest\s*\(\s*\)\s*;?\s*expression\s*\{\s*"
                                 r"(?:return\s+)?!\s*env\.CHANGE_FORK\s*;?\s*\}\s*\}\s*\}")
# what a preview stage may bind: the registry login, the preview deployer (namespace previews only), GitHub
PREVIEW_CREDENTIALS = ("pinotage-registry", "pinotage-preview-kubeconfig", SCAN_CREDENTIAL_ID)
# Shell words that may stand before a command.
SHELL_KEYWORDS = {"if", "then", "else", "elif", "do", "while", "until", "!", "{", "(", "time", "exec"}


SHELL_OPERATORS = {";", "&&", "||", "|", "&", "(", ")", ";;", "\n"}


@dataclasses.dataclass(frozen=True)
class Call:
    """One ``pinotage …`` command line found in the Jenkinsfile or a job."""

    where: str  # "Jenkinsfile:42" or "job rebuild-cluster"
    argv: tuple[str, ...]  # the arguments after "pinotage"


def check(jobs: Iterable[RenderedJob], jenkinsfile: str | Path | None,
          parser: argparse.ArgumentParser, *, default_branch: str = "master") -> list[str]:
    """Return every problem: XML not well formed, credentials outside the default branch, unknown commands."""
    problems: list[str] = []
    calls: list[Call] = []
    for job in jobs:
        where = f"{job.source or 'jobs/'}: job {job.name!r}"
        try:
            root = ET.fromstring(job.xml)
        except ET.ParseError as e:
            problems.append(f"{where}: rendered XML is not well formed: {e}")
            continue
        found = credential_references(root, allowed=scan_credential(root)) if builds_branches(root) else []
        if found:
            problems.append(f"{where}: a branch and pull-request job must reference no credential but"
                            f" the scan credential {SCAN_CREDENTIAL_ID!r} of its GitHub source,"
                            f" found {', '.join(found)}")
        calls += calls_in_job(where, root)
    if jenkinsfile is not None:
        path = Path(jenkinsfile)
        if not path.is_file():
            problems.append(f"{path}: no such Jenkinsfile")
        else:
            text = files.read_text(path, what="Jenkinsfile")
            found, unreadable = calls_in_jenkinsfile(text, str(path))
            calls += found
            problems += unreadable
            problems += credential_scope(text, str(path), default_branch)
    problems += [problem for call in calls if (problem := check_call(call, parser))]
    return problems


def credentials_declared(jobs: Iterable[RenderedJob], jenkinsfile: Path, casc_path: Path) -> list[str]:
    """Cross-check the credential ids the jobs and the Jenkinsfile use with those JCasC declares."""
    uses = []
    for job in jobs:
        try:
            uses += casc.used_in_job(ET.fromstring(job.xml), f"{job.source or 'jobs/'}: job {job.name!r}")
        except ET.ParseError:
            continue  # check() reports it
    if jenkinsfile.is_file():
        uses += casc.used_in_jenkinsfile(jenkinsfile.read_text(), str(jenkinsfile))
    return casc.cross_check(casc_path, uses)


def builds_branches(root: ET.Element) -> bool:
    """Tell whether a job builds branches or pull requests of the repository."""
    if root.tag in BRANCH_JOB_ROOTS:
        return True
    return any(marker in element.tag for element in root.iter() for marker in PR_MARKERS)


def scan_credential(root: ET.Element) -> list[ET.Element]:
    """Return the elements naming the one allowed scan credential: the credentialsId of a GitHub source."""
    return [child for source in root.iter() if (source.get("class") or source.tag).endswith(SCAN_SOURCE)
            for child in source if child.tag == "credentialsId" and (child.text or "").strip() == SCAN_CREDENTIAL_ID]


def credential_references(root: ET.Element, *, allowed: Iterable[ET.Element] = ()) -> list[str]:
    """List the credential references in a job (credential ids and bindings), but for the ``allowed`` elements."""
    skip = {id(element) for element in allowed}
    found = []
    for element in root.iter():
        if id(element) in skip:
            continue
        tag = element.tag.lower()
        text = (element.text or "").strip()
        if ("credentialsid" in tag or tag.endswith("credentials")) and text:
            found.append(f"<{element.tag}>{text}</{element.tag}>")
        elif "secretbuildwrapper" in tag or "sshagent" in tag or "credentialsbinding" in tag:
            found.append(f"<{element.tag}>")
    return found


def calls_in_job(where: str, root: ET.Element) -> list[Call]:
    """Find the pinotage calls in a job's shell steps and pipeline script; ``where`` names the job."""
    calls = []
    for element in root.iter():
        if element.tag == "command" or element.tag == "script":
            text = element.text or ""
            if element.tag == "script":
                found, _ = calls_in_jenkinsfile(text, where)
                calls += found
            else:
                calls += [Call(where, argv) for argv in pinotage_calls(text)]
    return calls


def credential_scope(text: str, name: str, default_branch: str) -> list[str]:
    """Check a Jenkinsfile binds credentials only in stages run on the default branch alone, or for previews.

    A ``withCredentials`` must sit inside a stage guarded by
    ``when { branch '<default branch>' }`` (itself or an enclosing stage), or by
    ``when { allOf { changeRequest(); expression { return !env.CHANGE_FORK } } }``
    and then bind only PREVIEW_CREDENTIALS; the ``sh`` steps inside it must be
    single-quoted so that Groovy never interpolates a secret into a command line.
    """
    uncommented = _without_groovy_comments(text)
    code = _blank_strings(uncommented)
    stages = []  # (start, end) of each stage's block
    for match in re.finditer(r"\bstage\s*\(", code):
        brace = code.find("{", match.end())
        if brace >= 0:
            stages.append((match.start(), _matching_brace(code, brace)))
    guards: dict[tuple[int, int], str] = {}
    problems = []
    for match in re.finditer(r"\bwhen\s*\{\s*branch\s*\(?\s*(['\"])(.*?)\1\s*\)?\s*\}", uncommented):
        if not _is_code(code, match):
            continue  # inside a string: guards nothing
        enclosing = _innermost(stages, match.start())
        if enclosing is not None:
            guards[enclosing] = match.group(2)
        if match.group(2) != default_branch:
            problems.append(f"{name}:{_line_of(text, match.start())}: when {{ branch '{match.group(2)}' }}"
                            f" but the default branch is {default_branch!r}")
    for match in _SAME_REPO_PR_GUARD.finditer(uncommented):
        enclosing = _innermost(stages, match.start())
        if _is_code(code, match) and enclosing is not None:
            guards[enclosing] = SAME_REPO_PR
    # A post block takes no `when`: there the guard is an `if` on the branch, its block the guarded part.
    for match in _BRANCH_IF.finditer(uncommented):
        if not _is_code(code, match):
            continue
        brace = code.find("{", match.end() - 1)
        guards[(match.start(), _matching_brace(code, brace))] = match.group(2)
        if match.group(2) != default_branch:
            problems.append(f"{name}:{_line_of(text, match.start())}: if (env.BRANCH_NAME == '{match.group(2)}')"
                            f" but the default branch is {default_branch!r}")
    for match in re.finditer(r"\bwithCredentials\s*\(", code):
        where = f"{name}:{_line_of(text, match.start())}"
        around = [block for block in guards if block[0] < match.start() < block[1]]
        around += [stage for stage in stages if stage[0] < match.start() < stage[1]]
        brace = code.find("{", match.end())
        block = uncommented[brace:_matching_brace(code, brace)] if brace >= 0 else ""
        problems += _guard_problems(where, [guards.get(stage) for stage in around], default_branch,
                                    re.findall(r"""credentialsId\s*:\s*['"]([^'"]+)['"]""", uncommented[match.end():brace]))
        if any(step.group("q") in ('"', '"""') for step in _SH_STEP.finditer(block)):
            problems.append(f"{where}: a double-quoted sh inside withCredentials lets Groovy"
                            " interpolate secrets; use a single-quoted sh")
    return problems


def _guard_problems(where: str, guards: list, default_branch: str, bound: list[str]) -> list[str]:
    """Say what is wrong with a withCredentials under these guards that binds these credential ids."""
    if default_branch in guards:
        return []
    if SAME_REPO_PR in guards:
        return [f"{where}: {cid!r} bound in a same-repository pull request's stage; there only"
                f" {', '.join(PREVIEW_CREDENTIALS)} may be" for cid in bound if cid not in PREVIEW_CREDENTIALS]
    return [f"{where}: withCredentials outside a stage that runs only on {default_branch!r}"
            f" (add when {{ branch '{default_branch}' }})"]


_BRANCH_IF = re.compile(r"\bif\s*\(\s*env\.BRANCH_NAME\s*==\s*(['\"])(.*?)\1\s*\)\s*\{")


_SH_STEP = re.compile(
    r"""\bsh\s*\(?\s*(?:(?:label|returnStdout|returnStatus|encoding)\s*:\s*[^,]+,\s*)*(?:script\s*:\s*)?"""
    r"""(?P<q>'''|\"\"\"|'|")(?P<body>.*?)(?<!\\)(?P=q)""",
    re.DOTALL,
)


def calls_in_jenkinsfile(text: str, name: str) -> tuple[list[Call], list[str]]:
    """Find the pinotage calls in the ``sh`` steps of a pipeline script, with their line numbers."""
    calls: list[Call] = []
    problems: list[str] = []
    for match in _SH_STEP.finditer(_without_groovy_comments(text)):
        first_line = text.count("\n", 0, match.start("body")) + 1
        body = match.group("body")
        for offset, line in _logical_lines(body):
            where = f"{name}:{first_line + offset}"
            try:
                calls += [Call(where, argv) for argv in pinotage_calls(line)]
            except ValueError as e:
                problems.append(f"{where}: cannot read this shell line: {e}")
    return calls, problems


def pinotage_calls(shell_text: str) -> list[tuple[str, ...]]:
    """Split shell text into commands; return the arguments of each ``pinotage`` one."""
    calls = []
    for _, line in _logical_lines(shell_text):
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words: list[str] | None = None
        at_start = True
        for token in lexer:
            if token in SHELL_OPERATORS or set(token) <= set(";&|()"):
                if words is not None:
                    calls.append(tuple(words))
                words, at_start = None, True
            elif words is not None:
                words.append(token)
            elif at_start and token in SHELL_KEYWORDS:
                continue
            elif at_start and token == "pinotage":
                words, at_start = [], False
            else:
                at_start = False
        if words is not None:
            calls.append(tuple(words))
    return calls


def check_call(call: Call, parser: argparse.ArgumentParser) -> str:
    """Return why the CLI would refuse this call, or "" when it takes it."""
    if any(arg in ("-h", "--help", "--version") for arg in call.argv):
        return ""
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            args = parser.parse_args(list(call.argv))
    except SystemExit:
        reason = next((line.split("error: ", 1)[1] for line in errors.getvalue().splitlines()
                       if "error: " in line), "refused")
        return f"{call.where}: 'pinotage {' '.join(call.argv)}': {reason}"
    if not getattr(args, "handler", None):
        return f"{call.where}: 'pinotage {' '.join(call.argv)}': names no command"
    from pipeline import config

    known = config.keys()
    unknown = [item.partition("=")[0] for item in getattr(args, "overrides", [])
               if item.partition("=")[0] not in known]
    if unknown:
        return f"{call.where}: 'pinotage {' '.join(call.argv)}': --set names no setting {unknown[0]!r}"
    return ""


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Yield (line offset, line) with backslash continuations joined."""
    pending, start = "", 0
    for number, line in enumerate(text.split("\n")):
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield start, pending + line
        pending = ""
    if pending:
        yield start, pending


def _blank_strings(text: str) -> str:
    """Blank out the insides of Groovy string literals, keeping offsets, so braces can be counted."""
    def blank(match: re.Match) -> str:
        quote = match.group("q")
        inner = match.group(0)[len(quote):-len(quote)]
        return quote + re.sub(r"[^\n]", " ", inner) + quote

    return re.sub(r"""(?P<q>'''|\"\"\"|'|")(?:\\.|(?!(?P=q)).)*?(?P=q)""", blank, text, flags=re.DOTALL)


def _matching_brace(code: str, open_at: int) -> int:
    depth = 0
    for index in range(open_at, len(code)):
        if code[index] == "{":
            depth += 1
        elif code[index] == "}":
            depth -= 1
            if depth == 0:
                return index
    return len(code)


def _innermost(blocks: list[tuple[int, int]], offset: int) -> tuple[int, int] | None:
    inside = [block for block in blocks if block[0] < offset < block[1]]
    return max(inside, default=None)


def _is_code(code: str, match: re.Match) -> bool:
    """Tell whether a match found in the uncommented text is code (its first word survives string blanking)."""
    return code[match.start():match.start() + 2] == match.group(0)[:2]


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _without_groovy_comments(text: str) -> str:
    """Blank out // and /* */ comments, keeping offsets (so line numbers stay right)."""
    def blank(match: re.Match) -> str:
        return re.sub(r"[^\n]", " ", match.group(0))

    return re.sub(r"/\*.*?\*/|(?<![:'\"])//[^\n]*", blank, text, flags=re.DOTALL)
