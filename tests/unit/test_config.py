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
