"""`pinotage diff` and `pinotage history` against the Kubernetes double, changed by hand with the real kubectl.

A deploy goes through the runner as the deployer ServiceAccount (k8s/presentation/rbac.yaml); then an
administrator changes the Deployment with the installed kubectl binary (scale, set image, a label of
their own), and `pinotage diff` (as the deployer again) must report exactly the fields Pinotage
manages that changed. The double serves HTTPS because kubectl sends a token only over TLS.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import subprocess

import pytest

from pipeline import cli, runner, services
from pipeline import config as pinotage_config
from pipeline.context import BuildContext
from pipeline.state import Image
from tests.conftest import ROOT, need
from tests.integration.kube_setup import account_token, install_into

pytestmark = pytest.mark.integration

RBAC = ROOT / "k8s" / "presentation" / "rbac.yaml"
IMAGE = "127.0.0.1:5000/pinotage/presentation"
DIGESTS = ["sha256:" + hashlib.sha256(f"image {n}".encode()).hexdigest() for n in range(3)]
COMMITS = [hashlib.sha1(f"drift {n}".encode()).hexdigest() for n in range(3)]


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    if shutil.which("kubectl") is None:
        need("kubectl", "the hand-made changes are made with the installed kubectl")
    from tests.fakes.kube import FakeKube

    fake = FakeKube(token=secrets.token_urlsafe(16), tls=True, pod_start_s=0.1).start()
    fake.admin_config = fake.kubeconfig(tmp_path_factory.mktemp("kube") / "admin.yaml")
    yield fake
    fake.stop()


class Cluster:
    """One namespace with the deployer's RBAC; kubectl as the admin, pinotage as the deployer."""

    def __init__(self, fake, namespace: str, deployer_config, cache):
        self.fake, self.namespace, self.deployer_config, self.cache = fake, namespace, deployer_config, cache

    def kubectl(self, *args: str) -> str:
        done = subprocess.run(["kubectl", f"--kubeconfig={self.fake.admin_config}", f"--cache-dir={self.cache}",
                               "-n", self.namespace, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def overrides(self) -> list[str]:
        return ["deploy.target=kubernetes", f"deploy.namespace={self.namespace}",
                f"kubeconfig={self.deployer_config}", "deadlines.rollout_s=60"]

    def settings(self) -> list[str]:
        return ["-c", str(ROOT / "pinotage.yaml"), *(arg for o in self.overrides() for arg in ("--set", o))]

    def deploy(self, n: int) -> None:
        """Deploy release n through the runner, as the Jenkins deploy stage does."""
        config = pinotage_config.load(environ={}, cwd=str(ROOT), overrides=self.overrides())
        target = services.make_target(config, {"HOME": "/nonexistent"}, lambda line: None)
        image = Image(name=IMAGE, tag=COMMITS[n][:12], digest=DIGESTS[n], commit=COMMITS[n])
        wired = services.Services(make_client=None, make_target=lambda: target, read_credentials=None,
                                  report_status=None, is_ancestor=lambda a, b: COMMITS.index(a) < COMMITS.index(b),
                                  phases=None)
        result = runner.deploy(config, BuildContext(commit=COMMITS[n], branch="master", event="default-branch"),
                               image, wired, say=lambda line: None, progress=lambda line: None)
        assert result.deployment is not None, result.note

    def pinotage(self, capsys, *args: str) -> tuple[int, str]:
        code = cli.main([*args, *self.settings()], environ={"HOME": "/nonexistent", "PATH": "/usr/bin:/bin"})
        out, err = capsys.readouterr()
        return code, out + err


@pytest.fixture
def cluster(fake, tmp_path):
    from kubernetes import client, config

    admin = config.new_client_from_config(config_file=str(fake.admin_config), persist_config=False)
    namespace = f"pinotage-drift-{secrets.token_hex(3)}"
    core = client.CoreV1Api(admin)
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    install_into(admin, RBAC, namespace)
    token = account_token(admin, namespace)
    deployer = fake.kubeconfig(tmp_path / "deployer.yaml", token=token, namespace=namespace)
    yield Cluster(fake, namespace, deployer, tmp_path / "kubectl-cache")
    core.delete_namespace(namespace)
    admin.close()


def test_no_drift_right_after_a_deploy(cluster, capsys):
    cluster.deploy(0)
    code, out = cluster.pinotage(capsys, "diff")
    assert code == 0, out
    assert "no drift" in out


def test_kubectl_scale_is_drift_and_writes_nothing(cluster, capsys):
    cluster.deploy(0)
    cluster.kubectl("scale", "deployment/presentation", "--replicas=3")
    spec = "jsonpath={.metadata.generation} {.spec.replicas}"  # the status may move on; the spec must not
    before = cluster.kubectl("get", "deployment/presentation", "-o", spec)
    code, out = cluster.pinotage(capsys, "diff")
    assert code == 1, out
    assert "  spec.replicas: 3 -> 2" in out.splitlines()
    assert "1 field drifted" in out
    after = cluster.kubectl("get", "deployment/presentation", "-o", spec)
    assert after == before and before.endswith(" 3")  # a dry run: the cluster keeps the hand-made change


def test_kubectl_set_image_is_drift_and_history_says_so(cluster, capsys):
    cluster.deploy(0)
    cluster.deploy(1)
    cluster.kubectl("set", "image", "deployment/presentation", f"presentation={IMAGE}@{DIGESTS[2]}")
    code, out = cluster.pinotage(capsys, "diff")
    assert code == 1, out
    assert (f'  spec.template.spec.containers[name=presentation].image: "{IMAGE}@{DIGESTS[2]}"'
            f' -> "{IMAGE}@{DIGESTS[1]}"') in out.splitlines()
    code, out = cluster.pinotage(capsys, "history")
    assert code == 0, out
    assert f"live: {IMAGE}@{DIGESTS[2]} is not {IMAGE}@{DIGESTS[1]}, the image the ledger last deployed" in out


def test_history_marks_the_live_record(cluster, capsys):
    cluster.deploy(0)
    cluster.deploy(1)
    code, out = cluster.pinotage(capsys, "history")
    assert code == 0, out
    rows = [line for line in out.splitlines() if " deployed " in line]
    assert [row.startswith("*") for row in rows] == [False, True]
    assert COMMITS[1][:12] in rows[1] and "live:" not in out
    code, out = cluster.pinotage(capsys, "history", "--json")
    assert code == 0, out
    assert [(r["commit"], r["live"]) for r in json.loads(out)] == [(COMMITS[0], False), (COMMITS[1], True)]


def test_a_field_another_manager_set_is_not_drift(cluster, capsys):
    cluster.deploy(0)
    cluster.kubectl("label", "deployment/presentation", "team=slides")
    cluster.kubectl("annotate", "deployment/presentation", "owner=someone-else")
    code, out = cluster.pinotage(capsys, "diff")
    assert code == 0, out
    assert "team=slides" in cluster.kubectl("get", "deployment/presentation", "--show-labels")


def test_bad_input_exits_2(cluster, capsys):
    code, out = cluster.pinotage(capsys, "diff")  # nothing deployed yet: the ledger is empty
    assert code == 2, out
    assert "the ledger holds no successful deploy" in out
    assert cli.main(["diff", "--set", "deploy.target=docker", "-c", str(ROOT / "pinotage.yaml")],
                    environ={"HOME": "/nonexistent"}) == 2


def test_a_deleted_deployment_is_drift(cluster, capsys):
    cluster.deploy(0)
    cluster.kubectl("delete", "deployment/presentation")
    code, out = cluster.pinotage(capsys, "diff")
    assert code == 1, out
    assert "deployment/presentation in namespace" in out and ": missing, though the ledger last deployed" in out
