"""Careless and hostile input through the real command: one clear line, exit 2 (or 1 for a service), no traceback.

Each row writes some files into an empty folder, runs ``python -m pipeline`` there and checks the
exit code and the line it printed. Every run also holds secrets in its environment and in its
kubeconfig: none of them may appear in what it prints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOKEN = "kube-t0ken-abcdef123456"
SECRETS = {"PINOTAGE_REGISTRY_PASSWORD": "reg-pass-98765zyx", "PINOTAGE_GITHUB_TOKEN": "ghp_4a1b2c3d4e5f6a7b8c9d",
           "PINOTAGE_JENKINS_TOKEN": "11aa22bb33cc44dd55ee66ff77aa88bb99"}
KUBECONFIG = ("apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n"
              "  cluster: {server: 'https://127.0.0.1:1', insecure-skip-tls-verify: true}\n"
              "users:\n- name: u\n  user: {token: %s}\ncontexts:\n- name: c\n  context: {cluster: k, user: u}\n")
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))
RECORD = {"id": "20260101T000000Z-abcdef", "app": "presentation", "commit": "a" * 40,
          "image": "r/p@sha256:" + "0" * 64, "target": "docker", "build_url": "", "started_at": "2026-01-01T00:00:00+00:00",
          "finished_at": "2026-01-01T00:01:00+00:00", "outcome": "deployed", "phases_s": {"deploy": 1.0}}
LEDGER = ".pinotage/ledger-presentation.jsonl"
KUBE = ["--set", "deploy.target=kubernetes", "--set", "kubeconfig=kubeconfig.yaml"]
HISTORY = ["history", "--set", "state_dir=.pinotage"]  # the ledger under the folder, not the machine's
MANIFEST = {"k8s/presentation/deployment.yaml": (REPO / "k8s/presentation/deployment.yaml").read_text()}


def state(**sections) -> str:
    return json.dumps({"version": 1, **sections})


# id, files {name: text | bytes | None (a folder)}, argv, extra environment, exit code, expected text
CASES = [
    ("config-not-utf8", {"pinotage.yaml": b"app: \xff\n"}, ["config"], {}, 2,
     "pinotage.yaml:1: the configuration file is not UTF-8 text"),
    ("config-binary", {"pinotage.yaml": b"app: x\n\x00\x01"}, ["config"], {}, 2, "is binary, not text"),
    ("config-a-directory", {"pinotage.yaml": None}, ["config"], {}, 2, "pinotage.yaml: is a directory"),
    ("config-too-large", {"pinotage.yaml": "# padding\n" * 500_000}, ["config"], {}, 2, "larger than 256 KiB"),
    ("config-nested-deep", {"pinotage.yaml": "app: " + "[" * 5000}, ["config"], {}, 2, "nested deeper than 64"),
    ("config-huge-int", {"pinotage.yaml": "image:\n  port: 1" + "0" * 5000}, ["config"], {}, 2,
     "pinotage.yaml:2: a number of more than 24 digits"),
    ("config-python-tag", {"pinotage.yaml": "app: !!python/object/apply:os.system [id]\n"}, ["config"], {}, 2,
     "tag:yaml.org,2002:python/object/apply:os.system is not allowed here"),
    ("config-unknown-tag", {"pinotage.yaml": "app: !vault abc\n"}, ["config"], {}, 2, "the tag !vault is not allowed"),
    ("config-complex-key", {"pinotage.yaml": "? [a, b]\n: 1\n"}, ["config"], {}, 2, "a key must be a plain value"),
    ("config-alias-bomb", {"pinotage.yaml": ALIAS_BOMB}, ["config"], {}, 2, "more than 64 aliases"),
    ("config-duplicate-key", {"pinotage.yaml": "app: one\nimage:\n  port: 80\napp: two\n"}, ["config"], {}, 2,
     "pinotage.yaml:4: duplicate key 'app' (first given on line 1)"),
    ("config-20k-unknown-keys", {"pinotage.yaml": "".join(f"k{i}: 1\n" for i in range(20_000))}, ["config"],
     {}, 2, "and 19980 more problems"),
    ("env-typo", {}, ["config"], {"PINOTAGE_REGISTRY_URLL": "x"}, 2,
     "env PINOTAGE_REGISTRY_URLL: no such setting (did you mean 'PINOTAGE_REGISTRY_URL'?)"),
    ("port-too-high", {}, ["config", "--set", "image.port=70000"], {}, 2, "expected a number from 1 to 65535"),
    ("port-zero", {}, ["config"], {"PINOTAGE_DEPLOY_HOST_PORT": "0"}, 2, "expected a number from 1 to 65535, got 0"),
    ("unicode-digits", {}, ["config", "--set", "deploy.host_port=\u0661\u0662"], {}, 2, "expected a whole number"),
    ("app-empty", {}, ["config", "--set", "app="], {}, 2, "app: expected a DNS-1123 label"),
    ("app-not-a-label", {"pinotage.yaml": "app: My_App\n"}, ["config"], {}, 2, "pinotage.yaml:1: app: expected a DNS-1123"),
    ("box-version-path", {}, ["config", "--set", "cluster.box_version=../../etc"], {}, 2, "expected a version such as"),
    ("state-not-utf8", {"s.json": b"\xff\xfe{}"}, ["push", "--state", "s.json"], {}, 2,
     "s.json:1: the state file is not UTF-8 text"),
    ("state-not-json", {"s.json": "[" * 100_000}, ["push", "--state", "s.json"], {}, 2, "not a Pinotage state file"),
    ("state-extra-key", {"s.json": state(image={"name": "r/p", "tag": "t", "evil": 1})}, ["push", "--state", "s.json"],
     {}, 2, "s.json: image: not an image: unknown key 'evil'"),
    ("state-missing-key", {"s.json": state(image={"name": "r/p"})}, ["push", "--state", "s.json"], {}, 2,
     "not an image: missing key 'tag'"),
    ("state-wrong-type", {"s.json": state(image={"name": "r/p", "tag": ["t"]})}, ["push", "--state", "s.json"], {},
     2, "image: not an image: tag is a list, expected a string"),
    ("state-unknown-section", {"s.json": state(extra={})}, ["push", "--state", "s.json"], {}, 2, "unknown key 'extra'"),
    ("state-a-directory", {"d/x": ""}, ["context", "--state", "d"], {"BRANCH_NAME": "topic", "BUILD_NUMBER": "3",
                                                                    "GIT_COMMIT": "a" * 40}, 2,
     "d: is a directory, expected the state file"),
    ("state-not-writable", {}, ["context", "--state", "/proc/version"], {"BRANCH_NAME": "topic", "BUILD_NUMBER": "3",
                                                                        "GIT_COMMIT": "a" * 40}, 2,
     "/proc/version: cannot write the state file"),
    ("ledger-wrong-type", {LEDGER: json.dumps({**RECORD, "commit": 7}) + "\n"}, HISTORY, {}, 2,
     "ledger-presentation.jsonl:1: not a deploy record: commit is a number, expected a string"),
    ("ledger-not-utf8", {LEDGER: json.dumps(RECORD).encode() + b'\n{"id": "\xff"}\n'}, HISTORY, {}, 2,
     "ledger-presentation.jsonl:2: the ledger line is not UTF-8"),
    ("ledger-a-directory", {LEDGER: None}, HISTORY, {}, 2, "is a directory, expected the ledger file"),
    ("kubeconfig-token-newline", {**MANIFEST, "kubeconfig.yaml": KUBECONFIG % json.dumps(TOKEN + "\n")}, ["history", *KUBE], {},
     2, "user 'u': the token holds a space or a line break"),
    ("kubeconfig-not-utf8", {**MANIFEST, "kubeconfig.yaml": b"users: \xff" + TOKEN.encode()}, ["history", *KUBE], {}, 2,
     "the kubeconfig is not UTF-8 text"),
    ("kubeconfig-tag", {**MANIFEST, "kubeconfig.yaml": f"users: !!python/name:os.system {TOKEN}\n"}, ["history", *KUBE], {}, 2,
     "kubeconfig.yaml:1: the tag"),
    ("api-server-unreachable", {**MANIFEST, "kubeconfig.yaml": KUBECONFIG % TOKEN}, ["history", *KUBE], {}, 1,
     "https://127.0.0.1:1/api/v1/namespaces/presentation/configmaps/pinotage-ledger-presentation failed: "
     "connection refused"),
    ("manifest-missing", {}, ["history", *KUBE], {}, 2, "k8s/presentation/deployment.yaml: no such manifest"),
    ("manifest-without-metadata", {"k8s/presentation/deployment.yaml": "kind: Deployment\nspec: {}\n"},
     ["history", *KUBE], {}, 2, "the Deployment has no metadata.name"),
    ("jenkins-unreachable", {}, ["jobs", "diff", "--jobs-dir", str(REPO / "jobs"), "--set", "jenkins.user=bob", "--set",
                                 "jenkins.url=http://jenkins:" + SECRETS["PINOTAGE_JENKINS_TOKEN"] + "@127.0.0.1:1"],
     {}, 1, "http://jenkins:****@127.0.0.1:1/crumbIssuer/api/json failed: connection refused"),
    ("rollback-to-empty", {"kubeconfig.yaml": KUBECONFIG % TOKEN}, ["rollback", "--to", "", *KUBE], {}, 2,
     "argument --to: expected a commit hash or a prefix of 4 to 40 hex digits, got ''"),
    ("rollback-to-not-hex", {}, ["rollback", "--to", "HEAD~1"], {}, 2, "got 'HEAD~1'"),
    ("registry-login-in-url", {}, ["config", "--set", "registry.url=bob:hunter2hunter2@reg.example:5000"], {}, 2,
     "a registry login does not belong in the URL, got '…@reg.example:5000'"),
    ("flannel-manifest-missing", {}, ["cluster", "network", "--dry-run"], {}, 2,
     "k8s/network/flannel.yaml: no such network add-on manifest"),
    ("flannel-manifest-a-directory", {"k8s/network/flannel.yaml": None}, ["cluster", "network", "--dry-run"], {}, 2,
     "k8s/network/flannel.yaml: is a directory, expected a network add-on manifest"),
    ("flannel-manifest-not-flannel", {"k8s/network/flannel.yaml": "kind: DaemonSet\n"},
     ["cluster", "network", "--dry-run"], {}, 2, "k8s/network/flannel.yaml: not flannel's manifest"),
    ("url-credentials-masked", {"pinotage.yaml": "jenkins:\n  url: https://bob:hunter2hunter2@ci.example\n"},
     ["config"], {}, 0, "https://bob:****@ci.example"),
]


@pytest.mark.parametrize("files, argv, extra, code, expected", [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_bad_input_is_one_line_and_leaks_nothing(tmp_path, files, argv, extra, code, expected):
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            path.mkdir()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    environ = {key: value for key, value in os.environ.items() if not key.startswith("PINOTAGE_")}
    environ.update({**SECRETS, **extra, "PYTHONPATH": str(REPO)})
    done = subprocess.run([sys.executable, "-m", "pipeline", *argv], cwd=tmp_path, env=environ,
                          capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output[-3000:]
    assert done.returncode == code, output[-3000:]
    assert expected in output, output[-3000:]
    if code:
        errors = [line for line in done.stderr.splitlines() if line.startswith("pinotage: error:")]
        assert 1 <= len(errors) <= 21, output[-3000:]
        assert all(len(line) < 600 for line in done.stderr.splitlines())
    for secret in [*SECRETS.values(), TOKEN, "hunter2hunter2"]:
        assert secret not in output
