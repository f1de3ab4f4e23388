"""The Jenkins jobs in jobs/: render them with Jenkins Job Builder, check them, compare them.

- ``render``: the JJB YAML to each job's config.xml, offline (``render``, ``write``);
- ``check``: the rendered jobs and the Jenkinsfile against the CLI and the credential rules;
- ``compare``: rendered against live, and the writes an update makes (``compare``, ``compare_all``,
  ``plan_update``); ``verdicts``: the pairs an earlier update found the same, byte for byte.

Everything is offline and pure but for ``render`` (which reads jobs/), ``write``, the check's
read of the Jenkinsfile and ``verdicts``' one file in the user's cache folder: the live side comes in as plain strings, fetched by ``pipeline.jenkins``.
The ``pinotage jobs`` commands are in ``pipeline.cli.jobs``.
"""

from pipeline.jobs.check import (SCAN_CREDENTIAL_ID, Call, builds_branches, calls_in_jenkinsfile, calls_in_job,
                                 credentials_declared,
                                 check, check_call, credential_references, credential_scope, pinotage_calls,
                                 scan_credential)
from pipeline.jobs.compare import Drift, UpdatePlan, compare, compare_all, is_managed, normalise, plan_update
from pipeline.jobs.render import MANAGED_MARK, RenderedJob, render, write

__all__ = ["MANAGED_MARK", "SCAN_CREDENTIAL_ID", "Call", "Drift", "RenderedJob", "UpdatePlan", "builds_branches",
           "calls_in_jenkinsfile", "calls_in_job", "check", "check_call", "compare", "compare_all", "credential_references",
           "credential_scope", "credentials_declared", "is_managed", "normalise", "pinotage_calls", "plan_update", "render",
           "scan_credential", "write"]
