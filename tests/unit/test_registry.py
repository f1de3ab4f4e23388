"""Registry credentials and addressing; the HTTP flow itself runs against the real registry in integration."""

from __future__ import annotations

import base64
import json

import pytest

from pipeline import config as config_module
from pipeline import registry
from pipeline.errors import AuthError, BadInput


def a_config(**env: str) -> config_module.Config:
    return config_module.load(environ=env, cwd="/nonexistent")


def test_credentials_never_show_the_password():
    credentials = registry.Credentials("ci", "s3cret-value", "env PINOTAGE_REGISTRY_PASSWORD")
    assert "s3cret-value" not in repr(credentials) and "s3cret-value" not in str(credentials)
    assert credentials.auth_config() == {"username": "ci", "password": "s3cret-value"}


@pytest.mark.parametrize("env, expected", [
    ({"PINOTAGE_REGISTRY_USER": "ci", "PINOTAGE_REGISTRY_PASSWORD": "pw"}, ("ci", "pw", "env PINOTAGE_REGISTRY_PASSWORD")),
    ({"PINOTAGE_REGISTRY_USER": "ci"}, None),
    ({}, None),
], ids=["from-env", "user-without-password", "nothing"])
def test_read_credentials_from_the_environment(env, expected, tmp_path):
    env = {**env, "HOME": str(tmp_path)}  # no docker config there
    found = registry.read_credentials(a_config(**env), env)
    assert (found.user, found.password, found.source) == expected if expected else found is None


def test_a_password_without_a_user_is_bad_input(tmp_path):
    env = {"PINOTAGE_REGISTRY_PASSWORD": "pw", "HOME": str(tmp_path)}
    with pytest.raises(BadInput, match="registry.user is empty") as bad:
        registry.read_credentials(a_config(**env), env)
    assert "pw" not in bad.value.message


def write_docker_config(folder, auths):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"auths": auths}))


@pytest.mark.parametrize("auths, host, expected", [
    ({"127.0.0.1:5000": {"auth": base64.b64encode(b"deployer:from-file").decode()}}, "127.0.0.1:5000",
     ("deployer", "from-file")),
    ({"http://127.0.0.1:5000": {"auth": base64.b64encode(b"deployer:with-scheme").decode()}}, "127.0.0.1:5000",
     ("deployer", "with-scheme")),
    ({"other.example:443": {"auth": base64.b64encode(b"x:y").decode()}}, "127.0.0.1:5000", None),
    # exactly what `docker login` (no server argument) writes for Docker Hub
    ({"https://index.docker.io/v1/": {"auth": base64.b64encode(b"hubuser:dckr_pat_from-file").decode()}},
     "docker.io", ("hubuser", "dckr_pat_from-file")),
    ({"https://index.docker.io/v1/": {"auth": base64.b64encode(b"hubuser:dckr_pat_x").decode()}},
     "index.docker.io", ("hubuser", "dckr_pat_x")),
    ({"https://index.docker.io/v1/": {"auth": base64.b64encode(b"hubuser:dckr_pat_y").decode()}},
     "127.0.0.1:5000", None),
], ids=["exact-host", "host-with-scheme", "other-registry", "docker-hub-login", "docker-hub-index-spelling",
        "docker-hub-login-is-not-for-another-registry"])
def test_read_credentials_from_a_docker_config_file(tmp_path, auths, host, expected):
    write_docker_config(tmp_path / "dockercfg", auths)
    env = {"DOCKER_CONFIG": str(tmp_path / "dockercfg"), "HOME": str(tmp_path)}
    found = registry.read_credentials(a_config(PINOTAGE_REGISTRY_URL=host), env)
    if expected is None:
        assert found is None
    else:
        assert (found.user, found.password) == expected
        assert found.source == str(tmp_path / "dockercfg" / "config.json")


def test_the_environment_wins_over_the_docker_config_file(tmp_path):
    write_docker_config(tmp_path / ".docker", {"127.0.0.1:5000": {"auth": base64.b64encode(b"a:b").decode()}})
    env = {"HOME": str(tmp_path), "PINOTAGE_REGISTRY_USER": "ci", "PINOTAGE_REGISTRY_PASSWORD": "env-pw"}
    assert registry.read_credentials(a_config(**env), env).password == "env-pw"


@pytest.mark.parametrize("content, refused", [
    ('{"auths": {"127.0.0.1:5000": {"auth": "!!not-base64:secret"}}}', True),
    ("{not json, secret", False),  # the docker SDK reads an unparsable file as empty
], ids=["bad-auth-field", "not-json"])
def test_a_broken_docker_config_file_is_named_without_its_content(tmp_path, content, refused):
    (tmp_path / ".docker").mkdir()
    (tmp_path / ".docker" / "config.json").write_text(content)
    env = {"HOME": str(tmp_path)}
    if refused:
        with pytest.raises(BadInput, match="config.json: cannot read the credentials for 127.0.0.1:5000") as bad:
            registry.read_credentials(a_config(), env)
        assert "secret" not in bad.value.message
    else:
        assert registry.read_credentials(a_config(), env) is None


@pytest.mark.parametrize("name, parts", [
    ("127.0.0.1:5000/pinotage/presentation", ("127.0.0.1:5000", "pinotage/presentation")),
    ("localhost/p", ("localhost", "p")),
    ("registry.example.com/team/app", ("registry.example.com", "team/app")),
    ("docker.io/acme/slides", ("docker.io", "acme/slides")),
    ("acme/slides", ("docker.io", "acme/slides")),
    ("slides", ("docker.io", "library/slides")),
], ids=["host-port", "localhost", "host-with-dot", "docker-hub-named", "docker-hub-implied", "docker-hub-library"])
def test_an_image_name_splits_into_registry_and_repository_as_the_docker_cli_reads_it(name, parts):
    assert registry.split_name(name) == parts


@pytest.mark.parametrize("url, base", [
    ("127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("localhost:5000", "http://localhost:5000"),
    ("[::1]:5000", "http://[::1]:5000"),
    ("registry.example.com", "https://registry.example.com"),
    ("registry.example.com:8443", "https://registry.example.com:8443"),
    ("docker.io", "https://registry-1.docker.io"),
    ("http://10.0.0.5:5000", "http://10.0.0.5:5000"),
], ids=["loopback-v4", "localhost", "loopback-v6", "remote", "remote-port", "docker-hub", "explicit-scheme"])
def test_api_base(url, base):
    assert registry.api_base(url) == base


def test_no_credentials_for_a_registry_that_asks_for_them_is_an_auth_error():
    client = registry.RegistryClient("127.0.0.1:5000", None)
    with pytest.raises(AuthError, match="asks for credentials and none are set"):
        client._authorize('Basic realm="test"', "p")


def test_a_challenge_without_a_known_scheme_is_refused():
    client = registry.RegistryClient("127.0.0.1:5000", registry.Credentials("u", "p"))
    with pytest.raises(Exception, match="does not name"):
        client._authorize('Negotiate', "p")
