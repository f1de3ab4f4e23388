"""Connecting to a cluster from a kubeconfig that does not parse: one line, and nothing of the file in it.

The kubeconfig holds the deployer's token, so the error names the file and the line only.
"""

from __future__ import annotations

import pytest

from pipeline import config as pinotage_config
from pipeline import kube
from pipeline.errors import BadInput

SECRET = "s3cr3t-T0KEN"
GOOD = ("apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster: {server: 'https://127.0.0.1:6443'}\n"
        "users:\n- name: u\n  user: {token: " + SECRET + "}\ncontexts:\n- name: c\n  context: {cluster: k, user: u}\n")


@pytest.mark.parametrize("content, expected", [
    (f"apiVersion: v1\nusers:\n- name: u\n  user:\n    token: {SECRET}\n   bad: [\n".encode(),
     "{file}:6: not valid YAML (line 6, column 4)"),
    (f'users:\n- name: u\n  user: {{token: "\\xZZ{SECRET}"}}\n'.encode(), "{file}:3: not valid YAML"),
    (f"users: *{SECRET}\n".encode(), "{file}:1: not valid YAML"),
    (b"users: \xff" + SECRET.encode() + b"\n", "{file}:1: the kubeconfig is not UTF-8 text (a bad byte at offset 7)"),
    (f"- {SECRET}\n".encode(), "{file}: not a kubeconfig (its top level is not a mapping)"),
    (f"just a {SECRET}\n".encode(), "{file}: not a kubeconfig (its top level is not a mapping)"),
], ids=["syntax-error", "bad-escape-in-a-value", "undefined-alias", "not-utf8", "top-level-list", "top-level-string"])
@pytest.mark.parametrize("how", ["config-field", "KUBECONFIG-second-of-two"])
def test_malformed_kubeconfig_is_bad_input_naming_file_and_line_only(tmp_path, how, content, expected):
    good, broken = tmp_path / "good.yaml", tmp_path / "broken.yaml"
    good.write_text(GOOD)
    broken.write_bytes(content)
    if how == "config-field":
        settings, environ, source = [f"kubeconfig={broken}"], {}, "kubeconfig"
    else:
        settings, environ, source = [], {"KUBECONFIG": f"{good}:{broken}"}, "KUBECONFIG"
    config = pinotage_config.load(environ={}, overrides=settings, cwd=str(tmp_path))
    with pytest.raises(BadInput) as e:
        kube.connect(config, environ)
    message = e.value.message
    assert message.startswith(f"{source}: ")
    assert expected.format(file=broken) in message, message
    assert "\n" not in message
    assert SECRET not in message and SECRET not in e.value.hint
    assert e.value.__cause__ is None and e.value.__suppress_context__, "the parser's error quotes the file"
