"""The ``pinotage preview`` handlers: deploy (a Jenkins stage), list and prune, one per action.

``deploy`` decides from the plan before it reads anything secret: a build whose plan has no
preview step (a fork's pull request, a branch, previews off) is refused with nothing read.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from datetime import datetime, timezone
from typing import Mapping

from pipeline.cli.common import load_config
from pipeline.errors import BadInput, DeployRefused

STATUS_CONTEXT = "pinotage/preview"  # the commit status that links to the preview


def deploy(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Deploy the pushed image of a same-repository pull request as its preview; link it from a commit status."""
    from pipeline import context as ctx
    from pipeline import runner, services
    from pipeline.state import read_state

    config = load_config(args, environ)
    state = read_state(args.state)
    context = ctx.for_stage(state.context, environ, default_branch=config.default_branch)
    plan = ctx.plan_for(context, config.default_branch, previews=config.preview.enabled)
    if "preview" not in plan:
        raise DeployRefused(f"this {context.event} build gets no preview: {plan.reason}",
                            hint="previews are for pull requests from branches of this repository (preview.enabled)")
    image = state.image
    if image is None or not image.digest or (image.commit and image.commit != context.commit):
        raise BadInput(f"{args.state}: no pushed image of {context.short_commit} (with a digest) in the state file",
                       hint="run 'pinotage push --state FILE' first")
    url = runner.preview_stage(config, context, image, services.services_for(config, plan, context, environ))
    print(f"preview:  {url} serves #{context.change_id} at {context.short_commit}")
    slug = services.report_status(config, context, environ, "success", f"preview of {context.short_commit}: {url}",
                                required=False, target_url=url, status_context=STATUS_CONTEXT)
    if slug:
        print(f"status:   {STATUS_CONTEXT} links to it on {slug}")
    return 0


def list_previews(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Print each preview: its PR, commit, age and URL."""
    from pipeline.preview import render

    config = load_config(args, environ)
    previews = _cluster(config, environ).list()
    if args.json:
        print(json.dumps([dataclasses.asdict(p) for p in previews], indent=2))
    elif not previews:
        print(f"no previews in namespace {config.preview.namespace}")
    else:
        for line in render.table(previews, datetime.now(timezone.utc)):
            print(line)
    return 0


def prune(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Delete every preview whose PR is no longer open (GitHub says), or that had no new commit for too long."""
    from pipeline import config as config_module
    from pipeline import github
    from pipeline.preview import render

    config = load_config(args, environ)
    token = config_module.secret("github.token", environ)
    if not token:
        raise BadInput("PINOTAGE_GITHUB_TOKEN is not set", hint="prune asks GitHub which pull requests are open")
    slug = github.repo_slug(config.github.repo, "")
    if not slug:
        raise BadInput("github.repo: not set", hint="--set github.repo=OWNER/NAME")
    cluster = _cluster(config, environ)
    previews = cluster.list()
    # every state first: a GitHub failure half-way must delete nothing
    states = {p.pr: github.pull_state(config.github.api_url, slug, p.pr, token=token) for p in previews if p.pr}
    doomed = render.stale(previews, states, now=datetime.now(timezone.utc),
                          max_age_s=config.preview.max_age_h * 3600)
    for preview, why in doomed:
        print(f"{'would delete' if args.dry_run else 'deleting'} {preview.name}: {why}")
        if not args.dry_run:
            cluster.delete(preview.name)
    print(f"pruned:   {len(doomed)} of {len(previews)} previews" + (" (dry run: nothing deleted)" if args.dry_run else ""))
    return 0


def _cluster(config, environ: Mapping[str, str]):
    from pipeline import kube
    from pipeline.preview.cluster import PreviewCluster
    from pipeline.shell import print_progress

    connected = kube.connect(config, environ)
    return PreviewCluster(connected.api, namespace=config.preview.namespace, app=config.app,
                          rollout_s=config.deadlines.rollout_s, progress=print_progress)


ACTIONS = {"deploy": deploy, "list": list_previews, "prune": prune}
