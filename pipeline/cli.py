"""The ``pinotage`` command: argparse subcommands and the one error boundary.

Heavy libraries (docker, kubernetes, jenkins, jenkins_jobs, git) are imported
inside the handlers that need them, never at module level, so ``--help`` and
``config`` start fast.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Callable, Mapping

from pipeline import __version__, boundary, redact
from pipeline.cluster import rebuild as cluster_rebuild  # the step tables only: light to import
from pipeline.errors import EXIT_BAD_INPUT, BadInput, PinotageError

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

    name, build_url = environ.get("STAGE_NAME") or args.handler.__name__.lstrip("_"), environ.get("BUILD_URL", "")
    mark_stage(args.state, name, "running", build_url)
    code = args.handler(args, environ)
    mark_stage(args.state, name, "passed", build_url)
    return code


def build_parser() -> argparse.ArgumentParser:
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
        sub.set_defaults(handler=handler)
        return sub

    def with_state(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--state", metavar="FILE", default="pinotage-state.json",
                         help="the JSON hand-off between Jenkins stages (default: %(default)s)")
        sub.set_defaults(marks_stage=True)

    add("config", _config, "print the effective configuration and where each value came from")

    sub = add("context", _context, "print the build context and the plan for this event")
    sub.add_argument("--json", action="store_true", help="print JSON")
    with_state(sub)

    sub = add("run", _run, "build, smoke test and, on the default branch, push and deploy")
    sub.add_argument("--dry-run", action="store_true", help="print the plan and touch nothing")

    for name, handler, help_text in (
            ("lookup", _lookup, "ask the registry for this commit's image (default branch; needs the registry login)"),
            ("build", _build, "build the image (skipped when the lookup found this commit in the registry)"),
            ("smoke", _smoke, "run the built image and check its health path and first slide"),
            ("push", _push, "push the image to the registry and record its digest")):
        with_state(add(name, handler, help_text))
    # --state only records the stage, so that a failure status can name it.
    with_state(add("audit", _audit, "audit the app's production npm dependencies and Pinotage's locked Python ones"
                   " for published advisories (audit.fail_on, audit.unreachable)"))
    with_state(add("deploy", _deploy, "deploy the pushed image to the target, gated: a failed rollout rolls back"))
    with_state(add("gate", _gate, "check that the release the deploy stage gated is still the live one"))

    sub = add("rollback", _rollback, "return to the previous (or a named) successful deploy")
    sub.add_argument("--to", metavar="COMMIT", type=_commit_prefix,
                     help="the commit (or a prefix of 4 or more hex digits) to return to"
                          " (default: the previous deploy)")

    sub = add("history", _history, "print the deploy ledger")
    sub.add_argument("--json", action="store_true", help="print JSON")
    sub.add_argument("--limit", type=int, default=20, help="newest N records (default: %(default)s)")
    sub.add_argument("--package", metavar="NAME[@VERSION]",
                     help="only the deploys whose image shipped this npm package (at this version)")

    sub = add("sbom", _sbom, "print or save the SBOM of a deployed revision (default: the newest deploy)")
    sub.add_argument("revision", nargs="?", metavar="REVISION", help="the target's revision, or a commit (7+ hex)")
    sub.add_argument("-o", "--output", metavar="FILE", help="save it to FILE instead of printing it")

    add("diff", _diff, "show how the live Deployment differs, in the fields Pinotage manages, from k8s/ with the"
        " image the ledger last deployed (exit 0: no drift, 1: drift, 2: bad input)")

    sub = add("status", _status, "report a commit status to GitHub (needs PINOTAGE_GITHUB_TOKEN)")
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
    sub.set_defaults(handler=_github_hook)
    sub.add_argument("--url", help="where GitHub delivers (default: jenkins.url + github-webhook/)")
    sub.add_argument("--dry-run", action="store_true", help="show what would change and write nothing")

    sub = add("doctor", _doctor, "check every link of the production loop, read-only: ok, FAIL with a hint, or skipped")
    sub.add_argument("--json", action="store_true", help="print JSON")
    sub.add_argument("--only", action="append", metavar="AREA", choices=DOCTOR_AREAS,
                     help=f"check only this area (repeatable): {', '.join(DOCTOR_AREAS)}")

    jobs = add("jobs", _missing_subcommand, "render, check, diff and update the Jenkins jobs in jobs/")
    jobs.set_defaults(command_name="jobs")
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


def load_config(args: argparse.Namespace, environ: Mapping[str, str]):
    """Load the configuration named by the common flags."""
    from pipeline import config

    return config.load(environ=environ, config_path=args.config, overrides=args.overrides, profile=args.profile)


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

    return rebuild.run(args.cluster_step, config=load_config(args, environ), environ=environ,
                       node=getattr(args, "node", None), dry_run=args.dry_run, force=getattr(args, "force", False))


def _missing_subcommand(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    raise BadInput(f"'pinotage {args.command_name}' needs an action", hint=f"see 'pinotage {args.command_name} --help'")


# --- the release: context, run, deploy, gate, rollback, history, status -----------

def _context(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    import json

    from pipeline import context as ctx
    from pipeline.state import write_state

    config = load_config(args, environ)
    context = ctx.read(environ, default_branch=config.default_branch)
    plan = ctx.plan_for(context, config.default_branch)
    # Replaced, not merged: Jenkins reuses workspaces, and an earlier build's image must not carry over.
    write_state(args.state, replace=True, context=context)
    if args.json:
        print(json.dumps({"context": ctx.to_json(context), "plan": {"steps": list(plan.steps),
                          "reason": plan.reason, "reads_credentials": plan.reads_credentials}}, indent=2))
    else:
        _print_rows(ctx.describe(context, plan))
    return 0


def _run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from pipeline import context as ctx
    from pipeline import runner, services

    config = load_config(args, environ)
    context = ctx.read(environ, default_branch=config.default_branch)
    plan = ctx.plan_for(context, config.default_branch)
    if args.dry_run:
        _print_rows(ctx.describe(context, plan) + runner.dry_run(config, context, plan))
        return 0
    outcome = runner.run(config, context, plan, services.services_for(config, plan, context, environ))
    for line in outcome.summary():
        print(line)
    return 0


def _deploy(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from pipeline import runner, services
    from pipeline.state import write_state

    config, context, image = _release_stage(args, environ)
    result = runner.deploy(config, context, image, services.services_for(config, _plan(config, context), context,
                                                                          environ))
    deployment = result.deployment
    if deployment is None:
        print(f"deployed: no ({result.note})")
        if result.url:
            print(f"url:      {result.url}")
        return 0
    write_state(args.state, deployment=deployment)
    print(f"deployed: {image.pinned} to {deployment.target} revision {deployment.revision}")
    if deployment.url:
        print(f"url:      {deployment.url}")
    return 0


def _gate(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from pipeline import runner, services

    config, context, image = _release_stage(args, environ)
    runner.gate_stage(image, services.services_for(config, _plan(config, context), context, environ))
    print(f"gate: {image.pinned} ({context.short_commit}) is live on {config.deploy.target}")
    return 0


def _rollback(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from pipeline import runner, services
    from pipeline.shell import print_progress

    config = load_config(args, environ)
    target = services.make_target(config, environ, print_progress)
    deployment, record = runner.rollback(config, target, to_commit=args.to)
    print(f"rolled back: {record.commit[:12]} ({record.image}) is live on {deployment.target}")
    if deployment.url:
        print(f"url:      {deployment.url}")
    return 0


def _history(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    import json

    from pipeline import ledger, sbom, services
    from pipeline.shell import print_progress

    if args.limit < 1:
        raise BadInput(f"--limit: expected a number above 0, got {args.limit}")
    name, version = sbom.parse_package(args.package) if args.package else ("", "")
    config = load_config(args, environ)
    target = services.make_target(config, environ, print_progress)
    every = target.ledger().records()
    records, live, notes = every, None, []
    if args.package:
        records = [r for r in records if sbom.ships(r.packages, name, version)]
    records = records[-args.limit:]
    try:
        live = target.deployed()
        notes = ledger.live_note(every, live)
    except PinotageError as e:  # the ledger is still worth showing when the target does not answer
        print(f"pinotage: warning: live release not known ({e.message})", file=sys.stderr)
    if args.json:
        print(json.dumps([{**ledger.record_to_json(r), "live": r is ledger.live_record(records, live)}
                          for r in records], indent=2))
    elif not records:
        print(f"no deploy shipped {args.package}" if args.package else "no deploys recorded yet")
    else:
        lines = ledger.table(records, live=live)
        if args.package:  # which version each deploy shipped
            width = max(len(line) for line in lines)
            lines = [f"{lines[0]:<{width}}  shipped"] + [
                f"{line:<{width}}  {', '.join(sbom.shipped_as(r.packages, name))}"
                for line, r in zip(lines[1:], records)]
        for line in lines + notes:
            print(line)
    return 0


def _sbom(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from pipeline import sbom, services
    from pipeline.shell import print_progress

    config = load_config(args, environ)
    record = sbom.pick(services.make_target(config, environ, print_progress).ledger().records(), args.revision)
    sbom.write_out(sbom.load(config, record.sbom), args.output)
    if args.output:
        print(f"sbom:     {record.sbom} of {record.commit[:12]} (revision {record.revision or '-'})"
              f" saved to {args.output}", file=sys.stderr)
    return 0


def _diff(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from pipeline import drift, ledger, services
    from pipeline.shell import print_progress
    from pipeline.targets.kubernetes.target import FIELD_MANAGER

    config = load_config(args, environ)
    if config.deploy.target != "kubernetes":
        raise BadInput(f"deploy.target: 'pinotage diff' compares with a cluster, got {config.deploy.target!r}",
                       hint="--profile production, or --set deploy.target=kubernetes")
    target = services.make_target(config, environ, print_progress)
    record = ledger.last_deployed(target.ledger().records())
    if record is None:
        raise BadInput("the ledger holds no successful deploy: nothing to compare the cluster with",
                       hint="see 'pinotage history'")
    what = f"deployment/{target.deployment_name} in namespace {target.namespace}"
    live, would = target.would_apply(ledger.release_of(record))
    if live is None:
        print(f"{what}: missing, though the ledger last deployed {record.image} ({record.commit[:12]})")
        return 1
    diffs = drift.differences(live, would, FIELD_MANAGER)
    for line in drift.report(what, diffs):
        print(line)
    return 1 if diffs else 0


def _status(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from pipeline import context as ctx
    from pipeline import services
    from pipeline.state import failure_text, read_state

    if (args.state_name is None) == (not args.build_result):
        raise BadInput("status: give either STATE or --build-result")
    if args.build_result:
        passed = environ.get("PINOTAGE_BUILD_RESULT", "") == "SUCCESS"
        args.state_name = "success" if passed else "failure"
        args.description = args.description or (SUCCESS_TEXT if passed else "")
    try:
        config = load_config(args, environ)
        context = ctx.read(environ, default_branch=config.default_branch)
        description = args.description
        if args.state_name == "failure" and args.state:
            where = failure_text(read_state(args.state), environ.get("BUILD_URL", ""))
            description = f"{where}: {description}" if description else where
        slug = services.report_status(config, context, environ, args.state_name, description, required=True)
    except PinotageError as e:
        if not args.best_effort:
            raise
        print(f"pinotage: warning: status {args.state_name} not reported: {e.message}", file=sys.stderr)
        return 0
    print(f"status: {args.state_name} reported to {slug} for {context.short_commit}")
    return 0


SUCCESS_TEXT = "built, smoke-tested, deployed and passed the rollout gate"


def _github_hook(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from pipeline import github

    for line in github.hook_command(load_config(args, environ), environ, url=args.url, dry_run=args.dry_run):
        print(line)
    return 0


# --- the image stages: lookup, build, smoke, push ---------------------------------

def _lookup(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from pipeline import runner, services
    from pipeline.state import write_state

    config, context, _ = _stage_input(args, environ)
    plan = _plan(config, context)
    found = runner.lookup_stage(config, context, plan, services.services_for(config, plan, context, environ))
    if found is None:
        print(f"lookup:   {config.image_name()} holds no image of {context.short_commit}: the build stage builds it")
        return 0
    write_state(args.state, context=context, image=found)
    print(f"lookup:   {found.pinned} is already in the registry: build, smoke test and push are skipped")
    return 0


def _build(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from pipeline import runner, services
    from pipeline.state import write_state

    config, context, state = _stage_input(args, environ)
    image = runner.build_stage(config, context, services.services_for(config, _plan(config, context), context, environ),
                               found=state.image)
    write_state(args.state, context=context, image=image)
    if not image.built:
        print(f"built:    no ({image.pinned} is already in the registry: build and push are skipped)")
    else:
        print(f"built:    {image.ref}" + (f" (also {', '.join(image.tags[1:])})" if len(image.tags) > 1 else ""))
    return 0


def _smoke(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from pipeline import runner, services

    config, context, image = _built_image(args, environ)
    if runner.smoke_stage(config, image, services.services_for(config, _plan(config, context), context, environ)):
        print(f"smoke:    {image.ref} passed")
    else:
        print(f"smoke:    skipped ({image.pinned} was already in the registry, smoke-tested when it was built)")
    return 0


def _push(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from pipeline import runner, services
    from pipeline.state import write_state

    config, context, image = _built_image(args, environ)
    plan = _plan(config, context)
    image, pushed = runner.push_stage(config, context, plan, image, services.services_for(config, plan, context, environ))
    if not pushed:
        print(f"pushed:   no ({image.pinned} is already in the registry)")
        return 0
    write_state(args.state, image=image)
    print(f"pushed:   {image.pinned}")
    return 0


def _audit(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from pipeline import audit

    config = load_config(args, environ)
    report = audit.gate(config, environ, print)
    print(f"audit:    passed ({len(report.findings)} advisories, none at or above {config.audit.fail_on}"
          + (f"; {len(report.unreachable)} service(s) not reached" if report.unreachable else "") + ")")
    return 0


def _stage_input(args: argparse.Namespace, environ: Mapping[str, str]):
    """Read the configuration, the state file and the build context it hands on."""
    from pipeline import context as ctx
    from pipeline.state import read_state

    config = load_config(args, environ)
    state = read_state(args.state)
    return config, ctx.for_stage(state.context, environ, default_branch=config.default_branch), state


def _built_image(args: argparse.Namespace, environ: Mapping[str, str]):
    """Read the configuration, the build context and the image the build stage wrote to the state file."""
    config, context, state = _stage_input(args, environ)
    if state.image is None or not state.image.name:
        raise BadInput(f"{args.state}: no built image in the state file", hint="run 'pinotage build --state FILE' first")
    return config, context, state.image


def _plan(config, context):
    from pipeline import context as ctx

    return ctx.plan_for(context, config.default_branch)


def _release_stage(args: argparse.Namespace, environ: Mapping[str, str]):
    """Read what the deploy and gate stages need: config, context, and the pushed image."""
    from pipeline.errors import DeployRefused

    config, context, state = _stage_input(args, environ)
    plan = _plan(config, context)
    if "deploy" not in plan:
        raise DeployRefused(f"this {context.event} build does not deploy: {plan.reason}")
    image = state.image
    if image is None or not image.digest:
        raise BadInput(f"{args.state}: no pushed image (with a digest) in the state file",
                       hint="run 'pinotage push --state FILE' first")
    if image.commit and image.commit != context.commit:
        raise BadInput(f"{args.state}: the image is of commit {image.commit[:12]}, this build is of "
                       f"{context.short_commit}", hint="the state file is from another build; delete it")
    return config, context, image


def _print_rows(rows: list[tuple[str, str]]) -> None:
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
