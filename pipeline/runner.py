"""Compose the phases for ``pinotage run``: the only module that calls them in order.

Timing and logging wrap the phases (``Timer.phase``); the phases themselves only do their one
job. The plan (``context.plan_for``) says which phases run: a branch or pull request builds and
smoke-tests with no credential read at all; the default branch also pushes, deploys through the
target (whose deploy includes the rollout gate), records the attempt in the target's ledger and
reports the commit status. The runner is the ledger's only writer: one record per deploy or
rollback attempt (``_attempt``), with every phase's duration; a target only stores records.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from typing import Any, Callable, Iterator, Mapping

from pipeline import config as config_module
from pipeline import ledger
from pipeline.context import BuildContext, Plan
from pipeline.errors import BadInput, DeployFailed, DeployRefused, PinotageError
from pipeline.shell import print_progress
from pipeline.state import Deployment, Image, Release

Progress = Callable[[str], None]
IsAncestor = Callable[[str, str], bool]


def log(line: str) -> None:
    """Print a phase's start, end or summary line on stderr."""
    print(f"==> {line}", file=sys.stderr, flush=True)


class Timer:
    """Time phases and report each one's start, end and duration."""

    def __init__(self, say: Progress = log, clock: Callable[[], float] = time.monotonic):
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
        else:
            lines.append("deployed: no (this event does not deploy)")
        if self.phases_s:
            lines.append("took:     " + ", ".join(f"{k} {v:.1f} s" for k, v in self.phases_s.items()))
        if self.url:
            lines.append(f"url:      {self.url}")  # last, so scripts/demo ends with it
        return lines


@dataclasses.dataclass
class Services:
    """What a run talks to; each is made only when a phase first needs it."""

    make_client: Callable[[], Any]
    make_target: Callable[[], Any]
    read_credentials: Callable[[], Any]
    report_status: Callable[[str, str], None] | None  # (state, description); None: no status
    is_ancestor: IsAncestor
    phases: Any  # the image phases: pipeline.image, or a double in tests
    make_sbom: Callable[[], Any] | None = None  # write the app's SBOM before a build; None: none is written
    _made: dict[str, Any] = dataclasses.field(default_factory=dict, init=False, repr=False)

    def client(self) -> Any:
        """Return the engine client, made on first use and shared by the phases after it."""
        if "client" not in self._made:
            self._made["client"] = self.make_client()
        return self._made["client"]

    def credentials(self) -> Any:
        """Return the registry login, read on first use (None: the registry takes anonymous calls)."""
        if "credentials" not in self._made:
            self._made["credentials"] = self.read_credentials()
        return self._made["credentials"]


def run(config: config_module.Config, context: BuildContext, plan: Plan, services: Services, *,
        say: Progress = log, progress: Progress = print_progress) -> Outcome:
    """Run the plan's phases in order; raise the first failure after reporting it.

    The steps are the Jenkins stages' own functions (``lookup_stage`` … ``push_stage``), so a
    laptop's ``pinotage run`` and a Jenkins build decide the same way.
    """
    timer = Timer(say)
    image: Image | None = None
    built = pushed = False
    deployment: Deployment | None = None
    record: ledger.Record | None = None
    note = url = ""
    _status(services, "pending", f"pinotage: {' → '.join(plan.steps)}", say)
    try:
        if "push" in plan:
            with timer.phase("lookup"):
                image = lookup_stage(config, context, plan, services, progress=progress)
        if image is None:
            with timer.phase("build"):
                image = build_stage(config, context, services, progress=progress)
                built = True
            with timer.phase("smoke"):
                smoke_stage(config, image, services, progress=progress)
            if "push" in plan:
                with timer.phase("push"):
                    image, pushed = push_stage(config, context, plan, image, services, progress=progress)
        if "deploy" in plan:
            deployment, record, note, url = _deploy(config, context, image, services, timer, progress)
    except PinotageError as e:
        where = f"{timer.failed} failed: " if timer.failed else ""
        _status(services, "failure", where + _short(e), say)
        raise
    _status(services, "success", _success_text(plan, deployment, note), say)
    return Outcome(context=context, plan=plan, image=image, built=built, pushed=pushed,
                   deployment=deployment, record=record, phases_s=dict(timer.phases_s), note=note, url=url)


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
    progress(f"sbom: {len(sbom.packages)} shipped packages, {sbom.digest} ({sbom.path})")
    return services.phases.build(client, config, context, progress=progress, sbom=sbom)


def smoke_stage(config: config_module.Config, image: Image, services: Services, *,
                progress: Progress = print_progress) -> bool:
    """Smoke-test a built image; return False when it came from the registry (tested when it was built)."""
    if in_registry(image):
        return False
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


def gate_stage(image: Image, services: Services) -> Release:
    """Check that the image the deploy stage gated is still the live one; return what is live."""
    live = services.make_target().deployed()
    if live is None or live.image.digest != image.digest:
        now = f"{live.image.pinned} ({live.commit[:12]})" if live is not None else "nothing"
        raise DeployFailed(f"gate: {image.pinned} is not live; {now} is", rolled_back=False,
                           hint="the deploy stage failed or a newer release replaced it; see 'pinotage history'")
    return live


def deploy(config: config_module.Config, context: BuildContext, image: Image, services: Services, *,
           say: Progress = log, progress: Progress = print_progress
           ) -> tuple[Deployment | None, ledger.Record | None, str, str]:
    """Deploy an already pushed image (the Jenkins Deploy stage) and record the attempt.

    Return the deployment and its record (both None when the image was live already), why
    nothing was deployed, and the URL it is served at ("" when the target does not say).
    """
    return _deploy(config, context, image, services, Timer(say), progress)


def rollback(config: config_module.Config, environ: Mapping[str, str], *, to_commit: str | None,
             say: Progress = log, progress: Progress = print_progress) -> tuple[Deployment, ledger.Record]:
    """Return to the previous (or the named) successful deploy and record the attempt in the ledger."""
    return rollback_on(config, make_target(config, environ, progress), to_commit=to_commit, say=say,
                       progress=progress)


def rollback_on(config: config_module.Config, target, *, to_commit: str | None, say: Progress = log,
                progress: Progress = print_progress) -> tuple[Deployment, ledger.Record]:
    """Roll the given target back (see ``rollback``) and record the attempt in its ledger."""
    before = target.deployed()
    came_from = f"rollback from {before.commit[:12]}" if before is not None else "rollback"
    return _attempt(config, target, Timer(say), "rollback",
                    lambda: target.rollback(to_commit, progress=progress),
                    release=None, fallback=before, note=came_from)


def dry_run(config: config_module.Config, context: BuildContext, plan: Plan) -> list[tuple[str, str]]:
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
    if "status" in plan:
        rows.append(("status", "pending, then success or failure, when PINOTAGE_GITHUB_TOKEN is set"))
    rows.append(("dry run", "nothing was built, pushed or deployed"))
    return rows


def _pinned(image: Image) -> str:
    return image.pinned if image.digest else image.ref


def _deploy(config, context, image, services, timer: Timer, progress: Progress):
    target = services.make_target()
    live = target.deployed()
    if live is not None and live.image.digest == image.digest:
        note = f"{image.pinned} is already live"
        progress(note)
        # The URL is optional in the Target protocol: the local target knows it, a cluster may not.
        return None, None, note, target.url() if hasattr(target, "url") else ""
    release = Release(image=image, commit=context.commit, build_url=context.build_url, ledger_id=ledger.new_id())
    deployment, record = _attempt(
        config, target, timer, "deploy",
        lambda: target.deploy(release, is_ancestor=services.is_ancestor, progress=progress),
        release=release, fallback=release)
    return deployment, record, "", deployment.url


def _attempt(config, target, timer: Timer, phase: str, act: Callable[[], Deployment], *,
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

    def write(outcome: str, tried: Release | None, message: str, revision: str = "") -> ledger.Record:
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
            _keeping(e, lambda: write("refused", release, e.message))
        raise
    except DeployFailed as e:
        back = e.returned_to
        if e.rolled_back and back is not None:
            message = f"rolled back to {back.commit[:12]} ({_pinned(back.image)}): {e.message}"
        else:
            message = e.message
        _keeping(e, lambda: write("rolled-back" if e.rolled_back else "failed", e.attempted or release, message,
                                  e.revision))
        raise
    except PinotageError as e:
        _keeping(e, lambda: write("failed", release, e.message))
        raise
    # A target that does not say what it returned to is read back: the record names what went live.
    serving = deployment.release or release or target.deployed()
    return deployment, write("deployed", serving, "", deployment.revision)


def _keeping(error: PinotageError, write: Callable[[], object]) -> None:
    """Write a failure's ledger record; a write that fails too is added to the error, never in its place."""
    from pipeline import boundary

    try:
        write()
    except Exception as e:  # noqa: BLE001 -- whatever broke the write, the run's own error comes first
        said = e.message if isinstance(e, PinotageError) else boundary.service_failure(e) or f"{type(e).__name__}: {e}"
        error.add_note(f"and the ledger record of this failure was not written: {said}")


def _status(services: Services, state: str, description: str, say: Progress) -> None:
    """Report a commit status; a status GitHub refuses is shown, and never fails the release."""
    if services.report_status is None:
        return
    try:
        services.report_status(state, description)
    except PinotageError as e:
        say(f"status: {state} not reported: {e.message}" + (f" ({e.hint})" if e.hint else ""))


def _success_text(plan: Plan, deployment: Deployment | None, note: str) -> str:
    if deployment is not None:
        return f"deployed to {deployment.target}" + (f" at {deployment.url}" if deployment.url else "")
    if "deploy" in plan:
        return note or "nothing to deploy"
    return "built, smoke-tested and pushed" if "push" in plan else "built and smoke-tested"


def _short(error: BaseException) -> str:
    text = getattr(error, "message", None) or str(error) or type(error).__name__
    return text.splitlines()[0][:200]


def services_for(config: config_module.Config, plan: Plan, context: BuildContext, environ: Mapping[str, str], *,
                 cwd: str = ".", say: Progress = log) -> Services:
    """Wire the real services: the Docker engine, the configured target, the registry, GitHub, git."""
    return Services(
        make_client=lambda: docker_client(environ, trusted=plan.reads_credentials),
        make_target=lambda: make_target(config, environ, print_progress),
        read_credentials=lambda: read_registry_credentials(config, environ),
        report_status=_github_reporter(config, context, environ, say) if "status" in plan else None,
        is_ancestor=_git_ancestry(cwd),
        phases=_image_phases(),
        make_sbom=lambda: _write_sbom(config, environ),
    )


def _write_sbom(config: config_module.Config, environ: Mapping[str, str]):
    from pipeline import sbom

    return sbom.generate(config, environ)


def docker_client(environ: Mapping[str, str], *, trusted: bool):
    """Connect to the engine named by DOCKER_HOST (or the default socket).

    An untrusted build (a branch, a pull request) gets a client with no registry logins: the
    SDK would otherwise send every login from the docker config file along with each build.
    """
    import docker

    from pipeline import engine_tls

    settings = docker_environ(environ)
    engine_tls.check_files(settings, environ)
    try:
        if settings.get("DOCKER_TLS_VERIFY"):
            client = engine_tls.connect(settings)
        else:
            client = docker.from_env(environment=settings, timeout=300)
        client.ping()
    except docker.errors.DockerException as e:
        engine_tls.raise_if_handshake(e, settings)
        raise PinotageError(f"no Docker engine answers ({e})", hint="start dockerd, or set DOCKER_HOST") from e
    if not trusted:
        _forget_logins(client.api)
    return client


def _forget_logins(api) -> None:
    """Make an APIClient send no registry login with any build, pull or push.

    docker-py has no public switch. It keeps the docker config file's logins in ``_auth_configs``
    and reloads the file whenever that store is empty (``_set_auth_headers`` for builds,
    ``auth.get_config_header`` for pulls and pushes), so emptying it is not enough: the store
    is replaced by one that is never empty yet resolves no login, and builds send no auth header.
    """
    import docker

    class NoLogins(docker.auth.AuthConfig):
        def __bool__(self) -> bool:
            return True  # an empty store makes docker-py read the config file again

        @property
        def is_empty(self) -> bool:
            return False

        def resolve_authconfig(self, registry=None):
            return None

        def get_all_credentials(self):
            return {}

        def add_auth(self, reg, data):
            pass  # a login made through this client is not kept either

    api._auth_configs = NoLogins({})
    api._set_auth_headers = lambda headers: None


def docker_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """Pick the engine's settings (DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH): nothing else is copied."""
    return {key: environ[key] for key in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH") if key in environ}


def make_target(config: config_module.Config, environ: Mapping[str, str], progress: Progress):
    """Make the configured deploy target (deploy.target), importing only that one."""
    if config.deploy.target == "kubernetes":
        from pipeline.targets import kubernetes

        return kubernetes.make_target(config, environ, progress)
    from pipeline.targets import docker as docker_target

    return docker_target.make_target(config, environ, progress,
                                     connect=lambda: docker_client(environ, trusted=True))


def read_registry_credentials(config: config_module.Config, environ: Mapping[str, str]):
    """Read the registry login, the moment a phase that pushes needs it."""
    from pipeline import registry

    return registry.read_credentials(config, environ)


def _image_phases():
    from pipeline import image

    return image


def _git_ancestry(cwd: str) -> IsAncestor:
    def is_ancestor(older: str, newer: str) -> bool:
        from pipeline import git as gitfacts

        return gitfacts.is_strict_ancestor(gitfacts.open_repo(cwd), older, newer)
    return is_ancestor


def _github_reporter(config: config_module.Config, context: BuildContext, environ: Mapping[str, str],
                     say: Progress) -> Callable[[str, str], None]:
    def report(state: str, description: str) -> None:
        slug = report_status(config, context, environ, state, description, required=False)
        if slug:
            say(f"status: {state} reported to {slug} for {context.short_commit}")
    return report


def report_status(config: config_module.Config, context: BuildContext, environ: Mapping[str, str], state: str,
                  description: str, *, required: bool) -> str:
    """Report a commit status to GitHub; return the repository it went to.

    With no token, a required status (``pinotage status``) is bad input; an optional one (the
    runner's) is not sent and "" is returned.
    """
    from pipeline import github

    token = config_module.secret("github.token", environ)
    if not token:
        if not required:
            return ""
        raise BadInput("PINOTAGE_GITHUB_TOKEN is not set", hint="a token with commit status write access")
    slug = github.repo_slug(config.github.repo, context.source_url)
    if not slug:
        raise BadInput("github.repo: not set, and the origin URL is not on github.com",
                       hint="--set github.repo=OWNER/NAME")
    github.report(config.github.api_url, slug, context.commit, state, token=token,
                  description=description, target_url=context.build_url)
    return slug
