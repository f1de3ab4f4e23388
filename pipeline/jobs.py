"""The Jenkins jobs in jobs/: render them with Jenkins Job Builder, check them, compare them.

Everything here is offline and pure but for ``render`` (which reads jobs/) and
``write``: the live side comes in as plain strings, fetched by
``pipeline.jenkins``. Rendering uses JJB's library API with no plugin query and
no cache, so the same YAML always gives the same XML.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import io
import logging
import re
import shlex
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from pipeline import casc, files, jjb_guard, safe_yaml
from pipeline.errors import BadInput

# Appended to every job's description: ``update --delete-old`` deletes only jobs carrying it.
MANAGED_MARK = "<!-- managed by pinotage: jobs/ -->"

# What Jenkins writes for a field it filled in on load: a Java primitive's or an empty list's default.
FILLED_DEFAULTS = ("", "false", "0")
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
# Shell words that may stand before a command.
SHELL_KEYWORDS = {"if", "then", "else", "elif", "do", "while", "until", "!", "{", "(", "time", "exec"}
SHELL_OPERATORS = {";", "&&", "||", "|", "&", "(", ")", ";;", "\n"}


@dataclasses.dataclass(frozen=True)
class RenderedJob:
    """One job as JJB renders it: its name, its config.xml and the YAML file it came from."""

    name: str
    xml: bytes
    source: str = ""

    @property
    def root_tag(self) -> str:
        return ET.fromstring(self.xml).tag


@dataclasses.dataclass(frozen=True)
class Call:
    """One ``pinotage …`` command line found in the Jenkinsfile or a job."""

    where: str  # "Jenkinsfile:42" or "job rebuild-cluster"
    argv: tuple[str, ...]  # the arguments after "pinotage"


@dataclasses.dataclass(frozen=True)
class Drift:
    """How one live job differs from jobs/: missing, changed (with a unified diff) or the same."""

    name: str
    state: str  # "missing" | "changed" | "same"
    diff: str = ""


@dataclasses.dataclass(frozen=True)
class UpdatePlan:
    """The writes that bring Jenkins to jobs/, and nothing else."""

    create: tuple[RenderedJob, ...] = ()
    reconfigure: tuple[RenderedJob, ...] = ()
    delete: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()


# --- render -----------------------------------------------------------------

def render(jobs_dir: str | Path) -> list[RenderedJob]:
    """Render every job in jobs_dir to XML; raise BadInput naming the file and the problem."""
    jobs_dir = Path(jobs_dir)
    if not jobs_dir.is_dir():
        raise BadInput(f"{jobs_dir}: no such folder of Jenkins Job Builder YAML",
                       hint="pass --jobs-dir, or run from the repository's top folder")
    yaml_files = [p for p in sorted(jobs_dir.iterdir()) if p.suffix in (".yaml", ".yml")]
    if not yaml_files:
        raise BadInput(f"{jobs_dir}: holds no .yaml or .yml file")
    for path in yaml_files:  # text, UTF-8, of a sane size, no alias bomb nor duplicate key, before JJB reads it
        safe_yaml.compose(files.read_text(path, what="job YAML"), where=_relative(str(path)), any_tag=True)
    with _quiet_jjb(), jjb_guard.guarded(jobs_dir):
        import jinja2
        import yaml
        from jenkins_jobs.config import JJBConfig
        from jenkins_jobs.errors import JenkinsJobsException
        from jenkins_jobs.loader import load_files
        from jenkins_jobs.registry import ModuleRegistry
        from jenkins_jobs.roots import Roots

        # No config file: a user's ~/.config/jenkins_jobs must not change what renders.
        jjb_config = JJBConfig(config_filename="/dev/null")
        jjb_config.builder["plugins_info"] = []  # render for current plugins, never ask Jenkins
        jjb_config.validate()
        try:
            roots = Roots(jjb_config)
            load_files(jjb_config, roots, [jobs_dir])
            registry = ModuleRegistry(jjb_config, [])
            registry.set_macros(roots.macros)
            job_data = roots.generate_jobs()
            registry.amend_job_dicts(job_data)
            xml_jobs = _generate(registry, job_data)
        except BadInput:
            raise  # from jjb_guard: already names the file and line
        except JenkinsJobsException as e:
            raise BadInput(_jjb_problem(e, jobs_dir),
                           hint="see the Jenkins Job Builder docs for this job or module") from e
        except yaml.YAMLError as e:
            raise BadInput(_yaml_problem(e, jobs_dir)) from e
        except jinja2.TemplateError as e:
            raise BadInput(jjb_guard.template_problem(e, jobs_dir)) from None
        except RecursionError:
            raise BadInput(f"{jobs_dir}: a job YAML nests too deep to render") from None
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            # JJB raises bare Python errors on some malformed files and values.
            raise BadInput(_top_level_problem(jobs_dir)
                           or f"{jobs_dir}: a job did not render: {type(e).__name__}: {e}") from e
    sources = {data.name: _source_of(data) for data in job_data}
    rendered = []
    for name, root in sorted(xml_jobs, key=lambda pair: pair[0]):
        if problem := jjb_guard.job_name_problem(name):
            raise BadInput(f"{sources.get(name) or jobs_dir}: {problem}")
        _mark_managed(root)
        rendered.append(RenderedJob(name, _serialise(root), sources.get(name, "")))
    return rendered


def write(jobs: Iterable[RenderedJob], output: str | Path) -> list[Path]:
    """Write each job's XML to output/NAME, as ``jenkins-jobs test -o`` lays it out."""
    output = Path(output)
    written = []
    for job in jobs:
        path = output / job.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(job.xml)
        written.append(path)
    return written


# --- check ------------------------------------------------------------------

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
    """Check a Jenkinsfile binds credentials only in stages run on the default branch alone.

    A ``withCredentials`` must sit inside a stage guarded by
    ``when { branch '<default branch>' }`` (itself or an enclosing stage), and
    the ``sh`` steps inside it must be single-quoted so that Groovy never
    interpolates a secret into a command line.
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
        if not any(guards.get(stage) == default_branch for stage in around):
            problems.append(f"{where}: withCredentials outside a stage that runs only on"
                            f" {default_branch!r} (add when {{ branch '{default_branch}' }})")
        brace = code.find("{", match.end())
        block = uncommented[brace:_matching_brace(code, brace)] if brace >= 0 else ""
        if any(step.group("q") in ('"', '"""') for step in _SH_STEP.finditer(block)):
            problems.append(f"{where}: a double-quoted sh inside withCredentials lets Groovy"
                            " interpolate secrets; use a single-quoted sh")
    return problems


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


# --- compare ----------------------------------------------------------------

def normalise(xml: str | bytes, *, ours: bytes | None = None) -> list[str]:
    """Return a job config as canonical lines: no layout, no plugin attributes, fields in a stable order.

    Jenkins stores what it was sent but rewrites it whenever it saves the job
    (XStream): its own XML declaration, indentation and escapes, no comments,
    ``plugin="name@version"`` on the objects a plugin owns, and each object's
    fields in its class's order. None of that is a change to the job. The
    order of a list (builders, publishers, string entries) is kept: it is one.
    Given ``ours`` (the job as rendered), a field Jenkins filled in with a
    default value because ours lacks it is left out too.
    """
    if isinstance(xml, str):
        xml = xml.encode("utf-8")
    # The declaration says nothing about the job (Jenkins writes version 1.1, JJB 1.0).
    xml = re.sub(rb"^\s*<\?xml[^>]*\?>", b"", xml)
    root = ET.fromstring(xml)
    if ours is not None:
        _drop_filled_defaults(root, ET.fromstring(re.sub(rb"^\s*<\?xml[^>]*\?>", b"", ours)))
    lines: list[str] = []
    _canonical_lines(root, 0, lines)
    return lines


def compare(job: RenderedJob, live_xml: str | None) -> Drift:
    """Compare one rendered job with the live config (None: Jenkins has no such job)."""
    if live_xml is None:
        return Drift(job.name, "missing")
    want, have = normalise(job.xml), normalise(live_xml, ours=job.xml)
    if want == have:
        return Drift(job.name, "same")
    text = "\n".join(difflib.unified_diff(have, want, f"jenkins/{job.name}", f"jobs/{job.name}",
                                          lineterm="", n=2))
    return Drift(job.name, "changed", text)


def plan_update(jobs: Iterable[RenderedJob], live: Mapping[str, str | None],
                others: Mapping[str, str] = {}, *, delete_old: bool = False) -> UpdatePlan:
    """Decide the writes: create the missing, reconfigure the changed, delete own leftovers.

    ``live`` maps each rendered job's name to its live config (None when absent);
    ``others`` maps the live jobs not in jobs/ to their configs.
    """
    create, reconfigure, unchanged = [], [], []
    for job in jobs:
        state = compare(job, live.get(job.name)).state
        {"missing": create, "changed": reconfigure, "same": unchanged}[state].append(
            job if state != "same" else job.name)
    delete = sorted(name for name, xml in others.items() if is_managed(xml)) if delete_old else []
    return UpdatePlan(tuple(create), tuple(reconfigure), tuple(delete), tuple(unchanged))


def is_managed(xml: str | bytes) -> bool:
    """Tell whether a live job was made by Pinotage (its description carries the mark)."""
    try:
        description = ET.fromstring(re.sub(rb"^\s*<\?xml[^>]*\?>", b"",
                                           xml.encode() if isinstance(xml, str) else xml)).find("description")
    except ET.ParseError:
        return False
    return description is not None and MANAGED_MARK in (description.text or "")


# --- internals --------------------------------------------------------------

def _generate(registry, job_data) -> list[tuple[str, ET.Element]]:
    """Generate each job's XML with JJB's project and component modules.

    This is what JJB's XmlJobGenerator does, less its cost: it looks the
    project class up through pkg_resources for every job, resolving the whole
    dependency tree each time, which is most of a large render.
    """
    from importlib.metadata import entry_points

    from jenkins_jobs.errors import JenkinsJobsException

    projects = {ep.name: ep for ep in entry_points(group="jenkins_jobs.projects")}
    classes: dict[str, type] = {}
    generators = [module for module in registry.modules if hasattr(module, "gen_xml")]
    out = []
    for job in job_data:
        data = job.data
        kind = data.get("project-type", "freestyle")
        try:
            if kind not in classes:
                if kind not in projects:
                    raise JenkinsJobsException(f"Unrecognized project-type: {kind}"
                                               f" (supported types are: {', '.join(sorted(projects))})")
                classes[kind] = projects[kind].load()
            root = classes[kind](registry).root_xml(data)
            for module in generators:
                module.gen_xml(root, data)
        except JenkinsJobsException as e:
            raise e.with_ctx_list(job.context) from e
        out.append((data["name"], root))
    return out


def _serialise(root: ET.Element) -> bytes:
    """Write a job's XML as jenkins-jobs does (declaration, two-space indent), without minidom's cost."""
    ET.indent(root, space="  ")
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="utf-8",
                                                                    xml_declaration=False) + b"\n"


def _mark_managed(root: ET.Element) -> None:
    """Append the managed mark to a freshly generated job's description."""
    description = root.find("description")
    if description is None:
        description = ET.SubElement(root, "description")
    description.text = ((description.text or "").rstrip("\n") + "\n" + MANAGED_MARK).lstrip("\n")


def _canonical_lines(element: ET.Element, depth: int, lines: list[str]) -> None:
    # plugin= only names the plugin that owns the element's class, and Jenkins adds it on save
    attributes = "".join(f' {key}="{value}"' for key, value in sorted(element.attrib.items()) if key != "plugin")
    text = "\n".join(line.rstrip() for line in (element.text or "").strip().replace("\r\n", "\n").split("\n"))
    indent = "  " * depth
    children = list(element)
    if not children:
        lines.append(f"{indent}<{element.tag}{attributes}>{_escape(text)}</{element.tag}>" if text
                     else f"{indent}<{element.tag}{attributes}/>")
        return
    lines.append(f"{indent}<{element.tag}{attributes}>")
    for child in _fields_sorted(children):
        _canonical_lines(child, depth + 1, lines)
    lines.append(f"{indent}</{element.tag}>")


def _is_object(children: list[ET.Element]) -> bool:
    """Tell an object's fields from a list's items.

    XStream writes an object's fields under their Java names (no dot, each once)
    and a list's items under their class names (dotted) or repeated tags.
    """
    tags = [child.tag for child in children]
    return len(set(tags)) == len(tags) and not any("." in tag for tag in tags)


def _fields_sorted(children: list[ET.Element]) -> list[ET.Element]:
    """Sort an object's fields by name; keep a list's items in their order."""
    return sorted(children, key=lambda child: child.tag) if _is_object(children) else children


def _drop_filled_defaults(live: ET.Element, ours: ET.Element) -> None:
    """Remove from live the fields Jenkins filled in on load because ours has none.

    Jenkins gives a missing field its Java default (false, 0, an empty list) and
    writes it on save; sending ours again would do the same, so it is no change.
    A field holding anything else (``<disabled>true</disabled>``) is one.
    """
    children = list(live)
    if _is_object(children):
        for child in children:
            counterpart = ours.find(child.tag)
            if counterpart is not None:
                _drop_filled_defaults(child, counterpart)
            elif not len(child) and not child.attrib and (child.text or "").strip() in FILLED_DEFAULTS:
                live.remove(child)
        return
    for child, counterpart in zip(children, list(ours)):
        if child.tag == counterpart.tag:
            _drop_filled_defaults(child, counterpart)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


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


def _source_of(data) -> str:
    for context in reversed(getattr(data, "context", []) or []):
        pos = getattr(context, "pos", None)
        if pos is not None and getattr(pos, "path", None):
            return _relative(str(pos.path))
    return ""


def _relative(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return path


def _jjb_problem(e, jobs_dir: Path) -> str:
    """Make one line of a JJB error: where the problem is, what it is, and what it relates to.

    JJB's errors carry a chain of (message, position) pairs: framing such as
    "In project 'x'" or "Defined here", and the problem itself, which may be
    the error's own message or the first of its context.
    """
    entries = [(c.message, c.pos) for c in e.ctx] + [(str(e.message), e.pos)]
    framing = re.compile(r"^(In |Defined here|Used here|While )")
    problems = [(message, pos) for message, pos in entries if not framing.match(message)]
    if not problems:
        problems = [(str(e.message), None)]
    (message, pos), related = problems[0], problems[1:]
    if pos is None:
        pos = next((p for _, p in reversed(entries) if p is not None), None)
    text = " ".join(message.split())
    text += "".join(f" ({' '.join(m.split())}: {_where(p)})" for m, p in related if p is not None)
    return f"{_where(pos)}: {text}" if pos is not None else f"{jobs_dir}: {text}"


def _where(pos) -> str:
    return f"{_relative(str(pos.path))}:{pos.line + 1}"


def _top_level_problem(jobs_dir: Path) -> str:
    """Find a YAML file whose top level is not a list (JJB fails on it with an AttributeError)."""
    import yaml

    for path in sorted(jobs_dir.iterdir()):
        if path.suffix not in (".yaml", ".yml"):
            continue
        try:
            node = yaml.compose(path.read_text())
        except yaml.YAMLError as e:
            return _yaml_problem(e, jobs_dir)
        if node is not None and not isinstance(node, yaml.SequenceNode):
            return (f"{_relative(str(path))}:{node.start_mark.line + 1}: the top level must be a list"
                    " of job, job-template, project, defaults and macro entries")
    return ""


def _yaml_problem(e, jobs_dir: Path) -> str:
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e)
    if mark is None:
        return f"{jobs_dir}: not valid YAML: {problem}"
    return f"{_relative(str(mark.name))}:{mark.line + 1}: not valid YAML: {problem}"


@contextlib.contextmanager
def _quiet_jjb() -> Iterator[None]:
    """Keep JJB's import-time warnings and INFO chatter off the user's terminal."""
    logger = logging.getLogger("jenkins_jobs")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


# --- the `pinotage jobs` commands -------------------------------------------

def command(action: str, *, jobs_dir: str, output: str, delete_old: bool, config,
            environ: Mapping[str, str], parser: argparse.ArgumentParser) -> int:
    """Run one ``pinotage jobs`` action; return the exit code."""
    import sys

    jobs = render(jobs_dir)
    if action == "render":
        for path in write(jobs, output):
            print(path)
        print(f"rendered {len(jobs)} jobs to {output}", file=sys.stderr)
        return 0
    if action == "check":
        jenkinsfile = Path(jobs_dir).parent / "Jenkinsfile"  # jobs/ sits beside the Jenkinsfile
        problems = check(jobs, jenkinsfile, parser, default_branch=config.default_branch)
        casc_path = Path(jobs_dir).parent / casc.CASC_FILE
        if casc_path.is_file():
            problems += credentials_declared(jobs, jenkinsfile, casc_path)
        if problems:
            raise JobsCheckFailed(problems)
        crossed = f", credentials against {casc_path}" if casc_path.is_file() else f" (no {casc_path} to check credentials against)"
        print(f"checked {len(jobs)} jobs and {jenkinsfile}{crossed}: no problem", file=sys.stderr)
        return 0

    from pipeline import jenkins

    client = jenkins.connect(config, environ, need_token=action == "update")
    live = jenkins.live_configs(client, [job.name for job in jobs])
    if action == "diff":
        drifted = 0
        for job in jobs:
            drift = compare(job, live[job.name])
            if drift.state == "missing":
                print(f"+ {job.name}: not in Jenkins")
            elif drift.state == "changed":
                print(drift.diff)
            drifted += drift.state != "same"
        print(f"{drifted} of {len(jobs)} jobs differ from {jobs_dir}", file=sys.stderr)
        return 1 if drifted else 0

    names = {job.name for job in jobs}
    others = {}
    if delete_old:
        others = {name: client.job_config(name) or "" for name in client.job_names() if name not in names}
    plan = plan_update(jobs, live, others, delete_old=delete_old)
    for job in plan.create:
        print(f"creating {job.name}", file=sys.stderr)
        client.create(job.name, job.xml)
    for job in plan.reconfigure:
        print(f"reconfiguring {job.name}", file=sys.stderr)
        client.reconfigure(job.name, job.xml)
    for name in plan.delete:
        print(f"deleting {name} (managed by Pinotage, no longer in {jobs_dir})", file=sys.stderr)
        client.delete(name)
    print(f"{len(plan.create)} created, {len(plan.reconfigure)} reconfigured, {len(plan.delete)} deleted,"
          f" {len(plan.unchanged)} unchanged", file=sys.stderr)
    return 0


class JobsCheckFailed(BadInput):
    """``pinotage jobs check`` found problems; each is one line."""

    def __init__(self, problems: list[str]):
        super().__init__(f"{len(problems)} problems in the jobs and the Jenkinsfile",
                         hint="fix them in jobs/ or the Jenkinsfile, then run 'pinotage jobs check' again")
        self.problems = list(problems)

    def lines(self) -> list[str]:
        return list(self.problems)
