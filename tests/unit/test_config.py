"""Configuration: precedence, sources, and every error reported at once."""

from __future__ import annotations

import pytest

from pipeline import config
from pipeline.errors import ConfigError


def write(tmp_path, text: str):
    path = tmp_path / "pinotage.yaml"
    path.write_text(text)
    return path


def load(tmp_path, environ=None, overrides=()):
    return config.load(environ=environ or {}, overrides=list(overrides), cwd=str(tmp_path))


def test_defaults_without_a_file(tmp_path):
    loaded = load(tmp_path)
    assert loaded.deploy.target == "docker"
    assert loaded.sources["deploy.target"] == "default"
    assert loaded.root == str(tmp_path)


@pytest.mark.parametrize(
    "file_text, environ, overrides, expected, source",
    [
        ("deploy: {target: kubernetes}\n", {}, (), "kubernetes", "pinotage.yaml:1"),
        ("deploy: {target: kubernetes}\n", {"PINOTAGE_DEPLOY_TARGET": "docker"}, (), "docker",
         "env PINOTAGE_DEPLOY_TARGET"),
        ("deploy: {target: docker}\n", {"PINOTAGE_DEPLOY_TARGET": "docker"}, ("deploy.target=kubernetes",),
         "kubernetes", "flag --set deploy.target"),
        ("", {}, ("deploy.target=kubernetes",), "kubernetes", "flag --set deploy.target"),
    ],
    ids=["file-over-default", "env-over-file", "flag-over-env", "flag-over-default"],
)
def test_precedence(tmp_path, file_text, environ, overrides, expected, source):
    write(tmp_path, file_text)
    loaded = load(tmp_path, environ, overrides)
    assert loaded.deploy.target == expected
    assert loaded.sources["deploy.target"].endswith(source)


def test_values_are_typed_from_every_layer(tmp_path):
    write(tmp_path, "image:\n  port: 9000\n  tags: [commit]\n")
    loaded = load(tmp_path, {"PINOTAGE_DEADLINES_ROLLOUT_S": "30", "PINOTAGE_IMAGE_TAGS": "branch, commit"})
    assert loaded.image.port == 9000
    assert loaded.deadlines.rollout_s == 30
    assert loaded.image.tags == ("branch", "commit")


@pytest.mark.parametrize(
    "file_text, environ, overrides, expected_lines",
    [
        ("imgae:\n  port: 1\n", {}, (), ["pinotage.yaml:1: unknown key 'imgae' (did you mean 'image'?)"]),
        ("image:\n  prot: 80\n", {}, (), ["pinotage.yaml:2: unknown key 'image.prot' (did you mean 'image.port'?)"]),
        ("image:\n  port: eighty\n", {}, (), ["pinotage.yaml:2: image.port: expected a whole number, got 'eighty'"]),
        ("deploy:\n  target: heroku\n", {}, (),
         ["pinotage.yaml:2: deploy.target: expected one of docker, kubernetes, got 'heroku'"]),
        ("registry:\n  password: hunter2\n", {}, (),
         ["pinotage.yaml:2: registry.password: secrets are not read from files"
          " (set PINOTAGE_REGISTRY_PASSWORD in the environment)"]),
        ("", {"PINOTAGE_IMAGE_PORT": "x"}, (), ["env PINOTAGE_IMAGE_PORT: image.port: expected a whole number, got 'x'"]),
        ("", {}, ("deploy.targt=docker",),
         ["flag --set deploy.targt: unknown key 'deploy.targt' (did you mean 'deploy.target'?)"]),
        ("", {}, ("deploy.target",), ["flag --set deploy.target: expected KEY=VALUE, got 'deploy.target'"]),
        ("- a\n- b\n", {}, (), ["pinotage.yaml:1: expected a mapping of settings"]),
        ("image: [\n", {}, (), ["pinotage.yaml:2: not valid YAML"]),
    ],
    ids=["unknown-section", "unknown-field", "wrong-type", "bad-choice", "secret-in-file", "bad-env",
         "unknown-flag-key", "flag-without-value", "not-a-mapping", "broken-yaml"],
)
def test_bad_input_names_where(tmp_path, file_text, environ, overrides, expected_lines):
    write(tmp_path, file_text)
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, environ, overrides)
    lines = [line.replace(str(tmp_path) + "/", "") for line in raised.value.lines()]
    assert len(lines) == len(expected_lines)
    for line, expected in zip(lines, expected_lines):
        assert line.startswith(expected)


def test_every_error_is_reported_at_once(tmp_path):
    write(tmp_path, "image:\n  port: eighty\n  colour: red\ndeploy:\n  target: heroku\n")
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, {"PINOTAGE_DEADLINES_SMOKE_S": "-3"})
    assert len(raised.value.problems) == 4


def test_named_config_file_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: no such configuration file"):
        config.load(environ={}, config_path="nope.yaml", cwd=str(tmp_path))


def test_secrets_are_read_only_on_demand_and_never_shown(tmp_path):
    environ = {"PINOTAGE_REGISTRY_PASSWORD": "s3cr3t-value"}
    loaded = load(tmp_path, environ)
    rows = config.describe(loaded, environ)
    assert "s3cr3t-value" not in repr(loaded)
    assert not any("s3cr3t-value" in cell for row in rows for cell in row)
    assert ("registry.password", "******** (set)", "env PINOTAGE_REGISTRY_PASSWORD") in rows
    assert config.secret("registry.password", environ) == "s3cr3t-value"
    assert config.secret("github.token", environ) is None


def test_keys_name_every_setting_and_no_secret(tmp_path):
    keys = config.keys()
    assert {"registry.url", "cluster.workers", "deadlines.lock_s", "kubeconfig"} <= set(keys)
    assert keys == [key for key, _, source in config.describe(load(tmp_path), {}) if not source.startswith("env ")]
    assert not set(keys) & set(config.SECRETS)
    with pytest.raises(ConfigError, match="unknown key 'cluster.nodes'"):
        load(tmp_path, overrides=["cluster.nodes=2"])


PROFILED = """\
registry:
  url: 127.0.0.1:5000
deploy:
  target: docker
profiles:
  production:
    registry:
      url: docker.io
    deploy:
      target: kubernetes
  staging:
    deploy: {namespace: staging}
"""


@pytest.mark.parametrize("profile, environ, overrides, expected, source", [
    (None, {}, (), ("127.0.0.1:5000", "docker"), ("pinotage.yaml:2", "pinotage.yaml:4")),
    ("production", {}, (), ("docker.io", "kubernetes"),
     ("pinotage.yaml:8 (profile production)", "pinotage.yaml:10 (profile production)")),
    (None, {"PINOTAGE_PROFILE": "production"}, (), ("docker.io", "kubernetes"),
     ("pinotage.yaml:8 (profile production)", "pinotage.yaml:10 (profile production)")),
    ("production", {"PINOTAGE_DEPLOY_TARGET": "docker"}, (), ("docker.io", "docker"),
     ("pinotage.yaml:8 (profile production)", "env PINOTAGE_DEPLOY_TARGET")),
    ("production", {}, ("registry.url=r.example",), ("r.example", "kubernetes"),
     ("flag --set registry.url", "pinotage.yaml:10 (profile production)")),
    ("staging", {"PINOTAGE_PROFILE": "production"}, (), ("127.0.0.1:5000", "docker"),
     ("pinotage.yaml:2", "pinotage.yaml:4")),
], ids=["no-profile", "flag", "env", "env-over-profile", "flag-over-profile", "flag-profile-over-env-profile"])
def test_a_profile_overlays_the_file_below_the_environment(tmp_path, profile, environ, overrides, expected, source):
    write(tmp_path, PROFILED)
    loaded = config.load(environ=environ, overrides=list(overrides), cwd=str(tmp_path), profile=profile)
    assert (loaded.registry.url, loaded.deploy.target) == expected
    shown = tuple(loaded.sources[key].replace(str(tmp_path) + "/", "") for key in ("registry.url", "deploy.target"))
    assert shown == source
    rows = {key: where for key, _, where in config.describe(loaded, environ)}
    assert rows["deploy.target"] == loaded.sources["deploy.target"]  # pinotage config shows the profile that set it


@pytest.mark.parametrize("file_text, profile, expected", [
    (PROFILED, "prod", "flag --profile: no profile 'prod' in pinotage.yaml (profiles: production, staging)"),
    ("app: x\n", "production", "flag --profile: no profile 'production' in pinotage.yaml (profiles: none)"),
    ("profiles:\n  production:\n    deploy: {target: heroku}\n", "production",
     "pinotage.yaml:3 (profile production): deploy.target: expected one of docker, kubernetes, got 'heroku'"),
    ("profiles:\n  production:\n    registry: {password: x}\n", None,
     "pinotage.yaml:3 (profile production): registry.password: secrets are not read from files"),
    ("profiles: [production]\n", None, "pinotage.yaml:1: profiles: expected a mapping of names to settings"),
    ("profiles:\n  production: docker\n", None, "pinotage.yaml:2: profiles.production: expected a mapping"),
], ids=["unknown-profile", "no-profiles", "bad-value-in-profile", "secret-in-profile", "not-a-mapping",
        "profile-not-a-mapping"])
def test_bad_profiles_name_where(tmp_path, file_text, profile, expected):
    write(tmp_path, file_text)
    with pytest.raises(ConfigError) as raised:
        config.load(environ={}, cwd=str(tmp_path), profile=profile)
    [line] = [line.replace(str(tmp_path) + "/", "") for line in raised.value.lines()]
    assert line.startswith(expected)


@pytest.mark.parametrize("file_text, expected", [
    ("image: {context: /var/jenkins_home}\n",
     "pinotage.yaml:1: image.context: '/var/jenkins_home' is an absolute path"),
    ("image: {context: ../../var/jenkins_home}\n",
     "pinotage.yaml:1: image.context: '../../var/jenkins_home' is a '..' that leaves it"),
    ("image: {dockerfile: ../../../etc/Dockerfile}\n",
     "pinotage.yaml:1: image.dockerfile: '../../../etc/Dockerfile' is a '..' that leaves it"),
    ("image: {dockerfile: /tmp/Dockerfile}\n", "pinotage.yaml:1: image.dockerfile: '/tmp/Dockerfile' is an absolute"),
    ("deploy: {manifest: /etc/passwd}\n", "pinotage.yaml:1: deploy.manifest: '/etc/passwd' is an absolute path"),
    ("state_dir: ..\n", "pinotage.yaml:1: state_dir: '..' is a '..' that leaves it"),
    ("state_dir: a/../../x\n", "pinotage.yaml:1: state_dir: 'a/../../x' is a '..'"),
    ("profiles:\n  p:\n    image: {context: /}\n", "pinotage.yaml:3 (profile p): image.context: '/' is an absolute"),
    ("image: {context: escape}\n", "pinotage.yaml:1: image.context: 'escape' is a symlink that leads out of it"),
], ids=["absolute-context", "dotdot-context", "dotdot-dockerfile", "absolute-dockerfile", "absolute-manifest",
        "dotdot-state-dir", "dotdot-inside-then-out", "in-a-profile", "symlink-out"])
def test_paths_from_the_file_stay_in_the_repository(tmp_path, file_text, expected):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "escape").symlink_to(tmp_path)
    write(repo, file_text)
    with pytest.raises(ConfigError) as raised:
        config.load(environ={}, cwd=str(repo), profile="p" if "profiles" in file_text else None)
    assert raised.value.exit_code == 2
    [line] = [line.replace(str(repo) + "/", "") for line in raised.value.lines()]
    assert line.startswith(expected)


def test_paths_inside_the_repository_and_from_the_operator_are_accepted(tmp_path):
    write(tmp_path, "image: {context: docker/../docker/app, dockerfile: sub/../Dockerfile}\nstate_dir: .pinotage\n")
    loaded = config.load(environ={"PINOTAGE_DEPLOY_MANIFEST": "/srv/k8s/app.yaml"}, cwd=str(tmp_path),
                         overrides=["state_dir=/var/lib/pinotage"])
    assert loaded.image.context == "docker/../docker/app"
    assert loaded.deploy.manifest == "/srv/k8s/app.yaml"  # the environment and flags are the operator's
    assert loaded.state_dir == "/var/lib/pinotage"


def test_the_jenkinsfile_selects_the_shipped_production_profile_docker_hub_on_kubernetes():
    import re

    from tests.conftest import ROOT

    [chosen] = re.findall(r"^\s*PINOTAGE_PROFILE = '([^']+)'", (ROOT / "Jenkinsfile").read_text(), re.M)
    loaded = config.load(environ={"PINOTAGE_PROFILE": chosen}, cwd=str(ROOT))
    assert (loaded.registry.url, loaded.deploy.target) == ("docker.io", "kubernetes")
    assert loaded.image_name() == "docker.io/pinotage/presentation"
    demo = config.load(environ={}, cwd=str(ROOT))
    assert (demo.registry.url, demo.deploy.target) == ("127.0.0.1:5000", "docker")
