"""Property tests of the readers of untrusted files: only Pinotage's own errors escape, and no secret leaks.

Each reader (configuration, file ledger, state file, kubeconfig) gets generated input: random
bytes, fragments of YAML and JSON stitched together, and well-formed documents of the wrong shape.
It must return a value or raise a ``PinotageError``; never another exception. The process holds
secrets in its environment and the kubeconfig holds a token: no message may quote one.
Examples are derandomised and bounded, so the whole file runs in seconds, the same way every time.
"""

from __future__ import annotations

import json
import string

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import config as config_module
from pipeline import kube, ledger, redact, state
from pipeline.errors import PinotageError

SETTINGS = settings(max_examples=80, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
TOKEN = "t0ken-Zq8vW2nR5xK7"
SECRETS = {"PINOTAGE_REGISTRY_PASSWORD": "pa55-Hm3kR9dQ1w", "PINOTAGE_GITHUB_TOKEN": "ghp_Lx2Vb8Nc4Qz6",
           "PINOTAGE_JENKINS_TOKEN": "9f8e7d6c5b4a39281706f5e4d3c2b1a0"}

YAML_PIECES = ["app: ", "image:\n", "  port: ", "deploy:\n  target: ", "registry:\n  url: ", "cluster:\n",
               "  box_version: ", "!!python/object/apply:os.system ", "!!binary ", "!custom ", "&a ", "*a", "*b",
               "[", "]", "{", "}", "- ", "? ", ": ", "\n", "\n  ", "1" * 40, "0x1F", "é", "\x00", "\t", "'", '"',
               "~", "null", "true", "2026-01-01", "<<: *a\n", "---\n", "...\n", "%YAML 1.1\n", "١٢", "\\x", ","]
JSON_PIECES = ['{', '}', '[', ']', '"id"', '"outcome"', '"deployed"', '"commit"', '"phases_s"', ':', ',', '1e999',
               '9' * 50, 'null', 'true', '"\\ud800"', '"x"', '\n', '"version"', '1', '"image"', '"name"', '"tag"']
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=5)), max_leaves=25)


def stitched(pieces: list[str]) -> st.SearchStrategy[bytes]:
    return st.lists(st.sampled_from(pieces), max_size=40).map(lambda parts: "".join(parts).encode())


def documents(keys: list[str]) -> st.SearchStrategy[bytes]:
    """Well-formed YAML of roughly the right keys with values of any shape."""
    tree = st.dictionaries(st.sampled_from(keys), st.one_of(json_values, st.dictionaries(
        st.sampled_from(keys), json_values, max_size=4)), max_size=6)
    return tree.map(lambda data: yaml.safe_dump(data).encode())


def any_input(pieces: list[str], keys: list[str]) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=300), stitched(pieces), documents(keys))


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in [TOKEN, *SECRETS.values()]:
            assert secret not in text


CONFIG_KEYS = ["app", "image", "deploy", "registry", "cluster", "port", "target", "url", "box_version", "profiles",
               "state_dir", "kubeconfig", "deadlines", "host_port"]


@SETTINGS
@given(content=any_input(YAML_PIECES, CONFIG_KEYS),
       variables=st.dictionaries(st.sampled_from(["PINOTAGE_IMAGE_PORT", "PINOTAGE_APP", "PINOTAGE_DEPLOY_TARGET",
                                                  "PINOTAGE_IMAGE_TAGS", "PINOTAGE_CLUSTER_WORKERS", "PINOTAGE_X"]),
                                 st.text(max_size=30), max_size=3))
def test_the_configuration_loader_raises_only_its_own_errors(tmp_path, content, variables):
    (tmp_path / "pinotage.yaml").write_bytes(content)
    try:
        config_module.load(environ={**SECRETS, **variables}, cwd=str(tmp_path))
    except PinotageError as e:
        assert_no_secret(*e.lines(), e.hint)


RECORD = {"id": "20260101T000000Z-abcdef", "app": "p", "commit": "a" * 40, "image": "r/p@sha256:" + "0" * 64,
          "target": "docker", "build_url": "", "started_at": "2026-01-01T00:00:00+00:00",
          "finished_at": "2026-01-01T00:01:00+00:00", "outcome": "deployed"}


@SETTINGS
@given(lines=st.lists(st.one_of(
    st.binary(max_size=80), stitched(JSON_PIECES),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(sorted(RECORD)), json_values, max_size=4).map(
        lambda changed: json.dumps({**RECORD, **changed}).encode())), max_size=5), torn=st.booleans())
def test_the_ledger_reader_raises_only_its_own_errors(tmp_path, lines, torn):
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(b"\n".join(lines) + (b"" if torn else b"\n"))
    try:
        records = ledger.FileLedger(path, warn=lambda line: None).records()
    except PinotageError:
        return
    assert all(isinstance(r, ledger.Record) and isinstance(r.commit, str) for r in records)


@SETTINGS
@given(content=st.one_of(st.binary(max_size=200), stitched(JSON_PIECES),
                         st.dictionaries(st.sampled_from(["version", "context", "image", "deployment", "stage", "x"]),
                                         json_values, max_size=4).map(lambda d: json.dumps(d).encode()),
                         st.dictionaries(st.sampled_from(["name", "tag", "tags", "digest", "commit", "built", "x"]),
                                         json_values, max_size=6).map(
                             lambda image: json.dumps({"version": 1, "image": image}).encode())))
def test_the_state_reader_raises_only_its_own_errors(tmp_path, content):
    path = tmp_path / "s.json"
    path.write_bytes(content)
    try:
        data = state.read_state(path)
    except PinotageError:
        return
    if isinstance(data.get("image"), dict):
        assert isinstance(state.image_from_json(data["image"]), state.Image)


KUBE_PIECES = YAML_PIECES + ["users:\n", "- name: u\n", "  user:\n", f"    token: {TOKEN}\n", f"token: '{TOKEN}\n'",
                             "clusters:\n", "contexts:\n", "current-context: c\n", "  cluster: {server: ", TOKEN]
KUBE_KEYS = ["apiVersion", "kind", "users", "clusters", "contexts", "current-context", "user", "cluster", "context",
             "name", "server", "token", "certificate-authority-data"]


def kubeconfigs() -> st.SearchStrategy[bytes]:
    """Kubeconfig-shaped documents holding TOKEN, with random holes and wrong types."""
    names = st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=3)
    user = st.fixed_dictionaries({"name": names, "user": st.fixed_dictionaries(
        {"token": st.sampled_from([TOKEN, TOKEN + "\n", f" {TOKEN}", TOKEN.encode().hex()])},
        optional={"client-key-data": st.text(max_size=10)})})
    doc = st.fixed_dictionaries(
        {"users": st.lists(user, max_size=2)},
        optional={"apiVersion": st.just("v1"), "kind": st.just("Config"), "current-context": names,
                  "clusters": st.lists(st.fixed_dictionaries({"name": names}, optional={"cluster": st.fixed_dictionaries(
                      {"server": st.sampled_from(["https://127.0.0.1:1", "", "not a url", TOKEN])})}), max_size=2),
                  "contexts": st.lists(st.fixed_dictionaries({"name": names}, optional={"context": st.dictionaries(
                      st.sampled_from(["cluster", "user", "namespace"]), names)}), max_size=2),
                  "junk": json_values})
    return doc.map(lambda data: yaml.safe_dump(data).encode())


@SETTINGS
@given(content=st.one_of(any_input(KUBE_PIECES, KUBE_KEYS), kubeconfigs()))
def test_the_kubeconfig_loader_raises_only_its_own_errors_and_quotes_no_token(tmp_path, content):
    path = tmp_path / "kubeconfig"
    path.write_bytes(content)
    config = config_module.load(environ={}, overrides=[f"kubeconfig={path}"], cwd=str(tmp_path))
    try:
        kube.connect(config, SECRETS)  # builds a client; contacts nothing
    except PinotageError as e:
        assert_no_secret(*e.lines(), e.hint, str(e.__cause__ or ""))


@pytest.mark.parametrize("text", ["https://bob:hunter2hunter2@reg.example/v2/", "git+ssh://hunter2hunter2@host/r.git"])
def test_url_credentials_are_masked_in_any_line(text):
    assert "hunter2hunter2" not in redact.redact(f"error: {text} failed")
