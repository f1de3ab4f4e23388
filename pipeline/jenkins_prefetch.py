"""Read the live configs of Pinotage's jobs in a child process while jobs/ renders.

Rendering a large jobs/ and reading each job's live config both take CPU in Python, so in one
process they add up (the GIL). A job Pinotage manages carries its mark in its description, and
Jenkins lists every job's description in one read, so a child process can start reading those
configs at once, on another core, while the parent renders. It reads during this run, only
earlier: an update still compares every job with its live config, never with a cache. It is an
optimisation only: when the child fails or is not started, the parent reads every job itself,
and any error is reported from there.

    python -m pipeline.jenkins_prefetch URL USER MARK   (the API token in PINOTAGE_JENKINS_TOKEN)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Mapping

from pipeline.config import Config, secret
from pipeline.errors import BadInput

LISTING = "api/json?tree=jobs[name,description]"


class Prefetch:
    """A child process reading the configs of the top-level jobs whose description carries a mark."""

    def __init__(self, url: str, user: str, mark: str, environ: Mapping[str, str]):
        # The token stays in the environment (PINOTAGE_JENKINS_TOKEN), never on the command line.
        self._child = subprocess.Popen([sys.executable, "-m", "pipeline.jenkins_prefetch", url, user, mark],
                                       env=dict(environ), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.DEVNULL)

    def result(self, timeout_s: float = 600) -> dict[str, str]:
        """Return the configs the child read (job name -> config.xml); {} when it failed."""
        try:
            out, _ = self._child.communicate(timeout=timeout_s)
            configs = json.loads(out) if self._child.returncode == 0 else {}
        except (OSError, ValueError, subprocess.TimeoutExpired):
            return {}
        return {name: xml for name, xml in configs.items() if isinstance(name, str) and isinstance(xml, str)}

    def close(self) -> None:
        """End the child if it still runs (the parent stopped early: bad YAML, a failed render)."""
        if self._child.poll() is None:
            self._child.kill()
        self._child.communicate()


def start(config: Config, environ: Mapping[str, str], mark: str) -> Prefetch | None:
    """Start reading the marked jobs' configs; None where that would not help (one CPU) or is not allowed.

    The settings must pass ``jenkins.connect``'s checks first (an API token, never a password);
    when they do not, the parent's own ``connect`` reports it, after the render.
    """
    from pipeline import jenkins

    if len(os.sched_getaffinity(0)) < 2:
        return None
    try:
        jenkins.connect(config, environ, need_token=False)
        return Prefetch(config.jenkins.url, config.jenkins.user, mark, environ)
    except (BadInput, OSError):
        return None


def main() -> int:
    from pipeline.jenkins import JenkinsClient, live_configs

    url, user, mark = sys.argv[1:4]
    client = JenkinsClient(url, user, secret("jenkins.token", os.environ) or "")
    listing = client.get_json(LISTING) or {}
    names = [job["name"] for job in listing.get("jobs", []) if mark in (job.get("description") or "")]
    configs = live_configs(client, names)
    json.dump({name: xml for name, xml in configs.items() if xml is not None}, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
