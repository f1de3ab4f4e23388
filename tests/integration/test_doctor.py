"""pinotage doctor against the loop's services: each broken link fails exactly its own check.

The registry is Debian's docker-registry (htpasswd); Kubernetes, Jenkins and GitHub are the
doubles, each seeded as a working production loop: the namespace enforcing Pod Security
restricted with the repository's deployer Role, the pull secret and a default StorageClass; a
Jenkins with no controller executor, the pinotage pod template, an online hypervisor agent,
every credential id and the jobs of jobs/; the repository's webhook to Jenkins. The doctor runs
as the deployer and as the team's Jenkins and GitHub users would.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable

import pytest

from pipeline import cli
from tests.conftest import ROOT
from tests.integration.kube_setup import account_token, install_into

pytestmark = pytest.mark.integration

SLUG = "team/presentation"
NAMESPACE = "presentation"
PULL_SECRET = "pinotage-pull-presentation"


@dataclasses.dataclass
class Loop:
    kube: object  # tests.fakes.kube.FakeKube
    admin: object  # kubernetes.client.ApiClient, the cluster admin's
    jenkins: object  # tests.fakes.jenkins.FakeJenkins
    github: object  # tests.fakes.github.FakeGithub
    settings: list[str]
    environ: dict[str, str]

    def doctor(self, capsys, *args: str) -> tuple[int, dict[tuple[str, str], str], str]:
        """Run 'pinotage doctor --json'; return the exit code, {(area, check): status} and the output."""
        capsys.readouterr()
        code = cli.main(["doctor", "--json", *args, *self.settings], self.environ)
        out, err = capsys.readouterr()
        assert "Traceback" not in err, err
        report = json.loads(out)
        return code, {(c["area"], c["check"]): c["status"] for c in report["checks"]}, out


def _deployer_kubeconfig(fake, admin, path: Path) -> Path:
    return fake.kubeconfig(path, token=account_token(admin, NAMESPACE), namespace=NAMESPACE)


def _seed_cluster(admin) -> None:
    from kubernetes import client, utils

    client.CoreV1Api(admin).create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": NAMESPACE, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})
    install_into(admin, ROOT / "k8s/presentation/rbac.yaml", NAMESPACE)
    client.CoreV1Api(admin).create_namespaced_secret(NAMESPACE, {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": PULL_SECRET}, "data": {".dockerconfigjson": "e30="}})
    utils.create_from_yaml(admin, str(ROOT / "k8s/presentation/doctor-rbac.yaml"))
    utils.create_from_dict(admin, {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "provisioner": "rancher.io/local-path",
        "metadata": {"name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}})


def _credential_ids() -> set[str]:
    from pipeline import jobs
    from pipeline.doctor.jenkins import used_credential_ids

    return used_credential_ids(ROOT, jobs.render(ROOT / "jobs"))


@pytest.fixture
def loop(registry, tmp_path, capsys):
    """A working production loop: every check of 'pinotage doctor' passes."""
    import kubernetes

    from tests.fakes.github import FakeGithub
    from tests.fakes.jenkins import Cloud, Credential, FakeJenkins, Node, PodTemplate
    from tests.fakes.kube import FakeKube

    from pipeline import github

    kube = FakeKube(token=secrets.token_urlsafe(16)).start()
    admin = kubernetes.config.new_client_from_config(config_file=str(kube.kubeconfig(tmp_path / "admin.yaml")),
                                                     persist_config=False)
    _seed_cluster(admin)
    jenkins_token = "11" + secrets.token_hex(16)
    jenkins = FakeJenkins(user="ops", token=jenkins_token, crumbs=True, controller_executors=0,
                          nodes=[Node("vm-host", labels=("hypervisor",))],
                          clouds=[Cloud("kubernetes", (PodTemplate("pinotage", ("pinotage",)),))],
                          credentials=[Credential(cid) for cid in sorted(_credential_ids())])
    jenkins.start()
    github_token = "ghp_" + secrets.token_hex(18)
    hub = FakeGithub(token=github_token, repos=(SLUG,)).__enter__()
    try:
        settings = [f"--set={key}={value}" for key, value in {
            "registry.url": registry.url, "registry.user": registry.user, "deploy.target": "kubernetes",
            "deploy.namespace": NAMESPACE, "kubeconfig": str(_deployer_kubeconfig(kube, admin, tmp_path / "d.yaml")),
            "jenkins.url": jenkins.url, "jenkins.user": "ops", "github.repo": SLUG, "github.api_url": hub.url}.items()]
        environ = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PINOTAGE_REGISTRY_PASSWORD": registry.password,
                   "PINOTAGE_JENKINS_TOKEN": jenkins_token, "PINOTAGE_GITHUB_TOKEN": github_token}
        assert cli.main(["jobs", "update", *settings], environ) == 0
        github.ensure_hook(hub.url, SLUG, token=github_token, url=f"{jenkins.url}/github-webhook/",
                           secret="hook-secret", dry_run=False)
        yield Loop(kube, admin, jenkins, hub, settings, environ)
    finally:
        hub.__exit__(None, None, None)
        jenkins.stop()
        admin.close()
        kube.stop()


def test_a_working_loop_passes_every_check_and_writes_nothing(loop, capsys):
    jenkins_before, kube_rv = len(loop.jenkins.requests), loop.kube.store.rv
    code, checks, out = loop.doctor(capsys)
    assert code == 0, out
    assert [key for key, status in checks.items() if status == "FAIL"] == []
    assert checks[("kubernetes", "storage class")] == "ok"
    assert checks[("github", "last delivery")] == "skipped"  # no push yet
    assert loop.kube.store.rv == kube_rv, "the doctor wrote to the cluster"
    assert [(r.method, r.path) for r in loop.jenkins.requests[jenkins_before:] if r.method != "GET"] == []
    assert loop.github.writes()[1:] == []  # only the fixture's hook creation
    for name, secret in loop.environ.items():
        if name.endswith(("_PASSWORD", "_TOKEN")):
            assert secret not in out


def _unlabel_namespace(loop):
    from kubernetes import client

    client.CoreV1Api(loop.admin).patch_namespace(NAMESPACE, {"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": None}}})


def _wildcard_in_role(loop):
    from kubernetes import client

    rbac = client.RbacAuthorizationV1Api(loop.admin)
    role = rbac.read_namespaced_role("pinotage-deployer", NAMESPACE)
    role.rules.append(client.V1PolicyRule(api_groups=["*"], resources=["*"], verbs=["get"]))
    rbac.replace_namespaced_role("pinotage-deployer", NAMESPACE, role)


def _drop_role_rule(loop):
    from kubernetes import client

    rbac = client.RbacAuthorizationV1Api(loop.admin)
    role = rbac.read_namespaced_role("pinotage-deployer", NAMESPACE)
    role.rules = [r for r in role.rules if "leases" not in r.resources]
    rbac.replace_namespaced_role("pinotage-deployer", NAMESPACE, role)


def _delete_pull_secret(loop):
    from kubernetes import client

    client.CoreV1Api(loop.admin).delete_namespaced_secret(PULL_SECRET, NAMESPACE)


def _no_default_class(loop):
    from kubernetes import client

    client.StorageV1Api(loop.admin).patch_storage_class("local-path", {"metadata": {"annotations": {
        "storageclass.kubernetes.io/is-default-class": "false"}}})


def _controller_executors(loop):
    from tests.fakes.jenkins import BUILT_IN, Node

    loop.jenkins.nodes[0] = Node(BUILT_IN, executors=2)


def _hypervisor_offline(loop):
    from tests.fakes.jenkins import Node

    loop.jenkins.nodes[1] = Node("vm-host", labels=("hypervisor",), offline=True)


def _missing_credential(loop):
    loop.jenkins.credentials = [c for c in loop.jenkins.credentials if c.id != "pinotage-registry"]


def _no_pod_template(loop):
    loop.jenkins.clouds.clear()


def _older_jenkins(loop):
    loop.jenkins.version = "2.440.3"


def _hook_elsewhere(loop):
    loop.github.hooks[SLUG][0]["config"]["url"] = "https://old-jenkins.example/github-webhook/"


def _failed_delivery(loop):
    loop.github.hooks[SLUG][0]["config"]["url"] = "http://127.0.0.1:9/github-webhook/"
    loop.github.deliver(SLUG, loop.github.hooks[SLUG][0]["id"], "push", {"ref": "refs/heads/master"})
    loop.github.hooks[SLUG][0]["config"]["url"] = f"{loop.jenkins.url}/github-webhook/"


def _token_without_hook_scope(loop):
    loop.github.scopes = ("repo:status",)


def _job_edited_in_jenkins(loop):
    from pipeline import jobs

    name = jobs.render(ROOT / "jobs")[0].name
    job = loop.jenkins.jobs[name]
    root = ET.fromstring(job.config)
    root.find("description").text = "edited by hand"
    job.config = ET.tostring(root, encoding="unicode")


BREAKAGES: list[tuple[str, Callable, set[tuple[str, str]]]] = [
    ("namespace-not-restricted", _unlabel_namespace, {("kubernetes", "namespace")}),
    ("role-with-a-wildcard", _wildcard_in_role, {("kubernetes", "least privilege")}),
    ("role-missing-a-rule", _drop_role_rule, {("kubernetes", "deployer role"), ("kubernetes", "lease")}),
    ("missing-pull-secret", _delete_pull_secret, {("kubernetes", "pull secret")}),
    ("no-default-storage-class", _no_default_class, {("kubernetes", "storage class")}),
    ("controller-with-executors", _controller_executors, {("jenkins", "controller executors")}),
    ("hypervisor-offline", _hypervisor_offline, {("jenkins", "hypervisor agent")}),
    ("missing-credential-id", _missing_credential, {("jenkins", "credential ids")}),
    ("no-pod-template", _no_pod_template, {("jenkins", "pod template")}),
    ("jenkins-older-than-pinned", _older_jenkins, {("jenkins", "version")}),
    ("job-edited-in-jenkins", _job_edited_in_jenkins, {("jenkins", "jobs")}),
    ("webhook-pointing-elsewhere", _hook_elsewhere, {("github", "webhook")}),
    ("last-delivery-failed", _failed_delivery, {("github", "last delivery")}),
    ("token-without-hook-scope", _token_without_hook_scope, {("github", "token scopes"), ("github", "webhook")}),
]


@pytest.mark.parametrize("breakage, expected", [pytest.param(b, e, id=name) for name, b, e in BREAKAGES])
def test_a_broken_link_fails_exactly_its_check(loop, capsys, breakage, expected):
    breakage(loop)
    code, checks, out = loop.doctor(capsys)
    assert code == 1, out
    assert {key for key, status in checks.items() if status == "FAIL"} == expected, out
    hints = [c["hint"] for c in json.loads(out)["checks"] if c["status"] == "FAIL"]
    assert all(hints), out


def test_only_one_area(loop, capsys):
    _controller_executors(loop)
    code, checks, _ = loop.doctor(capsys, "--only", "kubernetes")
    assert code == 0
    assert {area for area, _ in checks} == {"config", "kubernetes"}


@pytest.mark.parametrize("user, status", [("pusher", "ok"), ("reader", "FAIL")])
def test_the_token_service_must_grant_push(token_hub, tmp_path, capsys, user, status):
    code = cli.main(["doctor", "--json", "--only", "registry", f"--set=registry.url={token_hub.url}",
                     f"--set=registry.user={user}"],
                    {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                     "PINOTAGE_REGISTRY_PASSWORD": token_hub.users[user][0]})
    out = capsys.readouterr().out
    checks = {c["check"]: c for c in json.loads(out)["checks"] if c["area"] == "registry"}
    assert checks["login"]["status"] == "ok", out
    assert checks["push scope"]["status"] == status, out
    assert code == (0 if status == "ok" else 1)
    if status == "FAIL":
        assert "grants pull" in checks["push scope"]["detail"] and "not push" in checks["push scope"]["detail"]
    assert token_hub.users[user][0] not in out
