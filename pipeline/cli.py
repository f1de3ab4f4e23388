"""The ``pinotage`` command: argparse subcommands and the one error boundary.

Heavy libraries (docker, kubernetes, jenkins, jenkins_jobs, git) are imported
inside the handlers that need them, never at module level, so ``--help`` and
``config`` start fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Mapping

from pipeline import __version__
from pipeline.errors import EXIT_BAD_INPUT, NotAvailableYet, PinotageError

Handler = Callable[[argparse.Namespace, Mapping[str, str]], int]

CLUSTER_STEPS = ("box", "up", "init", "join", "network", "label", "smoke", "redeploy", "backup")
CLUSTER_NODE_STEPS = ("drain", "remove")


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
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return args.handler(args, environ)
    except PinotageError as e:
        for line in e.lines():
            print(f"pinotage: error: {line}", file=sys.stderr)
        if e.hint:
            print(f"  hint: {e.hint}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("pinotage: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    """Describe every subcommand and its options (also read by 'pinotage jobs check')."""
    parser = _Parser(
        prog="pinotage",
        description="Push-to-deploy for teams that run Jenkins and their own kubeadm cluster.",
        epilog="Configuration precedence: defaults < pinotage.yaml < PINOTAGE_* environment < flags.",
    )
    parser.add_argument("--version", action="version", version=f"pinotage {__version__}")
    common = _Parser(add_help=False)
    common.add_argument("-c", "--config", metavar="FILE", help="configuration file (default: ./pinotage.yaml)")
    common.add_argument("-s", "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one setting, e.g. --set deploy.target=kubernetes (repeatable)")
    subs = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, handler: Handler, help_text: str, *, pending: str = "") -> _Parser:
        if pending:
            help_text = f"{help_text} [not available yet: {pending}]"
        sub = subs.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    def with_state(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--state", metavar="FILE", default="pinotage-state.json",
                         help="the JSON hand-off between Jenkins stages (default: %(default)s)")

    add("config", _config, "print the effective configuration and where each value came from")

    sub = add("context", _pending("the run issue"), "print the build context and the plan for this event",
              pending="the run issue")
    sub.add_argument("--json", action="store_true", help="print JSON")
    with_state(sub)

    sub = add("run", _pending("the run issue"), "build, smoke test and, on the default branch, push and deploy",
              pending="the run issue")
    sub.add_argument("--dry-run", action="store_true", help="print the plan and touch nothing")

    for name, help_text in (("build", "build the image (skipped when the registry has this commit)"),
                            ("smoke", "run the built image and check its health path and first slide"),
                            ("push", "push the image to the registry and record its digest")):
        with_state(add(name, _pending("the image issue"), help_text, pending="the image issue"))
    for name, help_text in (("deploy", "deploy the pushed image to the target"),
                            ("gate", "wait for the rollout; roll back by itself when it fails")):
        with_state(add(name, _pending("the run issue"), help_text, pending="the run issue"))

    sub = add("rollback", _pending("the run issue"), "return to the previous (or a named) successful deploy",
              pending="the run issue")
    sub.add_argument("--to", metavar="COMMIT", help="the commit to return to (default: the previous deploy)")

    sub = add("history", _pending("the run issue"), "print the deploy ledger", pending="the run issue")
    sub.add_argument("--json", action="store_true", help="print JSON")
    sub.add_argument("--limit", type=int, default=20, help="newest N records (default: %(default)s)")

    sub = add("status", _pending("the run issue"), "report a commit status to GitHub", pending="the run issue")
    sub.add_argument("state_name", choices=("pending", "success", "failure", "error"), metavar="STATE")
    sub.add_argument("--description", default="", help="a short text shown beside the status")

    jobs = add("jobs", _missing_subcommand, "render, check, diff and update the Jenkins jobs in jobs/")
    jobs_subs = jobs.add_subparsers(title="jobs commands", metavar="ACTION", parser_class=_Parser)
    for name, help_text in (("render", "write the job XML to a folder, offline"),
                            ("check", "check the jobs and the Jenkinsfile against the CLI and the credential rules"),
                            ("diff", "show how the live jobs differ from jobs/"),
                            ("update", "create or reconfigure only the jobs that differ")):
        sub = jobs_subs.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(handler=_jobs_action, jobs_action=name)
        sub.add_argument("--jobs-dir", default="jobs", help="the JJB YAML folder (default: %(default)s)")
        if name == "render":
            sub.add_argument("-o", "--output", default="build/jobs", help="output folder (default: %(default)s)")
        if name == "update":
            sub.add_argument("--delete-old", action="store_true",
                             help="also delete Pinotage-managed jobs that have left jobs/")

    cluster = add("cluster", _missing_subcommand, "rebuild the kubeadm cluster, or run one step of it")
    cluster_subs = cluster.add_subparsers(title="cluster steps", metavar="STEP", parser_class=_Parser)
    for name in ("rebuild",) + CLUSTER_STEPS + CLUSTER_NODE_STEPS:
        help_text = f"{name} [not available yet: the cluster issue]"
        sub = cluster_subs.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(handler=_pending("the cluster issue"))
        sub.add_argument("--dry-run", action="store_true", help="print the commands and run none")
        if name in CLUSTER_NODE_STEPS:
            sub.add_argument("node", metavar="NODE")
    return parser


def load_config(args: argparse.Namespace, environ: Mapping[str, str]):
    """Load the configuration named by the common flags."""
    from pipeline import config

    return config.load(environ=environ, config_path=args.config, overrides=args.overrides)


def _config(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from pipeline import config

    rows = config.describe(load_config(args, environ), environ)
    width = max(len(key) for key, _, _ in rows)
    value_width = min(48, max(len(value) for _, value, _ in rows))
    for key, value, source in rows:
        print(f"{key:<{width}}  {value:<{value_width}}  {source}")
    return 0


def _jobs_action(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from pipeline import jobs

    return jobs.command(args.jobs_action, jobs_dir=args.jobs_dir, output=getattr(args, "output", ""),
                        delete_old=getattr(args, "delete_old", False), config=load_config(args, environ),
                        environ=environ, parser=build_parser())


def _pending(issue: str) -> Handler:
    def handler(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
        raise NotAvailableYet(f"this command is not available yet ({issue} fills it in)",
                              hint="see 'pinotage --help' for what works today")
    return handler


def _missing_subcommand(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    raise NotAvailableYet("choose an action; see --help")
