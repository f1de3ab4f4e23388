"""The handlers of ``pinotage jobs render|check|diff|update``: render jobs/, then act on what rendered.

Every action reads the configuration and renders first, so a broken jobs/ is reported before any
answer of Jenkins and before any write. (``diff`` and ``update`` start reading the live configs of
Pinotage's jobs in a child process while rendering: reads only, see ``pipeline.jenkins_prefetch``.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Mapping

from pipeline.cli.common import load_config
from pipeline.errors import JobsCheckFailed


def render_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from pipeline import jobs

    load_config(args, environ)  # a bad configuration is reported first, as by every command
    rendered = jobs.render(args.jobs_dir)
    for path in jobs.write(rendered, args.output):
        print(path)
    print(f"rendered {len(rendered)} jobs to {args.output}", file=sys.stderr)
    return 0


def check_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from pipeline import casc, jobs
    from pipeline.cli import build_parser

    config = load_config(args, environ)
    rendered = jobs.render(args.jobs_dir)
    jenkinsfile = Path(args.jobs_dir).parent / "Jenkinsfile"  # jobs/ sits beside the Jenkinsfile
    problems = jobs.check(rendered, jenkinsfile, build_parser(), default_branch=config.default_branch)
    casc_path = Path(args.jobs_dir).parent / casc.CASC_FILE
    if casc_path.is_file():
        problems += jobs.credentials_declared(rendered, jenkinsfile, casc_path)
    if problems:
        raise JobsCheckFailed(problems)
    crossed = (f", credentials against {casc_path}" if casc_path.is_file()
               else f" (no {casc_path} to check credentials against)")
    print(f"checked {len(rendered)} jobs and {jenkinsfile}{crossed}: no problem", file=sys.stderr)
    return 0


def diff_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from pipeline import jobs
    from pipeline.jobs import verdicts

    config = load_config(args, environ)
    rendered, _, live = _rendered_and_live(args, config, environ, need_token=False)
    same_before = verdicts.load(environ)
    drifts, same = jobs.compare_all(rendered, live, same_before)
    verdicts.save(environ, same, same_before)
    drifted = 0
    for drift in drifts:
        if drift.state == "missing":
            print(f"+ {drift.name}: not in Jenkins")
        elif drift.state == "changed":
            print(drift.diff)
        drifted += drift.state != "same"
    print(f"{drifted} of {len(rendered)} jobs differ from {args.jobs_dir}", file=sys.stderr)
    return 1 if drifted else 0


def update_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from pipeline import jenkins, jobs
    from pipeline.jobs import verdicts

    config = load_config(args, environ)
    rendered, client, live = _rendered_and_live(args, config, environ, need_token=True)
    names = {job.name for job in rendered}
    others = {}
    if args.delete_old:
        others = {name: xml or "" for name, xml in
                  jenkins.live_configs(client, [name for name in client.job_names() if name not in names]).items()}
    same_before = verdicts.load(environ)
    plan = jobs.plan_update(rendered, live, others, delete_old=args.delete_old, same_before=same_before)
    for job in plan.create:
        print(f"creating {job.name}", file=sys.stderr)
        client.create(job.name, job.xml)
    for job in plan.reconfigure:
        print(f"reconfiguring {job.name}", file=sys.stderr)
        client.reconfigure(job.name, job.xml)
    for name in plan.delete:
        print(f"deleting {name} (managed by Pinotage, no longer in {args.jobs_dir})", file=sys.stderr)
        client.delete(name)
    verdicts.save(environ, plan.same_pairs, same_before)
    print(f"{len(plan.create)} created, {len(plan.reconfigure)} reconfigured, {len(plan.delete)} deleted,"
          f" {len(plan.unchanged)} unchanged", file=sys.stderr)
    return 0


def _rendered_and_live(args: argparse.Namespace, config, environ: Mapping[str, str], *, need_token: bool):
    """Render jobs/ and read each job's live config, the reads of Pinotage's known jobs started first
    (in a child process) so that they overlap the render; a bad jobs/ is still reported first."""
    from pipeline import jenkins, jenkins_prefetch, jobs

    early = jenkins_prefetch.start(config, environ, jobs.MANAGED_MARK)
    try:
        rendered = jobs.render(args.jobs_dir)
        client = jenkins.connect(config, environ, need_token=need_token)
        live = jenkins.live_configs(client, [job.name for job in rendered], early.result() if early else {})
    finally:
        if early:
            early.close()
    return rendered, client, live


JOBS_ACTIONS = {"render": render_command, "check": check_command, "diff": diff_command, "update": update_command}
