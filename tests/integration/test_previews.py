"""Previews of pull requests against the Kubernetes double and the GitHub double.

Two namespaces per test: the app's, with k8s/presentation/rbac.yaml, and the previews', with
k8s/previews/rbac.yaml; each deployer gets a ServiceAccount token (TokenRequest), so RBAC decides
every request. `pinotage preview deploy` runs as a Jenkins PR build would (Jenkins' variables, the
state file the earlier stages wrote, the preview deployer's kubeconfig and the GitHub token bound),
`pinotage preview prune` asks the GitHub double which pull requests are still open.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from pipeline import cli
from pipeline.context import BuildContext
from pipeline.state import Image, write_state
from tests.conftest import ROOT
from tests.integration.kube_setup import account_token, install_into

pytestmark = pytest.mark.integration

SLUG = "pinotage/presentation"
PREVIEW_RBAC = ROOT / "k8s" / "previews" / "rbac.yaml"
APP_RBAC = ROOT / "k8s" / "presentation" / "rbac.yaml"
IMAGE = "127.0.0.1:5000/pinotage/presentation"
SECRET_VARIABLES = ("PINOTAGE_GITHUB_TOKEN", "PINOTAGE_REGISTRY_PASSWORD", "PINOTAGE_KUBECONFIG")


def commit(n: int) -> str:
    return hashlib.sha1(f"preview {n}".encode()).hexdigest()


@pytest.fixture(scope="module")
def doubles():
    from tests.fakes.github import FakeGithub
    from tests.fakes.kube import FakeKube

    kube = FakeKube(token=secrets.token_urlsafe(16), pod_start_s=0.1).start()
    with FakeGithub(token=secrets.token_urlsafe(16), repos=(SLUG,)) as github:
        yield kube, github
    kube.stop()


class Watched(dict):
    """An environment that remembers which variables were read."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.read: set[str] = set()

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)


class Env:
    def __init__(self, kube, github, admin, app_ns: str, preview_ns: str, configs: dict, tmp_path):
        self.kube, self.github, self.admin = kube, github, admin
        self.app_ns, self.preview_ns, self.configs, self.tmp = app_ns, preview_ns, configs, tmp_path

    def flags(self) -> list[str]:
        settings = {"preview.enabled": "true", "preview.namespace": self.preview_ns, "deploy.namespace": self.app_ns,
                    "deploy.target": "kubernetes", "github.api_url": self.github.url, "github.repo": SLUG,
                    "registry.url": "127.0.0.1:5000", "registry.user": "pinotage", "deadlines.rollout_s": "60",
                    "preview.url": "https://{name}.previews.example.com/"}
        return ["-c", str(ROOT / "pinotage.yaml"), *(a for k, v in settings.items() for a in ("--set", f"{k}={v}"))]

    def jenkins(self, pr: int, n: int, *, fork: str = "", kubeconfig: str = "preview") -> Watched:
        """The environment of a Jenkins PR build's Preview stage, with its credentials bound."""
        env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "BRANCH_NAME": f"PR-{pr}", "CHANGE_ID": str(pr),
               "CHANGE_BRANCH": f"change-{pr}", "CHANGE_TARGET": "master", "BUILD_NUMBER": "7",
               "BUILD_URL": f"https://jenkins.example.com/job/presentation/job/PR-{pr}/7/", "GIT_COMMIT": commit(n),
               "PINOTAGE_GITHUB_TOKEN": self.github.token, "PINOTAGE_REGISTRY_PASSWORD": "registry-secret",
               "PINOTAGE_KUBECONFIG": str(self.configs[kubeconfig])}
        if fork:
            env["CHANGE_FORK"] = fork
        return Watched(env)

    def state(self, pr: int, n: int, *, fork: str = ""):
        path = self.tmp / f"state-{pr}-{n}.json"
        context = BuildContext(commit=commit(n), branch=f"change-{pr}", event="pull-request", change_id=str(pr),
                               change_target="master", change_fork=fork)
        digest = "sha256:" + hashlib.sha256(commit(n).encode()).hexdigest()
        write_state(path, replace=True, context=context,
                    image=Image(name=IMAGE, tag=f"pr-{pr}", digest=digest, commit=commit(n)))
        return path, f"{IMAGE}@{digest}"

    def pinotage(self, capsys, environ, *args: str) -> tuple[int, str]:
        code = cli.main([*args, *self.flags()], environ=environ)
        out, err = capsys.readouterr()
        return code, out + err

    def deploy(self, capsys, pr: int, n: int, **kwargs) -> tuple[int, str, Watched]:
        path, _ = self.state(pr, n, fork=kwargs.get("fork", ""))
        environ = self.jenkins(pr, n, **kwargs)
        code, out = self.pinotage(capsys, environ, "preview", "deploy", "--state", str(path))
        return code, out, environ

    def live(self, name: str, namespace: str = "") -> dict | None:
        from kubernetes import client
        from kubernetes.client import ApiException

        try:
            return client.AppsV1Api(self.admin).read_namespaced_deployment(name, namespace or self.preview_ns).to_dict()
        except ApiException as e:
            assert e.status == 404
            return None

    def requests_of(self, namespace: str, account: str):
        return [r for r in self.kube.requests if r.user == f"system:serviceaccount:{namespace}:{account}"]


@pytest.fixture
def env(doubles, tmp_path):
    from kubernetes import client, config

    kube, github = doubles
    admin = config.new_client_from_config(config_file=str(kube.kubeconfig(tmp_path / "admin.yaml")),
                                          persist_config=False)
    core = client.CoreV1Api(admin)
    suffix = secrets.token_hex(3)
    app_ns, preview_ns = f"app-{suffix}", f"previews-{suffix}"
    configs = {}
    for namespace, rbac, account, key in ((app_ns, APP_RBAC, "pinotage-deployer", "app"),
                                          (preview_ns, PREVIEW_RBAC, "pinotage-preview-deployer", "preview")):
        core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        install_into(admin, rbac, namespace)
        token = account_token(admin, namespace, account)
        configs[key] = kube.kubeconfig(tmp_path / f"{key}.yaml", token=token, namespace=namespace)
    yield Env(kube, github, admin, app_ns, preview_ns, configs, tmp_path)
    for namespace in (app_ns, preview_ns):
        core.delete_namespace(namespace)
    admin.close()


def test_same_repo_pr_gets_a_preview_and_a_status_linking_to_it(env, capsys):
    env.github.open_pull(SLUG, 42, commit(1))
    code, out, _ = env.deploy(capsys, 42, 1)
    assert code == 0, out
    url = "https://presentation-pr-42.previews.example.com/"
    assert f"preview:  {url} serves #42" in out
    live = env.live("presentation-pr-42")
    _, image = env.state(42, 1)
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == image
    assert live["spec"]["replicas"] == 1 and live["status"]["ready_replicas"] == 1
    assert live["spec"]["template"]["spec"]["image_pull_secrets"][0]["name"] == "pinotage-pull-presentation"
    [status] = env.github.statuses[(SLUG, commit(1))]
    assert (status["state"], status["context"], status["target_url"]) == ("success", "pinotage/preview", url)
    assert env.live("presentation", env.app_ns) is None  # the app's namespace is untouched


def test_a_new_commit_updates_the_preview_in_place(env, capsys):
    env.github.open_pull(SLUG, 43, commit(2))
    assert env.deploy(capsys, 43, 1)[0] == 0
    assert env.deploy(capsys, 43, 2)[0] == 0
    live = env.live("presentation-pr-43")
    assert live["metadata"]["annotations"]["pinotage.dev/commit"] == commit(2)
    code, out = env.pinotage(capsys, env.jenkins(43, 2), "preview", "list")
    assert code == 0, out
    [row] = [line for line in out.splitlines() if line.startswith("presentation-pr-43")]
    assert row.split()[:3] == ["presentation-pr-43", "#43", commit(2)[:12]]
    assert row.split()[-1] == "https://presentation-pr-43.previews.example.com/"
    code, out = env.pinotage(capsys, env.jenkins(43, 2), "preview", "list", "--json")
    assert code == 0, out
    assert [(p["name"], p["pr"], p["commit"]) for p in json.loads(out)] == [("presentation-pr-43", "43", commit(2))]


def test_fork_pr_gets_no_preview_and_reads_no_credential(env, capsys):
    env.github.open_pull(SLUG, 44, commit(3), fork="someone/presentation")
    kube_before, github_before = len(env.kube.requests), len(env.github.requests)
    code, out, environ = env.deploy(capsys, 44, 3, fork="someone/presentation")
    assert code == 1, out
    assert "gets no preview" in out and "fork someone/presentation" in out
    assert environ.read & set(SECRET_VARIABLES) <= {"PINOTAGE_KUBECONFIG"}  # a setting's path, never opened
    assert "PINOTAGE_GITHUB_TOKEN" not in environ.read and "PINOTAGE_REGISTRY_PASSWORD" not in environ.read
    assert (len(env.kube.requests), len(env.github.requests)) == (kube_before, github_before)
    assert env.live("presentation-pr-44") is None
    assert (SLUG, commit(3)) not in env.github.statuses


def test_closing_the_pr_and_pruning_removes_its_preview_only(env, capsys):
    for pr, n in ((45, 4), (46, 5)):
        env.github.open_pull(SLUG, pr, commit(n))
        assert env.deploy(capsys, pr, n)[0] == 0
    env.github.close_pull(SLUG, 45, merged=True)
    environ = env.jenkins(45, 4)
    code, out = env.pinotage(capsys, environ, "preview", "prune", "--dry-run")
    assert code == 0 and "would delete presentation-pr-45: pull request #45 is merged" in out, out
    assert env.live("presentation-pr-45") is not None
    code, out = env.pinotage(capsys, environ, "preview", "prune")
    assert code == 0, out
    assert "deleting presentation-pr-45: pull request #45 is merged" in out
    assert env.live("presentation-pr-45") is None and env.live("presentation-pr-46") is not None
    from kubernetes import client

    services = client.CoreV1Api(env.admin).list_namespaced_service(env.preview_ns).items
    assert [s.metadata.name for s in services] == ["presentation-pr-46"]


def test_prune_deletes_nothing_when_github_cannot_say(env, capsys):
    env.github.open_pull(SLUG, 50, commit(10))
    assert env.deploy(capsys, 50, 10)[0] == 0
    env.github.close_pull(SLUG, 50)
    env.github.store.pulls.pop((SLUG, 50))  # GitHub shows it no more (a 404, as for a token that cannot see it)
    code, out = env.pinotage(capsys, env.jenkins(50, 10), "preview", "prune")
    assert code == 1 and "GitHub pull request #50 of pinotage/presentation: 404 Not Found" in out, out
    assert env.live("presentation-pr-50") is not None


def test_a_preview_without_a_new_commit_for_too_long_is_pruned(env, capsys):
    from kubernetes import client

    env.github.open_pull(SLUG, 47, commit(6))
    assert env.deploy(capsys, 47, 6)[0] == 0
    old = (datetime.now(timezone.utc) - timedelta(hours=200)).isoformat(timespec="seconds")
    client.AppsV1Api(env.admin).patch_namespaced_deployment(
        "presentation-pr-47", env.preview_ns, {"metadata": {"annotations": {"pinotage.dev/updated-at": old}}})
    code, out = env.pinotage(capsys, env.jenkins(47, 6), "preview", "prune")
    assert code == 0, out
    assert "deleting presentation-pr-47: no new commit for 200 h (preview.max_age_h is 168)" in out
    assert env.live("presentation-pr-47") is None


def test_each_deployer_is_refused_in_the_others_namespace(env, capsys):
    from kubernetes import client, config
    from kubernetes.client import ApiException

    env.github.open_pull(SLUG, 48, commit(7))
    assert env.deploy(capsys, 48, 7)[0] == 0
    for who, namespace in (("preview", env.app_ns), ("app", env.preview_ns)):
        api = config.new_client_from_config(config_file=str(env.configs[who]), persist_config=False)
        for call in (lambda: client.AppsV1Api(api).list_namespaced_deployment(namespace),
                     lambda: client.AppsV1Api(api).delete_namespaced_deployment("presentation-pr-48", namespace)):
            with pytest.raises(ApiException) as refused:
                call()
            assert refused.value.status == 403, (who, namespace)
        api.close()
    # the preview commands, given the app's deployer, are refused too, naming the namespace
    code, out = env.pinotage(capsys, env.jenkins(48, 7, kubeconfig="app"), "preview", "list")
    assert code == 1 and "403" in out and env.preview_ns in out, out
    assert env.live("presentation-pr-48") is not None


def test_preview_role_allows_exactly_what_previews_use(env, capsys):
    env.github.open_pull(SLUG, 49, commit(8))
    assert env.deploy(capsys, 49, 8)[0] == 0
    assert env.deploy(capsys, 49, 9)[0] == 0
    env.github.close_pull(SLUG, 49)
    assert env.pinotage(capsys, env.jenkins(49, 9), "preview", "list")[0] == 0
    assert env.pinotage(capsys, env.jenkins(49, 9), "preview", "prune")[0] == 0
    role = next(d for d in yaml.safe_load_all(PREVIEW_RBAC.read_text()) if d["kind"] == "Role")
    rules = [(g, res, verb, name) for rule in role["rules"] for g in rule["apiGroups"] for res in rule["resources"]
             for verb in rule["verbs"] for name in rule.get("resourceNames") or [""]]
    def allowed_by(request) -> list[tuple]:
        return [rule for rule in rules if rule[:3] == (request.group, request.resource, request.verb)
                and rule[3] in ("", request.name)]

    # the double logs a request once its answer ends (a watch: once the server sees the gate hang up)
    deadline = time.monotonic() + 10
    while True:
        made = env.requests_of(env.preview_ns, "pinotage-preview-deployer")
        unused = set(rules) - {rule for r in made for rule in allowed_by(r)}
        if not unused or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert made and {r.namespace for r in made} == {env.preview_ns}
    assert [r for r in made if r.code == 403 or not allowed_by(r)] == []
    assert unused == set(), f"the Role allows more than is used: {unused}"
