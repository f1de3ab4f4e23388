"""The build context: what happened (which event, which commit) and so what to do (the plan).

[The run issue fills in reading it from Jenkins' environment or from git, and the Plan.]
"""

from __future__ import annotations

import dataclasses

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
