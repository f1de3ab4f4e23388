"""Compose the phases for ``pinotage run``: the only module that calls them in order.

Timing and logging wrap the phases (``Timer.phase``); the phases themselves only do their one
job. The plan (``context.plan_for``) says which phases run: a branch or pull request builds and
smoke-tests with no credential read at all; the default branch also pushes, deploys through the
target (whose deploy includes the rollout gate), records the attempt in the target's ledger and
reports the commit status. The runner is the ledger's only writer: one record per deploy or
rollback attempt (``_attempt``), with every phase's duration; a target only stores records.

A run that deploys a build asks the target to stage the release for the smoke test
(``Target.stage``: the local target starts the release's own container, and the smoke test checks
that one instead of a sandboxed one); the push still waits for the smoke test, and only the deploy
routes anything to what was staged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Callable, Iterator, Mapping

from pipeline import config as config_module
from pipeline import ledger
from pipeline.context import BuildContext, Plan
from pipeline.errors import DeployFailed, DeployRefused, PinotageError
from pipeline.services import Services
from pipeline.shell import Progress, print_phase, print_progress
from pipeline.state import Deployment, Image, Release
from pipeline.targets import Staged, Target


class Timer:
    """Time phases and report each one's start, end and duration."""

    def __init__(self, say: Progress = print_phase, clock: Callable[[], float] = time.monotonic):
        self.say = say
        self.clock = clock
        self.phases_s: dict[str, float] = {}
        self.failed = ""  # the innermost phase that failed, which a failure status names

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.say(f"{name}: started")
        started = self.clock()
        try:
            yield
        except BaseException as e:
            took = self.clock() - started
            self.phases_s[name] = round(took, 3)
            self.failed = self.failed or name
            self.say(f"{name}: failed after {took:.1f} s ({_short(e)})")
            raise
        took = self.clock() - started
        self.phases_s[name] = round(took, 3)
        self.say(f"{name}: done in {took:.1f} s")


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a run did: the summary printed at its end."""

    context: BuildContext
    plan: Plan
    image: Image | None = None
    built: bool = False
    pushed: bool = False
    deployment: Deployment | None = None
    record: ledger.Record | None = None
    phases_s: Mapping[str, float] = dataclasses.field(default_factory=dict)
    note: str = ""  # why nothing was deployed, when nothing was
    url: str = ""  # where the release is served (also when it was live already)

    def summary(self) -> list[str]:
        """Return the closing lines: what was built, pushed and deployed, and the URL."""
        lines = [f"{self.context.event} {self.context.branch or '(detached)'} @ {self.context.short_commit}: "
                 + " → ".join(self.plan.steps)]
        if self.image is not None:
            lines.append(f"built:    {self.image.ref}" if self.built
                         else f"built:    no ({self.image.ref} was already in the registry)")
        if "push" in self.plan:
            lines.append(f"pushed:   {self.image.pinned}" if self.pushed
                         else f"pushed:   no ({self.image.pinned if self.image and self.image.digest else '-'} already there)")
        else:
            lines.append("pushed:   no (this event does not push)")
        if "deploy" in self.plan:
            if self.deployment is not None:
                lines.append(f"deployed: {self.deployment.target} revision {self.deployment.revision}"
                             + (f", replacing {self.deployment.previous.commit[:12]}" if self.deployment.previous else ""))
            else:
                lines.append(f"deployed: no ({self.note or 'nothing to do'})")
        elif "serve" in self.plan or "preview" in self.plan:
            lines.append(f"deployed: no ({self.note or 'a preview of a pull request'})")
        else:
            lines.append("deployed: no (this event does not deploy)")
        if self.phases_s:
            lines.append("took:     " + ", ".join(f"{k} {v:.1f} s" for k, v in self.phases_s.items()))
        if self.url:
            lines.append(f"url:      {self.url}")  # last, so scripts/demo ends with it
        return lines


@dataclasses.dataclass(frozen=True)
class DeployResult:
    """What a deploy did: the deployment and its ledger record (both None when the image was live
    already), why nothing was deployed, and the URL the release is served at ("" when the target
    does not know it)."""

    deployment: Deployment | None
    record: ledger.Record | None
    note: str = ""
    url: str = ""


def run(config: config_module.Config, context: BuildContext, plan: Plan, services: Services, *,
        say: Progress = print_phase, progress: Progress = print_progress) -> Outcome:
    """Run the plan's phases in order; raise the first failure after reporting it.

    The steps are the Jenkins stages' own functions (``lookup_stage`` … ``push_stage``), so a
    laptop's ``pinotage run`` and a Jenkins build decide the same way.
    """
    timer = Timer(say)
    image: Image | None = None
    built = pushed = False
    staged: Staged | None = None
    ledger_id = ledger.new_id()  # the deploy's record; a release staged before its push carries it too
    result = DeployResult(deployment=None, record=None)
    _status(services, "pending", f"pinotage: {' → '.join(plan.steps)}", say)
    if "deploy" in plan:
        services.prepare_target()
    try:
        if "push" in plan:
            with timer.phase("lookup"):
                image = lookup_stage(config, context, plan, services, progress=progress)
        if image is None:
            with timer.phase("build"):
                image = build_stage(config, context, services, progress=progress)
                built = True
            with timer.phase("smoke"):
                if "deploy" in plan:
                    staged = _stage(context, image, services, ledger_id, progress)
                smoke_stage(config, image, services, staged=staged, progress=progress)
            if "push" in plan:
                with timer.phase("push"):
                    image, pushed = push_stage(config, context, plan, image, services, progress=progress)
        if "deploy" in plan:
            result = _deploy(config, context, image, services, timer, progress, ledger_id=ledger_id, built_now=built)
        if "serve" in plan:
            with timer.phase("serve"):
                result = DeployResult(deployment=None, record=None, note="served as a preview, beside the app",
                                      url=services.local_preview.serve(services.client(), config, image,
                                                                       progress=progress))
        if "preview" in plan:
            with timer.phase("preview"):
                result = DeployResult(deployment=None, record=None,
                                      url=preview_stage(config, context, image, services, progress=progress))
    except PinotageError as e:
        where = f"{timer.failed} failed: " if timer.failed else ""
        _status(services, "failure", where + _short(e), say)
        raise
    finally:
        if staged is not None:
            staged.discard()  # a no-op once the deploy took it
    if "preview" in plan:
        _status(services, "success", f"preview: {result.url}", say, target_url=result.url)
    else:
        _status(services, "success", _success_text(plan, result), say)
    return Outcome(context=context, plan=plan, image=image, built=built, pushed=pushed, deployment=result.deployment,
                   record=result.record, phases_s=dict(timer.phases_s), note=result.note, url=result.url)


# --- one function per Jenkins stage; ``run`` calls the same ones ----------------

def in_registry(image: Image | None) -> bool:
    """Tell whether the image was found in the registry (not built here): build, smoke and push skip it."""
    return image is not None and not image.built and bool(image.digest)


def lookup_stage(config: config_module.Config, context: BuildContext, plan: Plan, services: Services, *,
                 progress: Progress = print_progress) -> Image | None:
    """Return this commit's image if the registry holds it already (a build that pushes only)."""
    if "push" not in plan:
        # Only a build that will push reads the registry login, and only it may skip on the registry's word.
        raise DeployRefused(f"this {context.event} build does not push: {plan.reason}")
    found = services.phases.find_pushed(config, context, services.credentials(), progress=progress)
    if found is not None:
        progress(f"the registry already holds {found.pinned}: build, smoke test and push are skipped")
    return found


def build_stage(config: config_module.Config, context: BuildContext, services: Services, *,
                found: Image | None = None, progress: Progress = print_progress) -> Image:
    """Build this commit's image, unless ``found`` (the lookup's answer) is it: then return that."""
    if in_registry(found) and found.commit == context.commit:
        return found
    client = services.client()  # no engine: nothing else is worth doing
    if services.make_sbom is None:
        return services.phases.build(client, config, context, progress=progress)
    sbom = services.make_sbom()
    progress(f"sbom: {len(sbom.packages)} shipped packages, {sbom.digest} ({sbom.path})"
             + (", kept from a build of the same lockfile" if sbom.reused else ""))
    return services.phases.build(client, config, context, progress=progress, sbom=sbom)


def smoke_stage(config: config_module.Config, image: Image, services: Services, *, staged: Staged | None = None,
                progress: Progress = print_progress) -> bool:
    """Smoke-test a built image; return False when it came from the registry (tested when it was built).

    ``staged`` is the release's own container, started by the target: it is checked in place of
    a container in the smoke test's sandbox (a run that deploys trusts its commit).
    """
    if in_registry(image):
        return False
    if staged is not None:
        services.phases.check(staged.container, staged.url, config, image, progress=progress)
    else:
        services.phases.smoke(services.client(), config, image, progress=progress)
    return True


def push_stage(config: config_module.Config, context: BuildContext, plan: Plan, image: Image,
               services: Services, *, progress: Progress = print_progress) -> tuple[Image, bool]:
    """Push a built image; return it with its digest, and whether it was pushed (False: it was there)."""
    if "push" not in plan:
        raise DeployRefused(f"this {context.event} build does not push: {plan.reason}")
    if in_registry(image):
        return image, False
    return services.phases.push(services.client(), config, image, services.credentials(), progress=progress), True


def preview_stage(config: config_module.Config, context: BuildContext, image: Image, services: Services, *,
                  progress: Progress = print_progress) -> str:
    """Deploy a same-repository pull request's pushed image as its preview; return the preview's URL."""
    from datetime import datetime, timezone

    from pipeline.preview import render

    if not context.same_repo_pr or not config.preview.enabled:
        raise DeployRefused(f"this {context.event} build gets no preview"
                            + (f": it comes from the fork {context.change_fork}" if context.change_fork else ""))
    cluster, manifest, pull = services.make_previews()
    name = render.name_for(config.app, context.change_id)
    url = render.url_for(config.preview.url, name, config.preview.namespace)
    deployment, service = render.bodies(manifest, app=config.app, pr=context.change_id,
                                        namespace=config.preview.namespace, image=image.pinned, commit=context.commit,
                                        url=url, now=datetime.now(timezone.utc), pull_secret=pull.name if pull else "")
    progress(f"applying the preview {name} ({image.pinned}) in namespace {config.preview.namespace}")
    cluster.apply(deployment, service, pull)
    return url


def gate_stage(image: Image, services: Services) -> Release:
    """Check that the image the deploy stage gated is still the live one; return what is live."""
    live = services.target().deployed()
    if live is None or live.image.digest != image.digest:
        now = f"{live.image.pinned} ({live.commit[:12]})" if live is not None else "nothing"
        raise DeployFailed(f"gate: {image.pinned} is not live; {now} is", rolled_back=False,
                           hint="the deploy stage failed or a newer release replaced it; see 'pinotage history'")
    return live


def deploy(config: config_module.Config, context: BuildContext, image: Image, services: Services, *,
           say: Progress = print_phase, progress: Progress = print_progress) -> DeployResult:
    """Deploy an already pushed image (the Jenkins Deploy stage) and record the attempt."""
    return _deploy(config, context, image, services, Timer(say), progress)


def rollback(config: config_module.Config, target: Target, *, to_commit: str | None, say: Progress = print_phase,
             progress: Progress = print_progress) -> tuple[Deployment, ledger.Record]:
    """Return to the previous (or the named) successful deploy and record the attempt in the target's ledger."""
    if to_commit:
        # A commit the ledger never deployed is bad input, refused before the target is asked for its Lease or lock.
        ledger.pick_rollback(target.ledger().records(), live=None, to_commit=to_commit)
    before = target.deployed()
    came_from = f"rollback from {before.commit[:12]}" if before is not None else "rollback"
    return _attempt(config, target, Timer(say), "rollback",
                    lambda: target.rollback(to_commit, progress=progress),
                    release=None, fallback=before, note=came_from)


def redeploy(config: config_module.Config, target: Target, *,
             backup: Callable[[], tuple[list[ledger.Record], str]], say: Progress = print_phase,
             progress: Progress = print_progress) -> str:
    """Deploy the app's last good release again (a rebuilt cluster's last step); return what happened.

    The release comes from the target's ledger, else from ``backup()`` (records and where they were).
    """
    from pipeline.cluster.redeploy import last_good

    records, source = target.ledger().records(), f"the cluster's ledger (configmap/pinotage-ledger-{config.app})"
    if last_good(records, config.app) is None:
        records, source = backup()
    record = last_good(records, config.app)
    if record is None:
        return f"no successful deploy of {config.app} in the cluster's ledger nor in a backup: nothing to redeploy"
    say(f"last good deploy: {record.commit[:12]} {record.image}, from {source}")
    context = BuildContext(commit=record.commit, branch=config.default_branch, event="default-branch",
                           build_url=record.build_url)
    services = Services(make_client=_refused, make_target=lambda: target, read_credentials=_refused,
                        report_status=None, is_ancestor=lambda older, newer: False, phases=None)
    result = deploy(config, context, ledger.release_of(record).image, services, say=say, progress=progress)
    if result.deployment is None:
        return result.note
    return f"redeployed {record.commit[:12]}: revision {result.deployment.revision} passed the rollout gate"


def _pinned(image: Image) -> str:
    return image.pinned if image.digest else image.ref


def _stage(context: BuildContext, image: Image, services: Services, ledger_id: str,
           progress: Progress) -> Staged | None:
    """Ask the target to stage the release before the push; a target not made yet, or not made at all, stages nothing.

    A target still being made (``Services.prepare_target``) would hold up the smoke test; one that
    fails to be made fails the deploy instead, where its error belongs.
    """
    try:
        target = services.target_if_ready()
    except PinotageError:
        return None
    if target is None:
        return None
    return target.stage(Release(image=image, commit=context.commit, build_url=context.build_url, ledger_id=ledger_id),
                        progress=progress)


def _deploy(config: config_module.Config, context: BuildContext, image: Image, services: Services, timer: Timer,
            progress: Progress, *, ledger_id: str = "", built_now: bool = False) -> DeployResult:
    target = services.target()
    # An image this run built carries this run's creation time in its labels: it cannot be live yet.
    live = None if built_now else target.deployed()
    if live is not None and live.image.digest == image.digest:
        note = f"{image.pinned} is already live"
        progress(note)
        return DeployResult(deployment=None, record=None, note=note, url=target.url())
    release = Release(image=image, commit=context.commit, build_url=context.build_url,
                      ledger_id=ledger_id or ledger.new_id())
    deployment, record = _attempt(
        config, target, timer, "deploy",
        lambda: target.deploy(release, is_ancestor=services.is_ancestor, progress=progress),
        release=release, fallback=release)
    return DeployResult(deployment=deployment, record=record, url=deployment.url)


def _attempt(config: config_module.Config, target: Target, timer: Timer, phase: str, act: Callable[[], Deployment], *,
             release: Release | None, fallback: Release | None, note: str = ""
             ) -> tuple[Deployment, ledger.Record]:
    """Run one deploy or rollback as a timed phase, then write its one ledger record; re-raise a failure.

    This is the only place a ledger record is written. ``release`` is what a deploy asks for (its
    ledger id is the record's); a rollback's release is chosen by the target, and reported back
    in the Deployment or in ``DeployFailed.attempted``. ``fallback`` is recorded when the target
    could not say (a rollback that failed before it chose). A refused rollback tried nothing and
    is not recorded; a refused deploy is.
    """
    started = ledger.now()

    def write(outcome: ledger.DeployOutcome, tried: Release | None, message: str, revision: str = "") -> ledger.Record:
        tried = tried or fallback
        entry = ledger.Record(
            id=release.ledger_id if release is not None and release.ledger_id else ledger.new_id(),
            app=config.app, commit=tried.commit if tried else "", image=_pinned(tried.image) if tried else "",
            target=target.name, build_url=tried.build_url if tried else "", started_at=started,
            finished_at=ledger.now(), outcome=outcome, phases_s=dict(timer.phases_s),
            message="; ".join(part for part in (note, message) if part), revision=revision,
            sbom=tried.image.sbom if tried else "", packages=tried.image.packages if tried else ())
        target.ledger().append(entry)
        return entry

    try:
        with timer.phase(phase):
            deployment = act()
    except DeployRefused as e:
        if release is not None:
            _keeping(e, lambda: write(ledger.DeployOutcome.REFUSED, release, e.message))
        raise
    except DeployFailed as e:
        back = e.returned_to
        if e.rolled_back and back is not None:
            message = f"rolled back to {back.commit[:12]} ({_pinned(back.image)}): {e.message}"
        else:
            message = e.message
        outcome = ledger.DeployOutcome.ROLLED_BACK if e.rolled_back else ledger.DeployOutcome.FAILED
        _keeping(e, lambda: write(outcome, e.attempted or release, message, e.revision))
        raise
    except PinotageError as e:
        _keeping(e, lambda: write(ledger.DeployOutcome.FAILED, release, e.message))
        raise
    # A target that does not say what it returned to is read back: the record names what went live.
    serving = deployment.release or release or target.deployed()
    return deployment, write(ledger.DeployOutcome.DEPLOYED, serving, "", deployment.revision)


def _keeping(error: PinotageError, write: Callable[[], object]) -> None:
    """Write a failure's ledger record; a write that fails too is added to the error, never in its place."""
    from pipeline import boundary

    try:
        write()
    except Exception as e:  # noqa: BLE001 -- whatever broke the write, the run's own error comes first
        said = e.message if isinstance(e, PinotageError) else boundary.service_failure(e) or f"{type(e).__name__}: {e}"
        error.add_note(f"and the ledger record of this failure was not written: {said}")


def _status(services: Services, state: str, description: str, say: Progress, *, target_url: str = "") -> None:
    """Report a commit status; a status GitHub refuses is shown, and never fails the release."""
    if services.report_status is None:
        return
    try:
        if target_url:  # a preview's status links to the preview rather than to the build
            services.report_status(state, description, target_url)
        else:
            services.report_status(state, description)
    except PinotageError as e:
        say(f"status: {state} not reported: {e.message}" + (f" ({e.hint})" if e.hint else ""))


def _success_text(plan: Plan, result: DeployResult) -> str:
    if result.deployment is not None:
        deployment = result.deployment
        return f"deployed to {deployment.target}" + (f" at {deployment.url}" if deployment.url else "")
    if "deploy" in plan:
        return result.note or "nothing to deploy"
    return "built, smoke-tested and pushed" if "push" in plan else "built and smoke-tested"


def _refused(*args: object) -> None:
    raise AssertionError("a redeploy builds nothing and reads no registry login")  # a bug if reached


def _short(error: BaseException) -> str:
    text = getattr(error, "message", None) or str(error) or type(error).__name__
    return text.splitlines()[0][:200]
