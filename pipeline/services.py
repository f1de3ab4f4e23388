"""Wire what the phases talk to: the Docker engine, the registry login, the target, GitHub, git.

``runner.py`` only sequences phases; everything it needs from outside arrives here, made on first
use, in one ``Services`` value. Credentials are read here and handed to whoever needs them (the
image phases, the local target's pull): no phase reads a secret by itself.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from pipeline import config as config_module
from pipeline.context import BuildContext, Plan
from pipeline.errors import BadInput, PinotageError
from pipeline.shell import Progress, print_progress, print_phase
from pipeline.targets import IsAncestor, Target

if TYPE_CHECKING:
    from pipeline.registry import Credentials

# An auths entry without credentials (valid since engine API 1.23) for a name that cannot resolve:
# docker-py re-reads the docker config file whenever its login store is empty, so the store an
# untrusted client keeps is not empty, yet answers no registry with a login.
NO_LOGINS = {"auths": {"no-logins.pinotage.invalid": {}}}


@dataclasses.dataclass
class Services:
    """What a run talks to; each is made only when a phase first needs it."""

    make_client: Callable[[], Any]
    make_target: Callable[[], Target]
    read_credentials: Callable[[], "Credentials | None"]
    report_status: Callable[[str, str], None] | None  # (state, description); None: no status
    is_ancestor: IsAncestor
    phases: Any  # the image phases: pipeline.image, or a double in tests
    make_sbom: Callable[[], Any] | None = None  # write the app's SBOM before a build; None: none is written
    make_previews: Callable[[], Any] | None = None  # -> (PreviewCluster, app manifest, pull secret or None)
    local_preview: Any = None  # serves `run --preview`: pipeline.preview.local, or a double in tests
    early_target: bool = False  # a run that deploys (runner.run) makes the target while the image phases run
    _made: dict[str, Any] = dataclasses.field(default_factory=dict, init=False, repr=False)
    _making: threading.Thread | None = dataclasses.field(default=None, init=False, repr=False)

    def client(self) -> Any:
        """Return the engine client, made on first use and shared by the phases after it."""
        if "client" not in self._made:
            self._made["client"] = self.make_client()
        return self._made["client"]

    def target(self) -> Target:
        """Return the deploy target, made on first use (or by ``prepare_target``, whose failure is raised here)."""
        if self._making is not None:
            self._making.join()
            self._making = None
        if "target" not in self._made:
            self._made["target"] = self.make_target()
        made = self._made["target"]
        if isinstance(made, BaseException):
            del self._made["target"]
            raise made
        return made

    def target_if_ready(self) -> Target | None:
        """Return the target unless ``prepare_target``'s thread is still making it (then None: no wait)."""
        if self._making is not None and self._making.is_alive():
            return None
        return self.target()

    def prepare_target(self) -> None:
        """Start making the target in a thread, when ``early_target`` says it is worth it.

        Importing the Kubernetes client library and reading the kubeconfig take some 0.2 s of CPU;
        made while the build waits on the engine, the target is ready when the deploy starts. A
        failure (a bad kubeconfig) is kept and raised when the deploy asks for the target, as it
        would have been then.
        """
        if not self.early_target or self._making is not None or "target" in self._made:
            return
        # The engine's client and the target's share modules (urllib3, requests, websocket). Two
        # threads importing them at once can meet in a cycle of CPython's per-module import locks,
        # and one of them then gets a partly initialised module ("cannot import name
        # 'parse_dict_header' from partially initialized module 'requests.utils'", seen in a
        # benchmark run): import them here, before the thread, and the thread finds them whole.
        import docker  # noqa: F401

        def make() -> None:
            try:
                self._made["target"] = self.make_target()
            except BaseException as e:  # raised by target(), in the thread that deploys
                self._made["target"] = e

        self._making = threading.Thread(target=make, name="pinotage-make-target", daemon=True)
        self._making.start()

    def credentials(self) -> "Credentials | None":
        """Return the registry login, read on first use (None: the registry takes anonymous calls)."""
        if "credentials" not in self._made:
            self._made["credentials"] = self.read_credentials()
        return self._made["credentials"]


def services_for(config: config_module.Config, plan: Plan, context: BuildContext, environ: Mapping[str, str], *,
                 cwd: str = ".", say: Progress = print_phase) -> Services:
    """Wire the real services: the Docker engine, the configured target, the registry, GitHub, git."""
    return Services(
        make_client=lambda: docker_client(environ, trusted=plan.reads_credentials),
        make_target=lambda: make_target(config, environ, print_progress),
        read_credentials=lambda: read_registry_credentials(config, environ),
        report_status=_github_reporter(config, context, environ, say) if "status" in plan else None,
        is_ancestor=_git_ancestry(cwd),
        phases=_image_phases(),
        make_sbom=lambda: _write_sbom(config, environ),
        make_previews=lambda: preview_services(config, environ),
        local_preview=_local_preview(),
        early_target=config.deploy.target == "kubernetes",
    )


def _local_preview():
    from pipeline.preview import local

    return local


def preview_services(config: config_module.Config, environ: Mapping[str, str]):
    """Connect as the preview deployer (the kubeconfig the preview stage binds); read the manifest and pull login."""
    from pipeline import kube
    from pipeline.preview.cluster import PreviewCluster
    from pipeline.targets.kubernetes import pull_secret
    from pipeline.targets.kubernetes.target import read_manifest

    manifest = read_manifest(config)
    cluster = kube.connect(config, environ)
    return (PreviewCluster(cluster.api, namespace=config.preview.namespace, app=config.app,
                           rollout_s=config.deadlines.rollout_s, progress=print_progress),
            manifest, pull_secret.for_login(config, read_registry_credentials(config, environ)))


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
    """Load the client's logins from a config file that holds none, with docker-py's ``reload_config``."""
    with tempfile.TemporaryDirectory(prefix="pinotage-no-logins-") as folder:
        path = Path(folder, "config.json")
        path.write_text(json.dumps(NO_LOGINS))
        api.reload_config(dockercfg_path=str(path))


def docker_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """Pick the engine's settings (DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH): nothing else is copied."""
    return {key: environ[key] for key in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH") if key in environ}


def make_target(config: config_module.Config, environ: Mapping[str, str], progress: Progress) -> Target:
    """Make the configured deploy target (deploy.target), importing only that one."""
    if config.deploy.target == "kubernetes":
        from pipeline.targets import kubernetes

        return kubernetes.make_target(config, environ, progress,
                                      credentials=lambda: read_registry_credentials(config, environ))
    from pipeline.targets import docker as docker_target

    return docker_target.make_target(config, environ, progress, connect=lambda: docker_client(environ, trusted=True),
                                     credentials=lambda: read_registry_credentials(config, environ))


def cluster_target(config: config_module.Config, kubeconfig_text: str, progress: Progress) -> Target:
    """Make the Kubernetes target of a cluster just built, from its admin kubeconfig held in memory only.

    No registry login: the redeploy runs an image the cluster's pull Secret already names.
    """
    import yaml
    from kubernetes import config as kube_config

    from pipeline.targets import kubernetes

    api = kube_config.new_client_from_config_dict(yaml.safe_load(kubeconfig_text), persist_config=False)
    return kubernetes.make_target(config, {}, progress, credentials=lambda: None, api=api)


def read_registry_credentials(config: config_module.Config, environ: Mapping[str, str]) -> "Credentials | None":
    """Read the registry login, the moment a phase that pushes (or a target's pull) needs it."""
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
                     say: Progress) -> Callable[..., None]:
    def report(state: str, description: str, target_url: str = "") -> None:
        slug = report_status(config, context, environ, state, description, required=False, target_url=target_url)
        if slug:
            say(f"status: {state} reported to {slug} for {context.short_commit}")
    return report


def report_status(config: config_module.Config, context: BuildContext, environ: Mapping[str, str], state: str,
                  description: str, *, required: bool, target_url: str = "", status_context: str = "") -> str:
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
    github.report(config.github.api_url, slug, context.commit, state, token=token, description=description,
                  target_url=target_url or context.build_url, context=status_context or github.STATUS_CONTEXT)
    return slug
