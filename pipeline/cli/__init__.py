"""The ``pinotage`` command: argparse subcommands and the one error boundary.

The parser and the boundary live here; the handlers of the release commands in ``stages``, those
of ``pinotage jobs`` in ``jobs``. Heavy libraries (docker, kubernetes, jenkins, jenkins_jobs, git)
are imported inside the handlers that need them, never at module level, so ``--help`` and
``config`` start fast.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Callable, Mapping

from pipeline import __version__, boundary, redact
from pipeline.cli import jobs as jobs_commands
from pipeline.cli import preview as preview_commands
from pipeline.cli import stages
from pipeline.cli.common import load_config
from pipeline.cluster import rebuild as cluster_rebuild  # the step tables only: light to import
from pipeline.errors import EXIT_BAD_INPUT, BadInput

__all__ = ["build_parser", "load_config", "main"]

Handler = Callable[[argparse.Namespace, Mapping[str, str]], int]
DOCTOR_AREAS = ("config", "registry", "kubernetes", "jenkins", "github")  # pipeline.doctor.AREAS, without its import


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose usage errors go through the one error boundary."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"pinotage: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run one pinotage command; return the process exit code."""
    environ = os.environ if environ is None else environ
    parser = build_parser()
    with redact.installed():  # every line printed from here on is redacted
        args = parser.parse_args(argv)
        if not getattr(args, "handler", None):
            parser.print_help()
            return EXIT_BAD_INPUT
        return boundary.run(lambda: _in_stage(args, environ))


def _in_stage(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run the command; a stage command also records in its state file which stage ran and whether it passed."""
    if not getattr(args, "marks_stage", False):
        return args.handler(args, environ)
    from pipeline.state import mark_stage

    name, build_url = environ.get("STAGE_NAME") or args.command, environ.get("BUILD_URL", "")
    mark_stage(args.state, name, "running", build_url)
    code = args.handler(args, environ)
    mark_stage(args.state, name, "passed", build_url)
    return code


def build_parser() -> argparse.ArgumentParser:  # over 60 lines: one flat table of every subcommand
    """Describe every subcommand and its options (also read by 'pinotage jobs check')."""
    parser = _Parser(
        prog="pinotage",
        description="Push-to-deploy for teams that run Jenkins and their own kubeadm cluster.",
        epilog="Configuration precedence: defaults < pinotage.yaml < profile < PINOTAGE_* environment < flags.",
    )
    parser.add_argument("--version", action="version", version=f"pinotage {__version__}")
    common = _Parser(add_help=False)
    common.add_argument("-c", "--config", metavar="FILE", help="configuration file (default: ./pinotage.yaml)")
    common.add_argument("-p", "--profile", metavar="NAME",
                        help="overlay the named profile of pinotage.yaml (default: $PINOTAGE_PROFILE, else none)")
    common.add_argument("-s", "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one setting, e.g. --set deploy.target=kubernetes (repeatable)")
    subs = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, handler: Handler, help_text: str) -> _Parser:
        sub = subs.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(handler=handler, command=name)
        return sub

    def with_state(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--state", metavar="FILE", default="pinotage-state.json",
                         help="the JSON hand-off between Jenkins stages (default: %(default)s)")
        sub.set_defaults(marks_stage=True)

    add("config", _config, "print the effective configuration and where each value came from")

    sub = add("context", stages.context_command, "print the build context and the plan for this event")
    sub.add_argument("--json", action="store_true", help="print JSON")
    with_state(sub)

    sub = add("run", stages.run_command, "build, smoke test and, on the default branch, push and deploy")
    sub.add_argument("--dry-run", action="store_true", help="print the plan and touch nothing")
    sub.add_argument("--preview", action="store_true", help="build, smoke-test and serve this checkout on"
                     " preview.local_port beside the app, pushing nothing (docs/previews.md)")

    for name, handler, help_text in (
            ("lookup", stages.lookup_command, "ask the registry for this commit's image (default branch; needs the registry login)"),
            ("build", stages.build_command, "build the image (skipped when the lookup found this commit in the registry)"),
            ("smoke", stages.smoke_command, "run the built image and check its health path and first slide"),
            ("push", stages.push_command, "push the image to the registry and record its digest")):
        with_state(add(name, handler, help_text))
    # --state only records the stage, so that a failure status can name it.
    with_state(add("audit", stages.audit_command, "audit the app's production npm dependencies and Pinotage's locked Python ones"
                   " for published advisories (audit.fail_on, audit.unreachable)"))
    with_state(add("deploy", stages.deploy_command, "deploy the pushed image to the target, gated: a failed rollout rolls back"))
    with_state(add("gate", stages.gate_command, "check that the release the deploy stage gated is still the live one"))

    sub = add("rollback", stages.rollback_command, "return to the previous (or a named) successful deploy")
    sub.add_argument("--to", metavar="COMMIT", type=_commit_prefix,
                     help="the commit (or a prefix of 4 or more hex digits) to return to"
                          " (default: the previous deploy)")

    sub = add("history", stages.history_command, "print the deploy ledger")
    sub.add_argument("--json", action="store_true", help="print JSON")
    sub.add_argument("--limit", type=int, default=20, help="newest N records (default: %(default)s)")
    sub.add_argument("--package", metavar="NAME[@VERSION]",
                     help="only the deploys whose image shipped this npm package (at this version)")

    sub = add("sbom", stages.sbom_command, "print or save the SBOM of a deployed revision (default: the newest deploy)")
    sub.add_argument("revision", nargs="?", metavar="REVISION", help="the target's revision, or a commit (7+ hex)")
    sub.add_argument("-o", "--output", metavar="FILE", help="save it to FILE instead of printing it")

    add("diff", stages.diff_command, "show how the live Deployment differs, in the fields Pinotage manages, from k8s/ with the"
        " image the ledger last deployed (exit 0: no drift, 1: drift, 2: bad input)")

    sub = add("status", stages.status_command, "report a commit status to GitHub (needs PINOTAGE_GITHUB_TOKEN)")
    sub.add_argument("state_name", nargs="?", choices=("pending", "success", "failure", "error"), metavar="STATE")
    sub.add_argument("--build-result", action="store_true", help="instead of STATE: success when"
                     " PINOTAGE_BUILD_RESULT (Jenkins' currentBuild.currentResult) is SUCCESS, else failure")
    sub.add_argument("--description", default="", help="a short text shown beside the status")
    sub.add_argument("--state", metavar="FILE", help="a failure names the stage this state file last recorded")
    sub.add_argument("--best-effort", action="store_true",
                     help="a status that cannot be sent is a warning and exits 0 (never fails a build)")

    github = add("github", _missing_subcommand, "set up the repository on GitHub")
    github.set_defaults(command_name="github")
    github_subs = github.add_subparsers(title="github commands", metavar="ACTION", parser_class=_Parser)
    sub = github_subs.add_parser("hook", parents=[common], help="create or update the webhook that tells Jenkins"
                                 " of pushes and pull requests (needs admin:repo_hook)")
    sub.set_defaults(handler=stages.github_hook_command)
    sub.add_argument("--url", help="where GitHub delivers (default: jenkins.url + github-webhook/)")
    sub.add_argument("--dry-run", action="store_true", help="show what would change and write nothing")

    sub = add("doctor", _doctor, "check every link of the production loop, read-only: ok, FAIL with a hint, or skipped")
    sub.add_argument("--json", action="store_true", help="print JSON")
    sub.add_argument("--only", action="append", metavar="AREA", choices=DOCTOR_AREAS,
                     help=f"check only this area (repeatable): {', '.join(DOCTOR_AREAS)}")

    preview = add("preview", _missing_subcommand, "previews of same-repository pull requests (docs/previews.md)")
    preview.set_defaults(command_name="preview")
    preview_subs = preview.add_subparsers(title="preview commands", metavar="ACTION", parser_class=_Parser)
    for name, help_text in (("deploy", "deploy this pull request's pushed image as its preview and link it from"
                                       " a commit status (same-repository pull requests only)"),
                            ("list", "show each preview: its pull request, commit, age and URL"),
                            ("prune", "delete the previews whose pull request is no longer open, or that had no"
                                      " new commit for preview.max_age_h")):
        sub = preview_subs.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(handler=preview_commands.ACTIONS[name])
        if name == "deploy":
            with_state(sub)
        if name == "list":
            sub.add_argument("--json", action="store_true", help="print JSON")
        if name == "prune":
            sub.add_argument("--dry-run", action="store_true", help="say what would be deleted and delete nothing")

    jobs = add("jobs", _missing_subcommand, "render, check, diff and update the Jenkins jobs in jobs/")
    jobs.set_defaults(command_name="jobs")
    jobs_subs = jobs.add_subparsers(title="jobs commands", metavar="ACTION", parser_class=_Parser)
    for name, help_text in (("render", "write the job XML to a folder, offline"),
                            ("check", "check the jobs and the Jenkinsfile against the CLI and the credential rules"),
                            ("diff", "show how the live jobs differ from jobs/"),
                            ("update", "create or reconfigure only the jobs that differ")):
        sub = jobs_subs.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(handler=jobs_commands.JOBS_ACTIONS[name])
        sub.add_argument("--jobs-dir", default="jobs", help="the JJB YAML folder (default: %(default)s)")
        if name == "render":
            sub.add_argument("-o", "--output", default="build/jobs", help="output folder (default: %(default)s)")
        if name == "update":
            sub.add_argument("--delete-old", action="store_true",
                             help="also delete Pinotage-managed jobs that have left jobs/")

    cluster = add("cluster", _missing_subcommand, "rebuild the kubeadm cluster, or run one step of it")
    cluster.set_defaults(command_name="cluster")
    cluster_subs = cluster.add_subparsers(title="cluster steps", metavar="STEP", parser_class=_Parser)
    for name, help_text in [("rebuild", cluster_rebuild.REBUILD_HELP), *cluster_rebuild.STEPS.items(),
                            *cluster_rebuild.NODE_STEPS.items()]:
        sub = cluster_subs.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(handler=_cluster, cluster_step=name)
        sub.add_argument("--dry-run", action="store_true", help="print the commands and run none")
        if name == "box":
            sub.add_argument("--force", action="store_true",
                             help="build the box again and replace it, even when that name and version are there")
        if name in cluster_rebuild.NODE_STEPS:
            sub.add_argument("node", metavar="NODE")
    return parser


def _commit_prefix(text: str) -> str:
    """Check a --to COMMIT before any service is asked; commits compare in lower case on every target."""
    if not re.fullmatch(r"[0-9a-fA-F]{4,40}", text):
        raise argparse.ArgumentTypeError(f"expected a commit hash or a prefix of 4 to 40 hex digits, got {text[:60]!r}")
    return text.lower()


def _config(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from pipeline import config

    rows = config.describe(load_config(args, environ), environ)
    width = max(len(key) for key, _, _ in rows)
    value_width = min(48, max(len(value) for _, value, _ in rows))
    for key, value, source in rows:
        print(f"{key:<{width}}  {value:<{value_width}}  {source}")
    return 0


def _doctor(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from pipeline import doctor
    from pipeline.doctor import local

    areas = [area for area in DOCTOR_AREAS if not args.only or area in args.only]
    findings = doctor.run(areas, lambda: load_config(args, environ), environ)
    print(doctor.to_json(findings) if args.json else "\n".join(doctor.render(findings)))
    if any(f.check == local.LOADS and f.status is doctor.Status.FAIL for f in findings):
        return EXIT_BAD_INPUT
    return doctor.exit_code(findings)


def _cluster(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from pipeline.cluster import rebuild

    config = load_config(args, environ)
    return rebuild.run(args.cluster_step, config=config, environ=environ, node=getattr(args, "node", None),
                       dry_run=args.dry_run, force=getattr(args, "force", False),
                       redeploy=cluster_redeployer(config))


def cluster_redeployer(config) -> Callable[[str, Callable[[str], None]], str]:
    """Return the deploy the cluster's redeploy step runs: (admin kubeconfig text, say) -> what happened."""
    def redeploy(kubeconfig_text: str, say: Callable[[str], None]) -> str:
        from pipeline import runner, services
        from pipeline.cluster.redeploy import backup_records

        target = services.cluster_target(config, kubeconfig_text, say)
        return runner.redeploy(config, target, backup=lambda: backup_records(config), say=say, progress=say)
    return redeploy


def _missing_subcommand(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    raise BadInput(f"'pinotage {args.command_name}' needs an action", hint=f"see 'pinotage {args.command_name} --help'")
