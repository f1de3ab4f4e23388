"""`pinotage run` end to end: the real engine, the authenticated registry, the local target.

One app repository serves the module; the tests go in order through the life of a deploy:
the first release, a newer one, a rollback, an older build finishing late, a release that never
gets healthy, a deploy interrupted halfway, and a pull request that must not touch a credential.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import secrets
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Mapping

import pytest

from pipeline import cli
from pipeline.config import SECRETS
from tests.fakes.github import FakeGithub
from tests.integration.app_loop import AppLoop, git, make_app_loop
from tests.integration.asking import Client

pytestmark = pytest.mark.integration

GITHUB_TOKEN = "ghp_" + secrets.token_hex(12)
GITHUB_REPO = "acme/slides"


@pytest.fixture(scope="module")
def github():
    with FakeGithub(token=GITHUB_TOKEN, repos=(GITHUB_REPO,)) as fake:
        yield fake


@pytest.fixture(scope="module")
def loop(docker_client, registry, base_images, tmp_path_factory, github):
    loop = make_app_loop(tmp_path_factory.mktemp("run"), registry, base_images,
                         github_api_url=github.url, github_repo=GITHUB_REPO)
    loop.env["PINOTAGE_GITHUB_TOKEN"] = GITHUB_TOKEN
    yield loop
    loop.cleanup(docker_client)


@dataclasses.dataclass(frozen=True)
class First:
    """The first release, and what was live and recorded right after it (later tests move both on)."""

    commit: str
    done: subprocess.CompletedProcess
    live: str
    page: str
    records: list
    statuses: list


@pytest.fixture(scope="module")
def first(loop: AppLoop, docker_client, github) -> First:
    """The first release: commit A on master, built, smoke-tested, pushed and deployed."""
    commit = git(loop.repo, "rev-parse", "HEAD")
    done = loop.pinotage("run")
    return First(commit, done, loop.live_commit(docker_client) if done.returncode == 0 else "",
                 loop.page() if done.returncode == 0 else "", loop.history(), github.states(GITHUB_REPO, commit))


@pytest.fixture
def master_restored(loop: AppLoop):
    """Put master back where the test found it: a test that commits a release that never goes live
    must not leave it at master's head for the tests after it (they expect master's head live)."""
    head = git(loop.repo, "rev-parse", "master")
    yield head
    git(loop.repo, "checkout", "-q", "master")
    git(loop.repo, "reset", "-q", "--hard", head)


def test_default_branch_push_is_served_and_recorded(loop, first):
    commit, done = first.commit, first.done
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-1] == f"url:      {loop.url}"
    for phase in ("lookup", "build", "smoke", "push", "deploy"):
        assert f"==> {phase}: started" in done.stderr and f"==> {phase}: done in " in done.stderr
    assert "<section" in first.page and "Pinotage" in first.page
    assert first.live == commit
    [record] = first.records
    assert (record["commit"], record["outcome"], record["target"]) == (commit, "deployed", "docker")
    assert record["image"].startswith(f"{loop.env['PINOTAGE_REGISTRY_URL']}/{loop.repository}@sha256:")
    assert set(record["phases_s"]) == {"lookup", "build", "smoke", "push", "deploy"}
    assert first.statuses == ["pending", "success"]
    assert loop.env["PINOTAGE_REGISTRY_PASSWORD"] not in done.stdout + done.stderr
    assert GITHUB_TOKEN not in done.stdout + done.stderr


def test_a_rerun_finds_everything_done(loop, first):
    before = len(loop.history())
    done = loop.pinotage("run")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "build: started" not in done.stderr
    assert "deployed: no (" in done.stdout and "already live" in done.stdout
    assert done.stdout.splitlines()[-1] == f"url:      {loop.url}"
    assert len(loop.history()) == before


def test_a_newer_commit_replaces_it_and_rollback_returns(loop, first, docker_client):
    older = loop.live_commit(docker_client)  # master's head, live
    before = len(loop.history())
    newer = loop.commit("a newer slide", slide_line="Deployed by the run tests.")
    with Client(loop.url, interval_s=0.02) as client:
        done = loop.pinotage("run")
    assert done.returncode == 0, done.stderr[-3000:]
    assert client.failures == [] and len(client.answers) > 20, "a deploy drops no request"
    assert client.statuses == {200}
    assert loop.live_commit(docker_client) == newer
    assert "Deployed by the run tests." in loop.page()
    stopped = docker_client.containers.list(all=True, filters={"label": f"org.pinotage.app={loop.app}",
                                                                 "status": "exited"})
    assert [c.labels["org.pinotage.commit"] for c in stopped] == [older], "the previous container is kept"

    with Client(loop.url, interval_s=0.02) as client:
        back = loop.pinotage("rollback")
    assert back.returncode == 0, back.stderr[-3000:]
    assert client.failures == [] and len(client.answers) > 5, "a rollback drops no request"
    assert client.statuses == {200}
    assert loop.live_commit(docker_client) == older
    assert "Deployed by the run tests." not in loop.page()
    forward = loop.pinotage("rollback", "--to", newer[:10])
    assert forward.returncode == 0, forward.stderr[-3000:]
    assert loop.live_commit(docker_client) == newer
    outcomes = [(r["commit"], r["outcome"], r["message"]) for r in loop.history()[before:]]
    assert outcomes == [(newer, "deployed", ""),
                        (older, "deployed", f"rollback from {newer[:12]}"),
                        (newer, "deployed", f"rollback from {older[:12]}")]
    assert [set(r["phases_s"]) for r in loop.history()[before + 1:]] == [{"rollback"}, {"rollback"}]


def test_the_smoke_test_checks_the_releases_own_container_and_a_failure_removes_it(
        loop, first, docker_client, master_restored):
    """A run that deploys smoke-tests the container the front will route to; when that test fails,
    the container goes, nothing is pushed, and the live release serves on."""
    serving = master_restored
    assert loop.live_commit(docker_client) == serving
    failing = loop.commit("a deck whose first slide is not the expected one")
    done = loop.pinotage("run", env={"PINOTAGE_IMAGE_FIRST_SLIDE_TEXT": "a title this deck does not have"})
    assert done.returncode == 1, done.stdout
    assert "the release's own container" in done.stderr, done.stderr[-3000:]
    assert "==> smoke: failed" in done.stderr and "push: started" not in done.stderr
    left = docker_client.containers.list(all=True, filters={"label": [f"org.pinotage.app={loop.app}",
                                                                      f"org.pinotage.commit={failing}"]})
    assert left == [], [c.name for c in left]
    assert loop.live_commit(docker_client) == serving
    assert "<section" in loop.page()
    assert all(r["commit"] != failing for r in loop.history()), "a run that failed before its deploy records nothing"


def test_an_older_build_finishing_late_is_refused(loop, first, github, docker_client):
    older = first.commit  # in the registry since the first run
    if loop.live_commit(docker_client) == older:  # nothing newer went live yet: make it so
        loop.commit("a newer slide for the order check")
        assert loop.pinotage("run").returncode == 0
    newest = git(loop.repo, "rev-parse", "master")
    assert loop.live_commit(docker_client) == newest
    git(loop.repo, "checkout", "-q", "--detach", older)
    try:
        # Jenkins builds master at the old commit: the registry has it, so only the deploy runs.
        done = loop.pinotage("run", env={"BRANCH_NAME": "master", "BUILD_NUMBER": "41", "GIT_COMMIT": older,
                                         "BUILD_URL": "https://ci.example/job/slides/41/"})
    finally:
        git(loop.repo, "checkout", "-q", "master")
    assert done.returncode == 1
    assert f"refusing to deploy {older[:12]}: it is older than the deployed {newest[:12]}" in done.stderr
    assert "Traceback" not in done.stderr
    assert loop.live_commit(docker_client) == newest
    last = loop.history()[-1]
    assert (last["commit"], last["outcome"], last["build_url"]) == (older, "refused", "https://ci.example/job/slides/41/")
    assert github.states(GITHUB_REPO, older)[-2:] == ["pending", "failure"]


def test_a_release_that_never_gets_healthy_leaves_the_previous_one_serving(
        loop, first, registry, base_images, docker_client, docker_cleanup, tmp_path, master_restored):
    serving = master_restored
    assert loop.live_commit(docker_client) == serving
    # The image passes for a release but serves nothing: the deploy stage must catch it.
    broken = loop.commit("a release that never answers")
    name, digest, state = _pushed_release(
        loop, registry, docker_client, docker_cleanup, tmp_path, commit=broken, tag_prefix="never-healthy",
        dockerfile=f'FROM {base_images.runtime}\nCMD ["sleep", "infinity"]\n')

    done = loop.pinotage("deploy", "--state", str(state), env={"PINOTAGE_DEADLINES_ROLLOUT_S": "4"})
    assert done.returncode == 1, done.stdout
    assert "did not answer /healthz with 200 within 4 s" in done.stderr
    assert "the previous release still serves" in done.stderr
    assert loop.live_commit(docker_client) == serving
    assert "<section" in loop.page()
    names = [c.name for c in docker_client.containers.list(all=True, filters={"label": f"org.pinotage.app={loop.app}"})]
    assert not [n for n in names if n.endswith("-candidate")], names
    records_after = loop.history()
    last = records_after[-1]
    assert (last["commit"], last["outcome"]) == (broken, "rolled-back")
    assert last["image"] == f"{name}@{digest}"
    assert last["message"].startswith(f"rolled back to {serving[:12]} ("), last["message"]
    assert set(last["phases_s"]) == {"deploy"}
    assert [r["id"] for r in records_after].count(last["id"]) == 1, "one record for the attempt"
    gate = loop.pinotage("gate", "--state", str(state))
    assert gate.returncode == 1 and f"{name}@{digest} is not live" in gate.stderr


def test_an_engine_error_at_the_cut_over_is_one_line_and_the_previous_release_serves_again(
        loop, first, registry, base_images, docker_client, docker_cleanup, tmp_path, master_restored):
    serving = loop.live_commit(docker_client)
    before = len(loop.history())
    # A release that serves as well as the live one (same files, another digest), for a port someone holds.
    live_image = _live_image(loop, docker_client)
    newer = loop.commit("a release for a port that is taken")
    name, digest, state = _pushed_release(
        loop, registry, docker_client, docker_cleanup, tmp_path, commit=newer, tag_prefix="relabelled",
        dockerfile=f'FROM {live_image}\nLABEL org.example.relabelled="{secrets.token_hex(3)}"\n')
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()  # accepts connections and never answers: a probe of it would only time out
        taken = holder.getsockname()[1]
        done = loop.pinotage("deploy", "--state", str(state),
                             env={"PINOTAGE_DEPLOY_HOST_PORT": str(taken), "PINOTAGE_DEADLINES_ROLLOUT_S": "8"})
    assert done.returncode == 1, done.stdout
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    [error] = [line for line in done.stderr.splitlines() if line.startswith("pinotage: error:")]
    assert f"port {taken} is taken by something else" in error, done.stderr[-3000:]
    assert "the previous release still serves" in error, error
    assert loop.live_commit(docker_client) == serving
    assert "<section" in loop.page()
    records = loop.history()
    assert len(records) == before + 1, "one record for the attempt"
    last = records[-1]
    assert (last["commit"], last["outcome"], last["image"]) == (newer, "rolled-back", f"{name}@{digest}")
    assert f"port {taken} is taken" in last["message"], last["message"]


@pytest.mark.parametrize("signal_number, at", [
    (signal.SIGTERM, "healthy after"),  # a Jenkins abort as the front switches to the new release
    (signal.SIGINT, "started on"),  # Ctrl-C while the new release starts
], ids=["sigterm-at-the-switch", "sigint-at-the-start"])
def test_an_interrupted_deploy_leaves_the_previous_release_serving_and_the_next_one_goes_through(
        loop, first, registry, docker_client, docker_cleanup, tmp_path, signal_number, at):
    serving = loop.live_commit(docker_client)
    newer = loop.commit(f"a release whose deploy is interrupted ({at})")
    _, _, state = _pushed_release(
        loop, registry, docker_client, docker_cleanup, tmp_path, commit=newer, tag_prefix="interrupted",
        dockerfile=f'FROM {_live_image(loop, docker_client)}\nLABEL org.example.relabelled="{secrets.token_hex(3)}"\n')
    with Client(loop.url, interval_s=0.01) as client:
        deploy = subprocess.Popen([sys.executable, "-m", "pipeline", "deploy", "--state", str(state)], cwd=loop.repo,
                                  env=loop.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        said = []
        for line in deploy.stderr:
            said.append(line)
            if at in line:
                deploy.send_signal(signal_number)
                break
        _, rest = deploy.communicate(timeout=60)
    said = "".join(said) + rest
    assert deploy.returncode == (128 + signal.SIGTERM if signal_number == signal.SIGTERM else 130), said
    assert "cleaned up" in said and "Traceback" not in said, said
    assert loop.live_commit(docker_client) == serving, "the new release's container is gone; the previous serves"
    assert client.failures == [] and client.statuses == {200}, client.failures[:3]
    assert "<section" in loop.page()

    done = loop.pinotage("deploy", "--state", str(state))  # the next attempt finds nothing in its way
    assert done.returncode == 0, done.stderr[-3000:]
    assert loop.live_commit(docker_client) == newer


def test_an_interrupt_once_the_front_has_switched_starts_the_previous_release_again(
        loop, first, registry, docker_client, docker_cleanup, tmp_path):
    """An interrupted attempt is not recorded, so an interrupt as the previous container is about to
    stop (the front already on the new one) must leave the previous release serving too."""
    from pipeline import config as config_module
    from pipeline.state import Image, Release
    from pipeline.targets import docker as docker_target

    serving = loop.live_commit(docker_client)
    newer = loop.commit("a release interrupted after the switch")
    name, digest, state = _pushed_release(
        loop, registry, docker_client, docker_cleanup, tmp_path, commit=newer, tag_prefix="after-switch",
        dockerfile=f'FROM {_live_image(loop, docker_client)}\nLABEL org.example.relabelled="{secrets.token_hex(3)}"\n')
    config = config_module.load(environ=loop.env, cwd=str(loop.repo))
    target = docker_target.DockerTarget(config, loop.env, lambda: docker_client, lambda: None)
    said: list[str] = []

    def progress(line: str) -> None:
        said.append(line)
        if line.endswith("kept for rollback"):  # the front serves the new release; the previous stops next
            raise KeyboardInterrupt

    release = Release(image=Image(name=name, tag="after-switch", digest=digest, commit=newer), commit=newer)
    with Client(loop.url, interval_s=0.01) as client:
        with pytest.raises(KeyboardInterrupt):
            target.deploy(release, is_ancestor=lambda older, newer: False, progress=progress)
    assert any(line.endswith("kept for rollback") for line in said), said
    assert loop.live_commit(docker_client) == serving, said
    assert target.deployed().commit == serving, "the front routes to the previous release"
    assert client.failures == [] and client.statuses == {200}, client.failures[:3]

    done = loop.pinotage("deploy", "--state", str(state))  # the next attempt finds nothing in its way
    assert done.returncode == 0, done.stderr[-3000:]
    assert loop.live_commit(docker_client) == newer


@pytest.mark.parametrize("before_the_deploy", ["nothing", "stopped"])
def test_the_deploy_routes_to_the_staged_container_only_while_it_runs_the_pushed_image(
        loop, first, registry, docker_client, docker_cleanup, tmp_path, before_the_deploy):
    """A container staged before the push is what the deploy routes to; one that stopped meanwhile is
    not: the deploy starts the release anew and the staged one goes."""
    from pipeline import config as config_module
    from pipeline.state import Image, Release
    from pipeline.targets import docker as docker_target

    newer = loop.commit(f"a staged release ({before_the_deploy})")
    name, digest, _ = _pushed_release(
        loop, registry, docker_client, docker_cleanup, tmp_path, commit=newer, tag_prefix="staged",
        dockerfile=f'FROM {_live_image(loop, docker_client)}\nLABEL org.example.relabelled="{secrets.token_hex(3)}"\n')
    tag = json.loads((tmp_path / "state.json").read_text())["image"]["tag"]
    config = config_module.load(environ=loop.env, cwd=str(loop.repo))
    target = docker_target.DockerTarget(config, loop.env, lambda: docker_client, lambda: None)
    said: list[str] = []
    unpushed = Release(image=Image(name=name, tag=tag, commit=newer), commit=newer, ledger_id=f"staged-{secrets.token_hex(3)}")
    staged = target.stage(unpushed, progress=said.append)
    assert staged is not None, said
    assert "org.pinotage.image-digest" not in staged.container.labels or not staged.container.labels["org.pinotage.image-digest"]
    if before_the_deploy == "stopped":
        staged.container.stop(timeout=1)
    pushed = Release(image=Image(name=name, tag=tag, digest=digest, commit=newer), commit=newer,
                     ledger_id=unpushed.ledger_id)
    with Client(loop.url, interval_s=0.01) as client:
        target.deploy(pushed, is_ancestor=lambda older, newer: False, progress=said.append)
        staged.discard()  # what the runner does after every deploy: a no-op once taken
    routed = target._front().routed()
    left = [c.name for c in docker_client.containers.list(all=True, filters={"label": f"org.pinotage.commit={newer}"})]
    if before_the_deploy == "nothing":
        assert routed == staged.container.name, said
        assert left == [staged.container.name]
    else:
        assert routed != staged.container.name and any("is not used: it stopped" in line for line in said), said
        assert left == [routed], "the stopped staged container goes"
    live = target.deployed()
    assert (live.commit, live.image.digest) == (newer, digest), "the front names the digest the labels do not"
    assert client.failures == [] and client.statuses == {200}, client.failures[:3]


STAGER = """
import os, sys
import docker
from pipeline import config as config_module
from pipeline.state import Image, Release
from pipeline.targets import docker as docker_target

name, tag, commit = sys.argv[1:]
config = config_module.load(environ=os.environ, cwd=os.getcwd())
target = docker_target.DockerTarget(config, os.environ, docker.from_env, lambda: None)
release = Release(image=Image(name=name, tag=tag, commit=commit), commit=commit, ledger_id="another-run")
staged = target.stage(release, progress=lambda line: None)
print(staged.container.name, flush=True)
sys.stdin.readline()  # the test kills this run here, in the middle of its smoke test
"""


def test_another_runs_staged_container_outlives_this_deploy_until_that_run_dies(
        loop, first, registry, docker_client, docker_cleanup, tmp_path):
    """Two runs of one app on one engine: one deploys while the other smoke-tests the container it
    staged. The deploy leaves that container alone; once its run is killed, the next deploy removes it."""
    from pipeline import config as config_module
    from pipeline.state import Image, Release
    from pipeline.targets import docker as docker_target

    newer = loop.commit("a release deployed while another run smoke-tests")
    name, digest, _ = _pushed_release(
        loop, registry, docker_client, docker_cleanup, tmp_path, commit=newer, tag_prefix="beside",
        dockerfile=f'FROM {_live_image(loop, docker_client)}\nLABEL org.example.relabelled="{secrets.token_hex(3)}"\n')
    tag = json.loads((tmp_path / "state.json").read_text())["image"]["tag"]
    stager = subprocess.Popen([sys.executable, "-c", STAGER, name, tag, newer], cwd=loop.repo, env=loop.env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        staged_name = stager.stdout.readline().strip()
        assert staged_name, stager.stderr.read() if stager.poll() is not None else "the other run said nothing"
        config = config_module.load(environ=loop.env, cwd=str(loop.repo))
        target = docker_target.DockerTarget(config, loop.env, lambda: docker_client, lambda: None)
        claim = target._claim_path(staged_name)
        pushed = Release(image=Image(name=name, tag=tag, digest=digest, commit=newer), commit=newer,
                         ledger_id=f"beside-{secrets.token_hex(3)}")
        target.deploy(pushed, is_ancestor=lambda older, newer: False, progress=lambda line: None)
        assert docker_client.containers.get(staged_name).status == "running", "the other run's container was pruned"
        assert target._front().routed() != staged_name
        assert claim.exists()
    finally:
        stager.kill()
        stager.communicate(timeout=30)

    target.deploy(pushed, is_ancestor=lambda older, newer: False, progress=lambda line: None)
    assert staged_name not in [c.name for c in docker_client.containers.list(all=True)], "a dead run's container stays"
    assert not claim.exists()
    assert loop.live_commit(docker_client) == newer


def _live_image(loop, docker_client) -> str:
    [container] = docker_client.containers.list(filters={"label": [f"org.pinotage.app={loop.app}",
                                                                   "org.pinotage.role=serving"]})
    return container.image.id


class SecretTrap(Mapping):
    """An environment whose secrets hold wrong values and raise when anything reads them."""

    def __init__(self, values: dict[str, str]):
        self.values = values
        self.read: list[str] = []

    def __getitem__(self, key: str) -> str:
        if key in SECRETS.values():
            self.read.append(key)
            raise AssertionError(f"a pull-request build read the secret {key}")
        return self.values[key]

    def __iter__(self):
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


def test_a_pull_request_pushes_nothing_and_reads_no_credential(loop, first, registry, github, tmp_path,
                                                               monkeypatch, capsys):
    git(loop.repo, "checkout", "-q", "-b", "fork-change")
    proposed = loop.commit("a change from a fork", slide_line="Proposed in a pull request.")
    git(loop.repo, "checkout", "-q", "--detach", proposed)
    # Wrong credentials everywhere: any use of them would fail loudly.
    docker_config = tmp_path / "docker-config"
    docker_config.mkdir()
    (docker_config / "config.json").write_text(json.dumps({
        "credsStore": "pinotage-no-such-helper",
        "auths": {registry.url: {"auth": base64.b64encode(b"mallory:wrong").decode()}}}))
    environ = SecretTrap({**loop.env, "DOCKER_CONFIG": str(docker_config),
                          "PINOTAGE_REGISTRY_PASSWORD": "wrong-password", "PINOTAGE_GITHUB_TOKEN": "wrong-token",
                          "BRANCH_NAME": "PR-5", "CHANGE_ID": "5", "CHANGE_TARGET": "master",
                          "CHANGE_BRANCH": "fork-change", "CHANGE_FORK": "mallory", "GIT_COMMIT": proposed,
                          "BUILD_NUMBER": "42", "JENKINS_URL": "https://ci.example/"})
    requests_before = len(github.requests)
    records_before = len(loop.history())
    monkeypatch.chdir(loop.repo)
    try:
        code = cli.main(["run"], environ=environ)
    finally:
        git(loop.repo, "checkout", "-q", "master")
    out = capsys.readouterr()
    assert code == 0, out.err[-3000:]
    assert environ.read == []
    assert "pushed:   no (this event does not push)" in out.out
    assert "deployed: no (this event does not deploy)" in out.out
    assert len(github.requests) == requests_before
    assert len(loop.history()) == records_before
    tags = _registry_tags(registry, loop.repository)
    assert proposed not in tags and proposed[:12] not in tags and "fork-change" not in tags


def test_run_preview_serves_the_checkout_beside_the_app_and_reads_no_credential(loop, first, registry, github,
                                                                                tmp_path, monkeypatch, capsys):
    from tests.conftest import free_port

    git(loop.repo, "checkout", "-q", "-b", "try-it")
    tried = loop.commit("a change to try", slide_line="Tried out in a preview.")
    port = free_port()
    environ = SecretTrap({**loop.env, "DOCKER_CONFIG": str(tmp_path), "PINOTAGE_PREVIEW_LOCAL_PORT": str(port),
                          "PINOTAGE_REGISTRY_PASSWORD": "wrong-password", "PINOTAGE_GITHUB_TOKEN": "wrong-token"})
    requests_before, records_before = len(github.requests), len(loop.history())
    served_before = loop.page()
    monkeypatch.chdir(loop.repo)
    try:
        code = cli.main(["run", "--preview"], environ=environ)
    finally:
        git(loop.repo, "checkout", "-q", "master")
    out = capsys.readouterr()
    assert code == 0, out.err[-3000:]
    assert environ.read == []
    assert out.out.splitlines()[-1] == f"url:      http://127.0.0.1:{port}/"
    assert "pushed:   no (this event does not push)" in out.out
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        assert "Tried out in a preview." in response.read().decode()
    assert loop.page() == served_before  # the app beside it still serves what it served
    assert (len(github.requests), len(loop.history())) == (requests_before, records_before)
    assert tried not in _registry_tags(registry, loop.repository)
    # a second run replaces the preview container rather than failing on the name or the port
    monkeypatch.chdir(loop.repo)
    git(loop.repo, "checkout", "-q", "try-it")
    try:
        assert cli.main(["run", "--preview"], environ=environ) == 0
    finally:
        git(loop.repo, "checkout", "-q", "master")
    capsys.readouterr()


def _registry_tags(registry, repository: str) -> list[str]:
    import requests

    answer = requests.get(f"{registry.api}/v2/{repository}/tags/list", auth=(registry.user, registry.password),
                          timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["tags"]


def test_the_kubernetes_target_plugs_into_the_same_run(loop, first, registry, tmp_path):
    """`--set deploy.target=kubernetes` swaps the target and nothing else (the Kubernetes API is the test double)."""
    import kubernetes

    from tests.conftest import ROOT
    from tests.fakes.kube import FakeKube, registry_lookup

    fake = FakeKube(image_exists=registry_lookup(registry.api, registry.user, registry.password),
                    token=secrets.token_urlsafe(16), pod_start_s=0.2).start()
    kubeconfig = fake.kubeconfig(tmp_path / "admin.yaml")
    admin = kubernetes.config.new_client_from_config(config_file=str(kubeconfig), persist_config=False)
    namespace = f"r3t-{secrets.token_hex(3)}"
    try:
        kubernetes.client.CoreV1Api(admin).create_namespace(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        settings = {"PINOTAGE_KUBECONFIG": str(kubeconfig), "PINOTAGE_DEPLOY_NAMESPACE": namespace,
                    "PINOTAGE_DEPLOY_MANIFEST": str(ROOT / "k8s/presentation/deployment.yaml")}
        done = loop.pinotage("run", "--set", "deploy.target=kubernetes", env=settings)
        assert done.returncode == 0, done.stderr[-3000:]
        head = git(loop.repo, "rev-parse", "HEAD")
        assert "deployed: kubernetes revision" in done.stdout
        history = loop.pinotage("history", "--json", "--set", "deploy.target=kubernetes", env=settings)
        assert history.returncode == 0, history.stderr
        [record] = json.loads(history.stdout)  # one record for the attempt, in the cluster
        assert (record["commit"], record["outcome"], record["target"]) == (head, "deployed", "kubernetes")
        ran = {phase for phase in ("lookup", "build", "smoke", "push", "deploy") if f"==> {phase}: done in " in done.stderr}
        assert {"lookup", "deploy"} <= ran
        assert set(record["phases_s"]) == ran, "the record carries every phase's duration"
        assert record["revision"] == "1"
        live = kubernetes.client.AppsV1Api(admin).read_namespaced_deployment("presentation", namespace)
        assert live.spec.template.spec.containers[0].image == record["image"]
    finally:
        admin.close()
        fake.stop()
        kubeconfig.unlink(missing_ok=True)


def _pushed_release(loop, registry, docker_client, docker_cleanup, tmp_path, *, commit: str, tag_prefix: str,
                    dockerfile: str):
    """Build a Dockerfile, push it to the test registry and write a state file naming it for commit.

    Return the image name, its digest and the state file: what the deploy stage reads.
    """
    name = f"{registry.url}/{loop.repository}"
    tag = f"{tag_prefix}-{secrets.token_hex(3)}"
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=f"{name}:{tag}", rm=True, forcerm=True)
    docker_cleanup["images"].append(f"{name}:{tag}")
    events = list(docker_client.api.push(name, tag, stream=True, decode=True,
                                         auth_config={"username": registry.user, "password": registry.password}))
    [digest] = [e["aux"]["Digest"] for e in events if "Digest" in e.get("aux", {})]
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"version": 1, "image": {"name": name, "tag": tag, "tags": [tag], "digest": digest,
                                                         "commit": commit, "built": True}}))
    return name, digest, state
