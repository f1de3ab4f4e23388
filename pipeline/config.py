"""Configuration: defaults < pinotage.yaml < profile < environment (PINOTAGE_*) < flags.

A profile is a named section under ``profiles:`` in pinotage.yaml, chosen with
``--profile NAME`` or ``PINOTAGE_PROFILE``; its values overlay the file's.

Everything is validated once, at start-up, and every problem is reported
together, each naming where the bad value came from. The result is a tree of
frozen dataclasses plus, for each field, the place its value came from.

Secrets are not configuration: they are read from the environment only when a
phase needs them (``secret()``), so a pull-request build that never pushes never
reads one.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import types
import typing
from pathlib import Path
from typing import Any, Mapping

from pipeline.config_file import CONFIG_FILE, Entry, confine, find_file, read_file
from pipeline.config_values import coerce, did_you_mean, short
from pipeline.errors import ConfigError

ENV_PREFIX = "PINOTAGE_"
PROFILE_ENV = "PINOTAGE_PROFILE"
# settings that name a file or folder. From pinotage.yaml (which a pull request edits) each must
# stay inside the repository, so a pull request cannot point a build at files outside its checkout;
# the environment and flags come from the operator and the Jenkinsfile Jenkins trusts.
CONFINED_PATHS = ("image.context", "image.dockerfile", "deploy.manifest", "state_dir",
                  "audit.python_lock")
# PINOTAGE_ variables that are not settings: the config file's path, and what scripts/ and tests/ read
NOT_SETTINGS = ("PINOTAGE_CONFIG", "PINOTAGE_PROFILE", "PINOTAGE_BUILD_RESULT", "PINOTAGE_TEST_", "PINOTAGE_SKIP_",
                "PINOTAGE_ROOT", "PINOTAGE_VENV", "PINOTAGE_DEBIAN_", "PINOTAGE_CA_BUNDLE")

# name in messages -> the environment variable that holds it
SECRETS = {
    "registry.password": "PINOTAGE_REGISTRY_PASSWORD",
    "github.token": "PINOTAGE_GITHUB_TOKEN",
    "github.webhook_secret": "PINOTAGE_GITHUB_WEBHOOK_SECRET",  # Jenkins checks deliveries' signatures with it
    "jenkins.token": "PINOTAGE_JENKINS_TOKEN",
}


@dataclasses.dataclass(frozen=True)
class RegistryConfig:
    url: str = "127.0.0.1:5000"
    user: str = ""


@dataclasses.dataclass(frozen=True)
class ImageConfig:
    repository: str = "pinotage/presentation"
    context: str = "docker/presentation"
    dockerfile: str = "Dockerfile"
    build_base: str = ""
    final_base: str = ""
    tags: tuple[str, ...] = ("commit", "short-commit", "branch")
    port: int = 8080
    health_path: str = "/healthz"
    first_slide_text: str = "Pinotage"


@dataclasses.dataclass(frozen=True)
class DeployConfig:
    target: str = "docker"
    namespace: str = "presentation"
    host_port: int = 8080
    host_ip: str = "127.0.0.1"  # where the local target's front listens on host_port; 0.0.0.0 for every interface
    front_image: str = "docker.io/library/nginx:1.27.3-bookworm"  # the local target's front (scripts/front-image)
    kube_context: str = ""
    manifest: str = "k8s/presentation/deployment.yaml"  # what the kubernetes target applies, image replaced


@dataclasses.dataclass(frozen=True)
class DeadlinesConfig:
    build_s: int = 900
    smoke_s: int = 60
    push_s: int = 600
    rollout_s: int = 600
    lock_s: int = 300


@dataclasses.dataclass(frozen=True)
class GithubConfig:
    repo: str = ""
    api_url: str = "https://api.github.com"


@dataclasses.dataclass(frozen=True)
class JenkinsConfig:
    url: str = ""
    user: str = ""


@dataclasses.dataclass(frozen=True)
class ClusterConfig:
    box_name: str = "pinotage/kubeadm"
    box_version: str = "1.31.4"  # the box's own version; bump it with kubernetes_version
    base_box: str = "debian/bookworm64"
    kubernetes_version: str = "1.31.4"  # pkgs.k8s.io packages, pinned and held
    workers: int = 2
    control_plane_ip: str = "192.168.56.10"  # workers follow: .11, .12, ...
    control_plane_memory_mb: int = 2048
    worker_memory_mb: int = 2048
    cpus: int = 2
    network_addon: str = "flannel"
    pod_subnet: str = "10.244.0.0/16"  # must match the network add-on's manifest
    service_subnet: str = "10.96.0.0/12"
    backup_namespaces: tuple[str, ...] = ("sharelatex", "logging")  # besides deploy.namespace


@dataclasses.dataclass(frozen=True)
class AuditConfig:
    fail_on: str = "high"  # advisories at or above this severity fail the build; "off": none do
    unreachable: str = "fail"  # when an advisory service cannot be asked: "warn" passes, "fail" fails
    python_lock: str = "requirements.lock"  # Pinotage's own locked deps; "" audits the app only


@dataclasses.dataclass(frozen=True)
class PreviewConfig:
    enabled: bool = False  # same-repository pull requests get a preview (docs/previews.md)
    namespace: str = "previews"  # the one namespace every preview runs in (k8s/previews)
    # where a preview is served; {name} is its Deployment and Service (presentation-pr-42), {namespace} this one's
    url: str = "http://{name}.{namespace}.svc.cluster.local/"
    max_age_h: int = 168  # a preview with no new commit for this long is pruned, its PR open or not
    local_port: int = 8081  # `pinotage run --preview` serves the branch here, beside the app on deploy.host_port


@dataclasses.dataclass(frozen=True)
class Config:
    app: str = "presentation"
    default_branch: str = "master"
    state_dir: str = ".pinotage"
    kubeconfig: str = ""
    registry: RegistryConfig = RegistryConfig()
    image: ImageConfig = ImageConfig()
    deploy: DeployConfig = DeployConfig()
    deadlines: DeadlinesConfig = DeadlinesConfig()
    github: GithubConfig = GithubConfig()
    jenkins: JenkinsConfig = JenkinsConfig()
    cluster: ClusterConfig = ClusterConfig()
    audit: AuditConfig = AuditConfig()
    preview: PreviewConfig = PreviewConfig()
    # where relative paths start: the config file's folder, else the working folder
    root: str = dataclasses.field(default=".", compare=False)
    # "section.field" -> "default" | "pinotage.yaml:12" | "env PINOTAGE_X" | "flag --set x=…"
    sources: Mapping[str, str] = dataclasses.field(default_factory=dict, compare=False)

    def path(self, relative: str) -> Path:
        """Resolve a path from the configuration against its root."""
        return Path(self.root, relative)

    def image_name(self) -> str:
        """Return registry/repository, the name images are tagged and pushed under."""
        return f"{self.registry.url}/{self.image.repository}" if self.registry.url else self.image.repository


def tool_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """Return the environment for an external tool (npm, pip-audit): all but Pinotage's settings and secrets.

    Only the names are looked at before one is dropped: a secret's value is never read.
    """
    return {key: environ[key] for key in environ if not key.startswith(ENV_PREFIX) and key not in SECRETS.values()}


def secret(name: str, environ: Mapping[str, str]) -> str | None:
    """Read one secret from the environment, at the moment a phase needs it."""
    from pipeline import redact

    value = environ.get(SECRETS[name]) or None
    redact.remember(value)  # from now on masked in everything printed
    return value


def load(*, environ: Mapping[str, str], config_path: str | None = None,
         overrides: list[str] | tuple[str, ...] = (), cwd: str | None = None,
         profile: str | None = None) -> Config:
    """Build the effective configuration, or raise ConfigError listing every problem."""
    problems: list[str] = []
    values: dict[str, Any] = {}
    sources: dict[str, str] = {key: "default" for key in _fields()}
    path = find_file(config_path, environ, cwd or os.getcwd(), problems)
    profiles: dict[str, list[Entry]] = {}
    from_file: list[Entry] = []
    for key, raw, where in read_file(path, problems, profiles, _fields(), SECRETS) if path is not None else ():
        _accept(key, raw, where, values, sources, problems, from_text=False)
        from_file.append((key, raw, where))
    chosen, chosen_from = (profile, "flag --profile") if profile else (environ.get(PROFILE_ENV), f"env {PROFILE_ENV}")
    if chosen and chosen not in profiles:
        problems.append(f"{chosen_from}: no profile {chosen!r} in {path.name if path else CONFIG_FILE}"
                        f" (profiles: {', '.join(sorted(profiles)) or 'none'})")
    for key, raw, where in profiles.get(chosen or "", []):
        _accept(key, raw, where, values, sources, problems, from_text=False)
        from_file.append((key, raw, where))
    for key in _fields():
        env_name = ENV_PREFIX + key.replace(".", "_").upper()
        if env_name in environ and key not in SECRETS:
            _accept(key, environ[env_name], f"env {env_name}", values, sources, problems, from_text=True)
    _unknown_variables(environ, problems)
    for item in overrides:
        key, sep, raw = item.partition("=")
        where = f"flag --set {key}"
        if not sep:
            problems.append(f"{where}: expected KEY=VALUE, got {item!r}")
            continue
        if key not in _fields():
            problems.append(f"{where}: unknown key {key!r}{did_you_mean(key, _fields())}")
            continue
        _accept(key, raw, where, values, sources, problems, from_text=True)

    root = str(path.parent) if path is not None else (cwd or os.getcwd())
    for key in CONFINED_PATHS:
        if key in values and sources[key] in {where for _, _, where in from_file}:  # the file a pull request edits
            confine(key, values, root, sources[key], problems, default_context=ImageConfig.context)
    if problems:
        raise ConfigError(problems, hint="run 'pinotage config' to see every value and where it came from")
    return dataclasses.replace(_assemble(values), root=root, sources=sources)


def describe(config: Config, environ: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """List (key, value, source) for every field; secrets show only whether they are set."""
    rows = [(key, _show(_get(config, key)), config.sources.get(key, "default")) for key in _fields()]
    for name, env_name in SECRETS.items():
        present = env_name in environ and bool(environ[env_name])
        rows.append((name, "******** (set)" if present else "(not set)", f"env {env_name}"))
    return rows


def keys() -> list[str]:
    """List every setting's "section.field" key, as --set and PINOTAGE_<SECTION>_<FIELD> name them."""
    return list(_fields())


# --- internals -------------------------------------------------------------

@functools.cache
def _fields(cls: type = Config, prefix: str = "") -> Mapping[str, type]:
    """Map every leaf "section.field" to its type (worked out once: every setting read asks)."""
    out: dict[str, type] = {}
    hints = _hints(cls)
    for field in dataclasses.fields(cls):
        if not field.compare:
            continue
        kind = hints[field.name]
        if dataclasses.is_dataclass(kind):
            out.update(_fields(kind, f"{prefix}{field.name}."))
        else:
            out[prefix + field.name] = kind
    return types.MappingProxyType(out)


def _unknown_variables(environ: Mapping[str, str], problems: list[str]) -> None:
    """Note every PINOTAGE_ variable that names no setting: a typo must not be ignored silently."""
    names = {ENV_PREFIX + key.replace(".", "_").upper() for key in _fields()} | set(SECRETS.values())
    for env_name in sorted(environ):
        if (env_name.startswith(ENV_PREFIX) and env_name not in names
                and not env_name.startswith(NOT_SETTINGS)):
            problems.append(f"env {short(env_name)}: no such setting{did_you_mean(env_name, sorted(names))}")


def _accept(key: str, raw: Any, where: str, values: dict[str, Any], sources: dict[str, str],
            problems: list[str], *, from_text: bool) -> None:
    try:
        values[key] = coerce(key, _fields()[key], raw, from_text)
    except ValueError as e:
        problems.append(f"{where}: {key}: {e}")
        return
    sources[key] = where


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """Return a settings class's resolved annotations (evaluating them costs more than all the rest of a load)."""
    return typing.get_type_hints(cls)


def _assemble(values: dict[str, Any], cls: type = Config, prefix: str = "") -> Any:
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if not field.compare:
            continue
        kind = hints[field.name]
        if dataclasses.is_dataclass(kind):
            kwargs[field.name] = _assemble(values, kind, f"{prefix}{field.name}.")
        elif prefix + field.name in values:
            kwargs[field.name] = values[prefix + field.name]
    return cls(**kwargs)


def _get(config: Config, key: str) -> Any:
    value: Any = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ", ".join(value)
    return str(value) if value != "" else "(empty)"

