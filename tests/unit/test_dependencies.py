"""Guards against dependency bumps that break Pinotage without a test noticing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

JOB = """\
- job:
    name: pinotage-canary
    project-type: freestyle
    description: rendered by the dependency canary
    builders:
      - shell: pinotage --version
"""


def test_jenkins_job_builder_renders_a_job(tmp_path):
    # JJB 6.x finds its subcommands through pkg_resources; setuptools 82 removed it and JJB then
    # fails with "No jjb.cli.subcommands extensions found". setup.cfg pins setuptools below 82.
    (tmp_path / "jobs.yaml").write_text(JOB)
    jenkins_jobs = Path(sys.executable).parent / "jenkins-jobs"
    done = subprocess.run([str(jenkins_jobs), "test", str(tmp_path / "jobs.yaml"), "-o", str(tmp_path / "out")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    xml = (tmp_path / "out" / "pinotage-canary").read_text()
    assert "<description>rendered by the dependency canary" in xml
    assert "<command>pinotage --version</command>" in xml
