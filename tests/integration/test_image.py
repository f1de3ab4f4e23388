"""The image phases against the real Docker engine and the authenticated local registry.

The issue's eight cases: end to end, skip on re-run, a broken step, a never-healthy app, a wrong
password, injected registry faults (500 then 429 then success; a registry that stays down), the
password nowhere, and a numeric non-root user.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import shutil
import subprocess
import threading
import time
import types
from pathlib import Path

import pytest

from pipeline import cli, config as config_module, image as phases, runner, sbom, services as services_module
from pipeline.context import BuildContext, plan_for
from pipeline.errors import AuthError, PushFailed, SmokeFailed
from pipeline.registry import Credentials, RegistryClient
from pipeline.state import Image, read_state, write_state
from tests.conftest import ROOT
from tests.registry_proxy import FaultProxy

pytestmark = pytest.mark.integration

APP = ROOT / "docker" / "presentation"
REPOSITORY = f"h8test/presentation-{secrets.token_hex(3)}"
FAST_RETRY = phases.RetryPolicy(attempts=4, base_s=0.2, cap_s=1.0)


def a_context(**changes) -> BuildContext:
    base = BuildContext(commit=secrets.token_hex(20), branch="master", event="default-branch",
                        source_url="https://git.example.invalid/pinotage.git")
    return dataclasses.replace(base, **changes)


@pytest.fixture
def env(environ, registry, base_images, tmp_path, monkeypatch):
    """The environment a Jenkins stage would have: the registry, the local bases, the credentials."""
    monkeypatch.chdir(tmp_path)  # no pinotage.yaml from the checkout
    return {**environ,
            "PINOTAGE_REGISTRY_URL": registry.url, "PINOTAGE_REGISTRY_USER": registry.user,
            "PINOTAGE_REGISTRY_PASSWORD": registry.password,
            "PINOTAGE_IMAGE_REPOSITORY": REPOSITORY, "PINOTAGE_IMAGE_CONTEXT": str(APP),
            "PINOTAGE_IMAGE_BUILD_BASE": base_images.build, "PINOTAGE_IMAGE_FINAL_BASE": base_images.runtime,
            "PINOTAGE_DEADLINES_SMOKE_S": "30"}


def load(env, *overrides):
    return config_module.load(environ={k: v for k, v in env.items() if k != "PINOTAGE_REGISTRY_PASSWORD"},
                              overrides=list(overrides))


def remove_tags(docker_cleanup, image):
    docker_cleanup["images"].extend(f"{image.name}:{tag}" for tag in image.tags)


def pinotage(argv, env, capsys):
    code = cli.main(argv, env)
    out, err = capsys.readouterr()
    return code, out, err


def registry_digest(registry, tag, repository=REPOSITORY):
    credentials = Credentials(registry.user, registry.password, "test")
    return RegistryClient(registry.url, credentials).manifest_digest(repository, tag)


def smoke_cleaned_up() -> None:
    """Wait for the removal of passed smoke tests' containers and networks: it runs while the next phase
    does, in a thread that is not a daemon, so a process cannot exit before they are gone."""
    cleaning = [t for t in threading.enumerate() if t.name == "pinotage-smoke-cleanup"]
    assert all(not t.daemon for t in cleaning)  # (one may be done already)
    for thread in cleaning:
        thread.join(30)


def test_build_smoke_push_end_to_end_then_a_rerun_skips(env, registry, docker_client, docker_cleanup,
                                                       tmp_path, capsys):
    """Cases 1 and 2: lookup → build → smoke → push hands the digest on; a re-run's lookup finds it and the rest skip."""
    state = tmp_path / "state.json"
    context = a_context()
    write_state(state, context=context)

    code, out, err = pinotage(["lookup", "--state", str(state)], env, capsys)
    assert code == 0, err
    assert "holds no image of" in out and read_state(state).image is None

    code, out, err = pinotage(["build", "--state", str(state)], env, capsys)
    assert code == 0, err
    built = read_state(state).image
    docker_cleanup["images"].extend(f"{built.name}:{tag}" for tag in built.tags)
    assert built.built is True and built.tag == context.commit
    assert "Step " in err  # build lines streamed as progress
    # The build wrote the app's SBOM, and the image carries its digest as a label.
    labels = docker_client.images.get(built.ref).labels
    assert built.sbom.startswith("sha256:") and labels[sbom.SBOM_LABEL] == built.sbom
    assert sbom.digest_of(sbom.load(load(env), built.sbom)) == built.sbom
    assert "http-server@" in " ".join(built.packages)

    code, out, err = pinotage(["smoke", "--state", str(state)], env, capsys)
    assert code == 0, err
    assert "passed" in out
    smoke_cleaned_up()
    assert not docker_client.containers.list(all=True, filters={"label": f"{phases.SMOKE_LABEL}={context.commit}"})
    assert not docker_client.networks.list(filters={"label": f"{phases.SMOKE_LABEL}={context.commit}"})

    code, out, err = pinotage(["push", "--state", str(state)], env, capsys)
    assert code == 0, err
    pushed = read_state(state).image
    assert pushed.digest.startswith("sha256:")
    assert pushed.digest in out
    for tag in (context.commit, context.short_commit, "master"):
        assert registry_digest(registry, tag) == pushed.digest, tag

    # The re-run: the local image is gone, so only the registry can say it is there.
    for tag in built.tags:
        docker_client.images.remove(f"{built.name}:{tag}", force=True)
    write_state(state, replace=True, context=context)  # what the Context stage does in the next build
    code, out, err = pinotage(["lookup", "--state", str(state)], env, capsys)
    assert code == 0, err
    assert "already in the registry" in out
    again = read_state(state).image
    assert again.built is False and again.digest == pushed.digest
    code, out, err = pinotage(["build", "--state", str(state)], env, capsys)
    assert code == 0 and "already in the registry" in out and "Step " not in err
    assert read_state(state).image == again
    code, out, err = pinotage(["smoke", "--state", str(state)], env, capsys)
    assert code == 0 and "smoke:    skipped" in out
    assert not docker_client.images.list(name=f"{built.name}")
    code, out, err = pinotage(["push", "--state", str(state)], env, capsys)
    assert code == 0 and "pushed:   no" in out


def test_a_broken_step_is_named_with_its_last_lines(env, tmp_path, docker_cleanup, capsys):
    """Case 3: the error names the failing step and quotes the end of its output."""
    app = tmp_path / "app"
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns("node_modules", "site"))
    dockerfile = app / "Dockerfile"
    text = dockerfile.read_text()
    broken = "COPY slides ./slides\nRUN echo 'slides are about to break' && ls /no/such/folder\n"
    dockerfile.write_text(text.replace("COPY slides ./slides\n", broken, 1))
    state = tmp_path / "state.json"
    write_state(state, context=a_context(event="branch", branch="feature/x"))

    code, out, err = pinotage(["build", "--state", str(state)], {**env, "PINOTAGE_IMAGE_CONTEXT": str(app)}, capsys)
    assert code == 1
    first = next(line for line in err.splitlines() if line.startswith("pinotage: error:"))
    assert "build failed at step" in first and "RUN echo 'slides are about to break'" in first
    assert "returned a non-zero code: 2" in first
    assert "slides are about to break" in err and "/no/such/folder" in err  # the step's last lines
    assert read_state(state).image is None


def test_a_never_healthy_app_fails_the_smoke_test_and_nothing_is_pushed(env, registry, docker_client,
                                                                       docker_cleanup, tmp_path):
    """Case 4: the smoke test fails within its bound, the push never happens, no container is left."""
    app = tmp_path / "app"
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns("node_modules", "site"))
    dockerfile = app / "Dockerfile"
    # The server starts but serves an empty folder: every path, the health path too, is a 404.
    dockerfile.write_text(dockerfile.read_text().replace('"/app/site", \\\n', '"/app/missing", \\\n', 1))
    assert '"/app/missing"' in dockerfile.read_text()
    config = load(env, f"image.context={app}", "deadlines.smoke_s=3")
    context = a_context()
    plan = plan_for(context, config.default_branch)

    def build_and_note(*args, **kwargs):
        image = phases.build(*args, **kwargs)
        remove_tags(docker_cleanup, image)
        return image
    services = services_module.Services(
        make_client=lambda: docker_client, make_target=StagesNothing,
        read_credentials=lambda: Credentials(registry.user, registry.password, "test"), report_status=None,
        is_ancestor=lambda a, b: True,
        # The real phases; build also notes what it made, so the test removes it.
        phases=types.SimpleNamespace(find_pushed=phases.find_pushed, build=build_and_note, smoke=phases.smoke,
                                     push=phases.push))
    started = time.monotonic()
    with pytest.raises(SmokeFailed) as failed:
        runner.run(config, context, plan, services, say=lambda line: None, progress=lambda line: None)
    assert "/healthz did not answer 200 within 3 s (last: HTTP 404)" in failed.value.message
    assert time.monotonic() - started < 60
    assert registry_digest(registry, context.commit) is None
    assert not docker_client.containers.list(all=True, filters={"label": f"{phases.SMOKE_LABEL}={context.commit}"})


class StagesNothing:
    """A target that stages nothing (as a cluster does), so the smoke test runs in its sandbox; and no deploy."""

    def stage(self, release, *, progress):
        return None

    def __getattr__(self, name):
        pytest.fail(f"the runner asked the target for {name!r} after a failed smoke test")


# A server that answers its health path once and then leaves: the next request, for /, finds nobody.
_ANSWER_ONCE = ("require('http').createServer((q, s) => { s.end('ok'); if (q.url === '/healthz') "
                "{ console.log('answered once, leaving'); s.on('finish', () => process.exit(4)); } })"
                ".listen(process.env.PORT)")


@pytest.mark.parametrize("entrypoint, code, log_line", [
    (["sh", "-c", "echo no slides here >&2; exit 3"], 3, "no slides here"),
    (["node", "-e", _ANSWER_ONCE], 4, "answered once, leaving"),
], ids=["exits-at-once", "exits-after-the-health-check"])
def test_a_container_that_exits_is_reported_with_its_code_and_log(entrypoint, code, log_line, env, base_images,
                                                                  docker_client, docker_cleanup):
    """A stopped container publishes no port and answers nothing: the smoke test says it exited, no traceback."""
    import io

    ref = f"h8test/exits-{secrets.token_hex(3)}:1"
    dockerfile = f"FROM {base_images.runtime}\nENTRYPOINT {json.dumps(entrypoint)}\n".encode()
    docker_client.images.build(fileobj=io.BytesIO(dockerfile), tag=ref, rm=True, forcerm=True)
    docker_cleanup["images"].append(ref)
    name, tag = ref.split(":")
    with pytest.raises(SmokeFailed) as failed:
        phases.smoke(docker_client, load(env, "deadlines.smoke_s=20"), Image(name=name, tag=tag, commit="c0ffee"))
    assert f"the container exited with code {code}" in failed.value.message
    assert log_line in failed.value.log_tail
    assert not docker_client.containers.list(all=True, filters={"label": f"{phases.SMOKE_LABEL}=c0ffee"})


def test_a_wrong_password_fails_once_with_a_clear_error(env, tmp_path, docker_cleanup, capsys):
    """Case 5: a refused login is not retried."""
    state = tmp_path / "state.json"
    write_state(state, context=a_context())
    code, _, err = pinotage(["build", "--state", str(state)], env, capsys)
    assert code == 0, err
    image = read_state(state).image
    docker_cleanup["images"].extend(f"{image.name}:{tag}" for tag in image.tags)

    started = time.monotonic()
    code, out, err = pinotage(["push", "--state", str(state)], {**env, "PINOTAGE_REGISTRY_PASSWORD": "wrong"}, capsys)
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("pinotage: error:")]
    assert len(errors) == 1 and errors[0].startswith("pinotage: error: the registry refused the push of"), err
    assert "unauthorized" in errors[0]
    assert err.count("The push refers to repository") == 1 and "retrying" not in err  # one attempt only
    assert time.monotonic() - started < 30
    assert not read_state(state).image.digest


@pytest.fixture
def built(env, docker_client, docker_cleanup):
    """One built image, for the push cases that tag it for a proxy."""
    config = load(env)
    image = phases.build(docker_client, config, a_context(), progress=lambda line: None)
    remove_tags(docker_cleanup, image)
    return config, image


def retag(docker_client, docker_cleanup, image, proxy):
    name = f"{proxy.url}/{REPOSITORY}"
    docker_client.api.tag(image.ref, name, image.tag)
    docker_cleanup["images"].append(f"{name}:{image.tag}")
    return dataclasses.replace(image, name=name, tags=(image.tag,))


@pytest.mark.parametrize("faults, pushes", [((500, 429), 3), ((503,), 2)], ids=["500-then-429-then-ok", "503-then-ok"])
def test_registry_faults_are_retried_with_bounded_backoff(built, registry, docker_client, docker_cleanup,
                                                         faults, pushes):
    """Case 6a: 5xx and 429 on the manifest upload are retried, then the push succeeds."""
    config, image = built
    slept = []
    with FaultProxy(registry.url, faults=faults) as proxy:
        pushed = phases.push(docker_client, config, retag(docker_client, docker_cleanup, image, proxy),
                             Credentials(registry.user, registry.password, "test"),
                             retry=FAST_RETRY, sleep=slept.append)
        manifest_puts = [s.status for s in proxy.seen if s.method == "PUT" and "/manifests/" in s.path]
    assert manifest_puts == [*faults, 201]
    assert len(slept) == pushes - 1
    assert all(0.5 * FAST_RETRY.base_s <= s <= FAST_RETRY.cap_s for s in slept)
    assert pushed.digest == registry_digest(registry, image.tag)


def test_a_registry_that_stays_down_fails_within_the_bound(built, registry, docker_client, docker_cleanup):
    """Case 6b: connection refused on every attempt: a clear failure after the bounded retries."""
    config, image = built
    proxy = FaultProxy(registry.url).start()
    target = retag(docker_client, docker_cleanup, image, proxy)
    proxy.stop()  # the port is closed: the registry is down
    slept = []
    started = time.monotonic()
    with pytest.raises(PushFailed) as failed:
        phases.push(docker_client, config, target, Credentials(registry.user, registry.password, "test"),
                    retry=FAST_RETRY, sleep=lambda s: (slept.append(s), time.sleep(s)))
    assert failed.value.attempts == FAST_RETRY.attempts
    assert f"failed after {FAST_RETRY.attempts} attempts" in failed.value.message
    assert "connection refused" in failed.value.message
    assert len(slept) == FAST_RETRY.attempts - 1
    assert time.monotonic() - started < 30


def test_the_password_appears_nowhere(env, registry, docker_client, docker_cleanup, tmp_path, capsys):
    """Case 7: not in the output, the state file, the image history or its inspect data."""
    state = tmp_path / "state.json"
    write_state(state, context=a_context())
    seen = []
    for step in ("build", "smoke", "push"):
        code, out, err = pinotage([step, "--state", str(state)], env, capsys)
        assert code == 0, err
        seen += [out, err]
    image = read_state(state).image
    docker_cleanup["images"].extend(f"{image.name}:{tag}" for tag in image.tags)
    ref = image.ref
    history = subprocess.run(["docker", "history", "--no-trunc", ref], capture_output=True, text=True, check=True)
    inspect = subprocess.run(["docker", "inspect", ref], capture_output=True, text=True, check=True)
    seen += [history.stdout, inspect.stdout, state.read_text()]
    leftovers = [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()]
    for text in seen + leftovers:
        assert registry.password not in text
    assert "PASSWORD" not in inspect.stdout.upper() and "PASSWORD" not in history.stdout.upper()


def test_the_image_user_is_numeric_and_not_root(built, docker_client):
    """Case 8: a numeric USER, so Kubernetes' runAsNonRoot can verify it."""
    _, image = built
    attrs = docker_client.images.get(image.ref).attrs["Config"]
    user, _, group = attrs["User"].partition(":")
    assert user.isdigit() and int(user) != 0, attrs["User"]
    assert not group or group.isdigit()
    assert attrs["Healthcheck"]["Test"][0] == "CMD"
    labels = attrs["Labels"]
    assert labels["org.opencontainers.image.revision"] == image.commit
    assert labels["org.opencontainers.image.source"] == "https://git.example.invalid/pinotage.git"
    assert labels["org.opencontainers.image.created"].endswith("Z")


def test_the_app_exits_cleanly_on_sigterm(built, docker_client):
    """Node runs as PID 1: the server must handle SIGTERM itself and exit 0, promptly."""
    _, image = built
    container = docker_client.containers.run(image.ref, detach=True, environment={"PORT": "9090"})
    try:
        deadline = time.monotonic() + 20
        while b"Available on" not in container.logs() and time.monotonic() < deadline:
            time.sleep(0.1)
        started = time.monotonic()
        container.stop(timeout=10)
        took = time.monotonic() - started
        container.reload()
        assert container.attrs["State"]["ExitCode"] == 0
        assert took < 5, f"docker stop took {took:.1f} s: SIGTERM was ignored"
        assert b"9090" in container.logs()
    finally:
        container.remove(force=True)


# The image's own HEALTHCHECK command, run often so the test is quick (the engine keeps the image's test).
_FAST_HEALTHCHECK = {"interval": 300_000_000, "timeout": 3_000_000_000, "retries": 3, "start_period": 1_000_000}


@pytest.mark.parametrize("health_path, environment, expected", [
    ("/healthz", {}, "healthy"),
    ("/healthz", {"PORT": "9090"}, "healthy"),
    ("/status/ready", {"PORT": "9090"}, "healthy"),
    ("/healthz", {"PORT": "9090", "HEALTH_PATH": "/not-there"}, "unhealthy"),
], ids=["default-port", "port-9090", "another-health-path-on-9090", "a-path-that-404s-is-unhealthy"])
def test_the_image_healthcheck_follows_port_and_health_path(health_path, environment, expected, env,
                                                           docker_client, docker_cleanup):
    """Docker's HEALTHCHECK asks the port the server listens on ($PORT) for the built health path."""
    config = load(env, f"image.health_path={health_path}")
    image = phases.build(docker_client, config, a_context(), progress=lambda line: None)
    remove_tags(docker_cleanup, image)
    container = docker_client.containers.run(image.ref, detach=True, environment=environment,
                                             healthcheck=_FAST_HEALTHCHECK)
    docker_cleanup["containers"].append(container.id)
    deadline = time.monotonic() + 30
    status = "starting"
    while status == "starting" and time.monotonic() < deadline:
        time.sleep(0.2)
        container.reload()
        status = container.attrs["State"]["Health"]["Status"]
    assert status == expected, container.attrs["State"]["Health"]["Log"][-1:]


# A server whose first slide says what the sandbox left it: capabilities, privileges, limits
# (cgroup v2's files, else v1's).
_SAYS_ITS_SANDBOX = r"""
const fs = require('fs');
const read = (...paths) => { for (const p of paths) { try { return fs.readFileSync(p, 'utf8').trim(); } catch (e) {} }
                             return 'none'; };
const status = read('/proc/self/status');
const field = (name) => (status.match(new RegExp('^' + name + ':\\s*(\\S+)', 'm')) || [])[1];
const report = ['caps=' + field('CapEff'), 'nonewprivs=' + field('NoNewPrivs'),
  'pids=' + read('/sys/fs/cgroup/pids.max', '/sys/fs/cgroup/pids/pids.max'),
  'memory=' + read('/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes')].join(' ');
require('http').createServer((q, s) => s.end('<section>' + report + '</section>')).listen(process.env.PORT);
"""


def test_the_smoke_container_runs_without_capabilities_privileges_or_a_way_out(env, base_images, docker_client,
                                                                              docker_cleanup):
    """Pull-request code runs in the smoke test: no capabilities, no new privileges, limits, no route out."""
    import io

    from pipeline import sandbox

    ref = f"h8test/sandbox-{secrets.token_hex(3)}:1"
    dockerfile = f"FROM {base_images.runtime}\nENTRYPOINT {json.dumps(['node', '-e', _SAYS_ITS_SANDBOX])}\n"
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=ref, rm=True, forcerm=True)
    docker_cleanup["images"].append(ref)
    name, tag = ref.split(":")
    expected = f"caps=0000000000000000 nonewprivs=1 pids={sandbox.PIDS_LIMIT} memory={512 * 1024 * 1024}"
    config = load(env, "deadlines.smoke_s=20", f"image.first_slide_text={expected}", "image.health_path=/")
    networks: dict[str, bool] = {}

    def while_it_runs(line: str) -> None:
        # No way out: the engine gives an internal network a gateway route, but routes nothing
        # beyond it, so what shows is the container's one network and its Internal flag.
        if line.startswith("started "):
            attached = docker_client.containers.get(line.split()[1]).attrs["NetworkSettings"]["Networks"]
            networks.update({n: docker_client.networks.get(n).attrs["Internal"] for n in attached})

    phases.smoke(docker_client, config, Image(name=name, tag=tag, commit="5andb0x"),  # the slide says its sandbox
                 progress=while_it_runs)
    assert list(networks.values()) == [True], networks
    smoke_cleaned_up()
    assert not docker_client.containers.list(all=True, filters={"label": f"{phases.SMOKE_LABEL}=5andb0x"})
    assert not docker_client.networks.list(filters={"label": f"{phases.SMOKE_LABEL}=5andb0x"})


def test_sigterm_during_the_smoke_test_removes_its_container_and_network(env, base_images, docker_client,
                                                                         docker_cleanup, tmp_path):
    """A Jenkins abort sends SIGTERM: pinotage exits 143 and leaves no smoke container nor network behind."""
    import io
    import signal
    import sys

    commit = secrets.token_hex(20)
    ref = f"h8test/never-listens-{secrets.token_hex(3)}:1"
    dockerfile = f"FROM {base_images.runtime}\nENTRYPOINT {json.dumps(['node', '-e', 'setInterval(() => {}, 1000)'])}\n"
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=ref, rm=True, forcerm=True)
    docker_cleanup["images"].append(ref)
    name, tag = ref.split(":")
    state = tmp_path / "s.json"
    write_state(state, context=a_context(commit=commit), image=Image(name=name, tag=tag, commit=commit))
    label = f"{phases.SMOKE_LABEL}={commit}"
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "smoke", "--state", str(state)], cwd=tmp_path,
                            env={**env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 60
        while not docker_client.containers.list(filters={"label": label}):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM); cleaned up" in err
    assert not docker_client.containers.list(all=True, filters={"label": label})
    assert not docker_client.networks.list(filters={"label": label})
