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
import os
import typing
from pathlib import Path
from typing import Any, Iterator, Mapping

from pipeline.config_values import coerce, did_you_mean, short
from pipeline.errors import BadInput, ConfigError

CONFIG_FILE = "pinotage.yaml"
ENV_PREFIX = "PINOTAGE_"
PROFILE_ENV = "PINOTAGE_PROFILE"
PROFILES_KEY = "profiles"
# settings that name a file or folder. From pinotage.yaml (which a pull request edits) each must
# stay inside the repository, so a pull request cannot point a build at files outside its checkout;
# the environment and flags come from the operator and the Jenkinsfile Jenkins trusts.
CONFINED_PATHS = ("image.context", "image.dockerfile", "deploy.manifest", "state_dir",
                  "audit.python_lock")
# PINOTAGE_ variables that are not settings: the config file's path, and what scripts/ and tests/ read
NOT_SETTINGS = ("PINOTAGE_CONFIG", "PINOTAGE_PROFILE", "PINOTAGE_BUILD_RESULT", "PINOTAGE_TEST_", "PINOTAGE_SKIP_",
                "PINOTAGE_ROOT", "PINOTAGE_VENV", "PINOTAGE_DEBIAN_", "PINOTAGE_CA_BUNDLE")
SUGGEST_LIMIT = 50
MAX_CONFIG_BYTES = 256 * 1024  # a real one is a few KiB; the pure-Python YAML parser takes seconds a MiB

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
    path = _find_file(config_path, environ, cwd or os.getcwd(), problems)
    profiles: dict[str, list[Entry]] = {}
    from_file: list[Entry] = []
    for key, raw, where in _read_file(path, problems, profiles) if path is not None else ():
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
            _confine(key, values, root, sources[key], problems)
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

def _fields(cls: type = Config, prefix: str = "") -> dict[str, type]:
    """Map every leaf "section.field" to its type."""
    out: dict[str, type] = {}
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if not field.compare:
            continue
        kind = hints[field.name]
        if dataclasses.is_dataclass(kind):
            out.update(_fields(kind, f"{prefix}{field.name}."))
        else:
            out[prefix + field.name] = kind
    return out


def _find_file(config_path: str | None, environ: Mapping[str, str], cwd: str,
               problems: list[str]) -> Path | None:
    explicit = config_path or environ.get("PINOTAGE_CONFIG")
    if explicit:
        path = Path(cwd, explicit)
        if not path.is_file():
            what = "is a directory, expected" if path.is_dir() else "not a regular file, expected" \
                if path.exists() else "no such"
            problems.append(f"{explicit}: {what} configuration file")
            return None
        return path
    default = Path(cwd, CONFIG_FILE)
    if default.is_dir():
        problems.append(f"{CONFIG_FILE}: is a directory, expected the configuration file")
    return default if default.is_file() else None


Entry = tuple[str, Any, str]  # ("section.field", value, "file:line")


def _confine(key: str, values: dict[str, Any], root: str, where: str, problems: list[str]) -> None:
    """Note a problem when a path leaves its folder: absolute, a '..' out, or a symlink out."""
    value = values[key]
    base = os.path.join(root, values.get("image.context", ImageConfig.context)) if key == "image.dockerfile" else root
    if not value:
        return
    if os.path.isabs(value):
        reason = "an absolute path"
    elif os.path.normpath(value).split(os.sep)[0] == os.pardir:
        reason = "a '..' that leaves it"
    elif os.path.commonpath([os.path.realpath(base), os.path.realpath(os.path.join(base, value))]) \
            != os.path.realpath(base):
        reason = "a symlink that leads out of it"
    else:
        return
    inside = "image.context" if key == "image.dockerfile" else "the repository (the folder of pinotage.yaml)"
    problems.append(f"{where}: {key}: {value!r} is {reason}; give a relative path inside {inside}")


def _read_file(path: Path, problems: list[str], profiles: dict[str, list[Entry]]) -> Iterator[Entry]:
    """Yield the file's entries in file order and fill in each profile's, noting problems as they come."""
    import yaml

    from pipeline import files, safe_yaml

    name = os.path.relpath(path) if not os.path.relpath(path).startswith("..") else str(path)
    try:
        text = files.read_text(path, what="configuration file", limit_bytes=MAX_CONFIG_BYTES)
        root = safe_yaml.compose(text, where=name)
    except BadInput as e:
        problems.append(e.message)
        return
    if root is None:
        return
    if not isinstance(root, yaml.MappingNode):
        problems.append(f"{name}:{root.start_mark.line + 1}: expected a mapping of settings")
        return

    known = _fields()
    sections = {key.split(".")[0] for key in known if "." in key}

    def walk(node: yaml.MappingNode, prefix: str, profile: str = "") -> Iterator[Entry]:
        for key_node, value_node in node.value:
            key = prefix + str(key_node.value)
            where = f"{name}:{key_node.start_mark.line + 1}" + (f" (profile {profile})" if profile else "")
            if key == PROFILES_KEY and not prefix and not profile:
                _read_profiles(value_node, name, walk, profiles, problems)
            elif key in SECRETS:
                problems.append(f"{where}: {key}: secrets are not read from files"
                                f" (set {SECRETS[key]} in the environment)")
            elif key in known:
                yield key, _plain(value_node), where
            elif not prefix and key in sections:
                if isinstance(value_node, yaml.MappingNode):
                    yield from walk(value_node, key + ".", profile)
                elif not (isinstance(value_node, yaml.ScalarNode) and value_node.tag.endswith(":null")):
                    problems.append(f"{where}: {key}: expected a mapping of settings")
            else:
                candidates = list(known) + sorted(sections) + list(SECRETS)
                # only the problems printed need a suggestion; a file of 200,000 keys must not take minutes
                guess = did_you_mean(key, candidates) if len(problems) < SUGGEST_LIMIT else ""
                problems.append(f"{where}: unknown key {short(key)!r}{guess}")

    yield from walk(root, "")


def _read_profiles(node: Any, file_name: str, walk: Any, profiles: dict[str, list[Entry]],
                   problems: list[str]) -> None:
    """Collect each named profile's entries from the file's ``profiles:`` mapping."""
    import yaml

    if not isinstance(node, yaml.MappingNode):
        problems.append(f"{file_name}:{node.start_mark.line + 1}: profiles: expected a mapping of names to settings")
        return
    for name_node, body in node.value:
        name = str(name_node.value)
        if isinstance(body, yaml.MappingNode):
            profiles[name] = list(walk(body, "", name))
        else:
            problems.append(f"{file_name}:{name_node.start_mark.line + 1}: profiles.{name}:"
                            " expected a mapping of settings")


def _plain(node: Any) -> Any:
    from pipeline import safe_yaml

    return safe_yaml.plain(node)


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


def _assemble(values: dict[str, Any], cls: type = Config, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
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

