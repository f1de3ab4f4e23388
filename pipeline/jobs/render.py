"""Render the JJB YAML in jobs/ to each job's config.xml, offline and the same every time.

Rendering uses Jenkins Job Builder's library API with no plugin query and no cache, so the same
YAML always gives the same XML; a problem in the YAML is one ``BadInput`` naming the file and line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterable, Iterator

from pipeline import files, jjb_guard, safe_yaml
from pipeline.errors import BadInput


# Appended to every job's description: ``update --delete-old`` deletes only jobs carrying it.
MANAGED_MARK = "<!-- managed by pinotage: jobs/ -->"


@dataclasses.dataclass(frozen=True)
class RenderedJob:
    """One job as JJB renders it: its name, its config.xml and the YAML file it came from."""

    name: str
    xml: bytes
    source: str = ""

    @property
    def root_tag(self) -> str:
        return ET.fromstring(self.xml).tag


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
