"""Render Jenkins Job Builder YAML as data, not as a program.

Jenkins Job Builder renders ``!j2:`` templates in a plain Jinja environment, where a template can
reach Python (``{{ ''.__class__.__mro__[1].__subclasses__() }}``) and run commands on the agent
that renders jobs/. Its ``!include-raw*:`` tags read any file the path names (``../../etc/shadow``),
and a job named ``../x`` is written outside ``jobs render -o``. While ``guarded()`` runs, JJB's
templates render in Jinja's sandbox and includes resolve under the jobs folder only; ``job_name_problem``
says what is wrong with a job's name.

JJB offers no setting for either, so ``guarded()`` wraps two of its methods for the length of one
render and puts them back after (JJB 6's ``J2BaseYamlObject.__init__`` and ``BaseYamlObject._find_file``).
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Iterator

from pipeline.errors import BadInput

JOB_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9 _.+-]{0,199}")


def job_name_problem(name: str) -> str:
    """Return why a job name cannot be written as one file under -o, or "" when it can."""
    if ".." in name or not JOB_NAME.fullmatch(name):
        return (f"job name {name[:80]!r} is not allowed: use letters, digits, spaces and . _ + -"
                " (no '/', no '..')")
    return ""


@contextlib.contextmanager
def guarded(jobs_dir: Path) -> Iterator[None]:
    """Sandbox JJB's Jinja templates and confine its includes to ``jobs_dir`` while the block runs."""
    from jenkins_jobs import yaml_objects
    from jinja2 import FileSystemLoader
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    root = jobs_dir.resolve()
    original_init = yaml_objects.J2BaseYamlObject.__init__
    original_find = yaml_objects.BaseYamlObject._find_file

    def sandboxed_init(self, jjb_config, loader, pos):
        original_init(self, jjb_config, loader, pos)
        plain = self._jinja2_env
        # {% include %} and {% import %} find templates under the jobs folder only (JJB adds the working folder)
        self._jinja2_env = ImmutableSandboxedEnvironment(loader=FileSystemLoader([str(root)]),
                                                         undefined=plain.undefined)
        self._jinja2_env.filters.update(self._filters)

    def confined_find(self, rel_path, pos):
        found = Path(original_find(self, rel_path, pos)).resolve()
        if found != root and root not in found.parents:
            raise BadInput(f"{_where(pos)}: {str(rel_path)[:80]!r} is outside the jobs folder {jobs_dir}",
                           hint="!include-raw and its kin read files under the jobs folder only")
        return found

    yaml_objects.J2BaseYamlObject.__init__ = sandboxed_init
    yaml_objects.BaseYamlObject._find_file = confined_find
    try:
        yield
    finally:
        yaml_objects.J2BaseYamlObject.__init__ = original_init
        yaml_objects.BaseYamlObject._find_file = original_find


def template_problem(e: Exception, jobs_dir: Path) -> str:
    """Say where a Jinja error in a ``!j2:`` template is (the file, when Jinja knows it) and what it is."""
    import jinja2

    message = " ".join(str(getattr(e, "message", None) or e).split())[:200]
    if isinstance(e, jinja2.exceptions.SecurityError):
        return f"{jobs_dir}: a !j2: template reached for Python, which templates may not: {message}"
    line = getattr(e, "lineno", None)
    return f"{jobs_dir}: a !j2: template does not render" + (f" (its line {line})" if line else "") + f": {message}"


def _where(pos) -> str:
    try:
        return f"{pos.path}:{pos.line + 1}"
    except AttributeError:
        return "jobs"
