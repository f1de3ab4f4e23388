"""The handlers of the release commands: context, run, the Jenkins stages, rollback, the ledger, status.

Each one reads its input (configuration, state file, build context), calls the runner or the
wiring in ``services``, writes what the next stage needs to the state file and prints one line
per fact. Heavy libraries are imported inside each handler.
"""

from __future__ import annotations

import argparse
import sys
from typing import Mapping

from pipeline.cli.common import load_config
from pipeline.errors import BadInput, PinotageError


def context_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    import json

    from pipeline import context as build_context
    from pipeline.state import write_state

    config = load_config(args, environ)
    context = build_context.read(environ, default_branch=config.default_branch)
    plan = build_context.plan_for(context, config.default_branch, previews=config.preview.enabled)
    # Replaced, not merged: Jenkins reuses workspaces, and an earlier build's image must not carry over.
    write_state(args.state, replace=True, context=context)
    if args.json:
        print(json.dumps({"context": build_context.to_json(context), "plan": {"steps": list(plan.steps),
                          "reason": plan.reason, "reads_credentials": plan.reads_credentials}}, indent=2))
    else:
        _print_rows(build_context.describe(context, plan))
    return 0


def run_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from pipeline import context as build_context
    from pipeline import runner, services

    config = load_config(args, environ)
    context = build_context.read(environ, default_branch=config.default_branch)
    plan = build_context.plan_for(context, config.default_branch, previews=config.preview.enabled)
    if args.preview:
        plan = build_context.local_preview_plan(context)
    if args.dry_run:
        _print_rows(build_context.describe(context, plan) + dry_run(config, context, plan))
        return 0
    outcome = runner.run(config, context, plan, services.services_for(config, plan, context, environ))
    for line in outcome.summary():
        print(line)
    return 0


def deploy_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
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


def gate_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from pipeline import runner, services

    config, context, image = _release_stage(args, environ)
    runner.gate_stage(image, services.services_for(config, _plan(config, context), context, environ))
    print(f"gate: {image.pinned} ({context.short_commit}) is live on {config.deploy.target}")
    return 0


def rollback_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from pipeline import runner, services
    from pipeline.shell import print_progress

    config = load_config(args, environ)
    target = services.make_target(config, environ, print_progress)
    deployment, record = runner.rollback(config, target, to_commit=args.to)
    print(f"rolled back: {record.commit[:12]} ({record.image}) is live on {deployment.target}")
    if deployment.url:
        print(f"url:      {deployment.url}")
    return 0


def history_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
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


def sbom_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from pipeline import sbom, services
    from pipeline.shell import print_progress

    config = load_config(args, environ)
    record = sbom.pick(services.make_target(config, environ, print_progress).ledger().records(), args.revision)
    sbom.write_out(sbom.load(config, record.sbom), args.output)
    if args.output:
        print(f"sbom:     {record.sbom} of {record.commit[:12]} (revision {record.revision or '-'})"
              f" saved to {args.output}", file=sys.stderr)
    return 0


def diff_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
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


def status_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from pipeline import context as build_context
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
        context = build_context.read(environ, default_branch=config.default_branch)
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


def github_hook_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from pipeline import github

    for line in github.hook_command(load_config(args, environ), environ, url=args.url, dry_run=args.dry_run):
        print(line)
    return 0


def lookup_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
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


def build_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
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


def smoke_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from pipeline import runner, services

    config, context, image = _built_image(args, environ)
    if runner.smoke_stage(config, image, services.services_for(config, _plan(config, context), context, environ)):
        print(f"smoke:    {image.ref} passed")
    else:
        print(f"smoke:    skipped ({image.pinned} was already in the registry, smoke-tested when it was built)")
    return 0


def push_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
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


def audit_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from pipeline import audit

    config = load_config(args, environ)
    report = audit.gate(config, environ, print)
    print(f"audit:    passed ({len(report.findings)} advisories, none at or above {config.audit.fail_on}"
          + (f"; {len(report.unreachable)} service(s) not reached" if report.unreachable else "") + ")")
    return 0


def _stage_input(args: argparse.Namespace, environ: Mapping[str, str]):
    """Read the configuration, the state file and the build context it hands on."""
    from pipeline import context as build_context
    from pipeline.state import read_state

    config = load_config(args, environ)
    state = read_state(args.state)
    return config, build_context.for_stage(state.context, environ, default_branch=config.default_branch), state


def _built_image(args: argparse.Namespace, environ: Mapping[str, str]):
    """Read the configuration, the build context and the image the build stage wrote to the state file."""
    config, context, state = _stage_input(args, environ)
    if state.image is None or not state.image.name:
        raise BadInput(f"{args.state}: no built image in the state file", hint="run 'pinotage build --state FILE' first")
    return config, context, state.image


def _plan(config, context):
    from pipeline import context as build_context

    return build_context.plan_for(context, config.default_branch, previews=config.preview.enabled)


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


def dry_run(config, context, plan) -> list[tuple[str, str]]:
    """Describe what each step of the plan would do, touching nothing (no engine, no secret, no network)."""
    from pipeline.image import tags_for

    name = config.image_name()
    rows = [("image", f"{name}:" + ", ".join(tags_for(context, config)))]
    if "push" in plan:
        rows.append(("registry", f"{config.registry.url} (skips build and push when it holds this commit)"))
    if "deploy" in plan:
        where = (f"http://{config.deploy.host_ip}:{config.deploy.host_port}/ on the local Docker engine"
                 if config.deploy.target == "docker" else f"namespace {config.deploy.namespace} on the cluster")
        rows.append(("deploy", f"{config.deploy.target}: {where}; an older commit than the live one is refused"))
        rows.append(("ledger", "one record for the attempt, kept by the target ('pinotage history')"))
    if "serve" in plan:
        rows.append(("preview", f"http://{config.deploy.host_ip}:{config.preview.local_port}/ in container"
                                f" {config.app}-preview, beside the app on port {config.deploy.host_port}"))
    if "status" in plan:
        rows.append(("status", "pending, then success or failure, when PINOTAGE_GITHUB_TOKEN is set"))
    rows.append(("dry run", "nothing was built, pushed or deployed"))
    return rows
