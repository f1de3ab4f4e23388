"""The runner's sequencing: which phases run for which event, what the ledger and GitHub hear.

The phases, the target and GitHub are doubles that record their calls and refuse any call
they were not set up for; the runner is the real one.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap

import pytest

from pipeline import config as config_module
from pipeline import context as ctx
from pipeline import ledger, runner, services as services_module
from pipeline.cli import stages
from pipeline.errors import ClusterError, DeployFailed, DeployRefused, PinotageError, UnknownRelease
from pipeline.sbom import Sbom
from pipeline.state import Deployment, Image, Release

COMMIT = "a" * 40
OLD = "b" * 40
NAME = "127.0.0.1:5000/pinotage/presentation"
BUILT = Image(name=NAME, tag=COMMIT, tags=(COMMIT,), commit=COMMIT)
PUSHED = dataclasses.replace(BUILT, digest="sha256:" + "1" * 64)
LIVE = Release(image=Image(name=NAME, tag=OLD, digest="sha256:" + "2" * 64, commit=OLD), commit=OLD)


class SmokeFailed(PinotageError):
    pass


class Phases:
    """The image phases, answering from a script; anything unscripted is refused."""

    def __init__(self, calls, *, in_registry=None, smoke_error=None):
        self.calls, self.in_registry, self.smoke_error = calls, in_registry, smoke_error

    def find_pushed(self, config, context, credentials, *, progress):
        assert credentials == "creds", "find_pushed must get the registry credentials"
        self.calls.append("find_pushed")
        return self.in_registry

    def build(self, client, config, context, *, progress):
        assert client == "engine"
        self.calls.append("build")
        progress("Step 1/9 : FROM base")
        return BUILT

    def smoke(self, client, config, image, *, progress):
        self.calls.append("smoke")
        if self.smoke_error:
            raise self.smoke_error

    def check(self, container, url, config, image, *, progress):
        assert (container, url, image) == ("staged-container", "http://127.0.0.1:1", BUILT)
        self.calls.append("check")
        if self.smoke_error:
            raise self.smoke_error

    def push(self, client, config, image, credentials, *, progress):
        assert (image, credentials) == (BUILT, "creds")
        self.calls.append("push")
        return PUSHED

    def __getattr__(self, name):
        raise AssertionError(f"the runner called an unexpected phase {name!r}")


class Staged:
    container, url = "staged-container", "http://127.0.0.1:1"

    def __init__(self, calls):
        self.calls = calls

    def discard(self):
        self.calls.append("discard")


class Target:
    name = "docker"

    def __init__(self, calls, *, live=None, error=None, stages=False):
        self.calls, self.live, self.error, self.stages = calls, live, error, stages
        self.store = []
        self.staged_id = ""

    def stage(self, release, *, progress):
        self.calls.append("stage")
        assert release.image == BUILT and release.commit == COMMIT and release.ledger_id
        self.staged_id = release.ledger_id
        return Staged(self.calls) if self.stages else None

    def deployed(self):
        self.calls.append("deployed")
        return self.live

    def deploy(self, release, *, is_ancestor, progress):
        self.calls.append("deploy")
        assert release.image == PUSHED and release.commit == COMMIT and release.ledger_id
        assert release.ledger_id == self.staged_id or not self.staged_id, "the staged release is the deployed one"
        if self.error:
            raise self.error
        return Deployment(target="docker", revision="7", url="http://127.0.0.1:8080/",
                          previous=self.live, release=release)

    def ledger(self):
        return self

    def url(self):
        return "http://127.0.0.1:8080/"

    def append(self, record):
        # the storage a target provides; only the runner may call it
        self.calls.append("append")
        self.store.append(record)

    def records(self):
        return list(self.store)


def refuse(what):
    def call(*args, **kwargs):
        raise AssertionError(f"{what} must not be used for this event")
    return call


def make(event, calls, *, phases=None, target=None, statuses=None):
    context = ctx.BuildContext(commit=COMMIT, branch="master" if event == "default-branch" else "topic",
                               event=event, change_id="5" if event == "pull-request" else "",
                               build_url="https://ci/job/7/")
    plan = ctx.plan_for(context, "master")
    reads = plan.reads_credentials

    def credentials():
        calls.append("credentials")
        return "creds"

    def report(state, description):
        statuses.append(state)

    services = services_module.Services(
        make_client=lambda: "engine",
        make_target=(lambda: target) if target is not None else refuse("the target"),
        read_credentials=credentials if reads else refuse("the registry credentials"),
        report_status=report if statuses is not None else None,
        is_ancestor=lambda older, newer: older == OLD and newer == COMMIT,
        phases=phases or Phases(calls),
    )
    return context, plan, services


def go(event, calls, lines=None, **kwargs):
    context, plan, services = make(event, calls, **kwargs)
    say = (lines.append if lines is not None else (lambda line: None))
    return runner.run(config_module.Config(), context, plan, services, say=say, progress=lambda line: None)


@pytest.mark.parametrize("event, expected", [
    ("pull-request", ["build", "smoke"]),
    ("branch", ["build", "smoke"]),
    ("tag", ["credentials", "find_pushed", "build", "smoke", "push"]),
    ("default-branch", ["credentials", "find_pushed", "build", "stage", "smoke", "push", "deploy", "append"]),
], ids=["pull-request", "branch", "tag", "default-branch"])
def test_each_event_runs_its_phases_in_order(event, expected):
    calls = []
    target = Target(calls)
    statuses = [] if event in ("tag", "default-branch") else None
    outcome = go(event, calls, target=target, statuses=statuses)
    assert calls == expected
    assert outcome.pushed is ("push" in expected)
    assert (outcome.deployment is not None) is ("deploy" in expected)
    if statuses is not None:
        assert statuses == ["pending", "success"]


def test_a_staged_release_is_smoke_tested_in_place_and_discarded_after_the_deploy():
    calls = []
    outcome = go("default-branch", calls, target=Target(calls, stages=True))
    assert calls == ["credentials", "find_pushed", "build", "stage", "check", "push", "deploy", "append",
                     "discard"]
    assert outcome.record.id == outcome.deployment.release.ledger_id


@pytest.mark.parametrize("failing", ["smoke", "deploy"])
def test_a_staged_release_is_discarded_when_the_run_fails(failing):
    calls = []
    phases = Phases(calls, smoke_error=SmokeFailed("no first slide") if failing == "smoke" else None)
    target = Target(calls, stages=True, error=DeployFailed("never healthy", rolled_back=False) if failing == "deploy" else None)
    with pytest.raises(SmokeFailed if failing == "smoke" else DeployFailed):
        go("default-branch", calls, phases=phases, target=target)
    assert calls[-1] == "discard" and calls.count("discard") == 1
    assert "push" not in calls if failing == "smoke" else "append" in calls


def test_a_commit_in_the_registry_skips_build_smoke_and_push():
    calls = []
    outcome = go("default-branch", calls, phases=Phases(calls, in_registry=PUSHED), target=Target(calls))
    assert calls == ["credentials", "find_pushed", "deployed", "deploy", "append"]
    assert (outcome.built, outcome.pushed, outcome.image) == (False, False, PUSHED)
    assert "already in the registry" in "\n".join(outcome.summary())


def test_a_deploy_is_recorded_with_its_phase_durations():
    calls = []
    target = Target(calls, live=LIVE)
    outcome = go("default-branch", calls, target=target)
    [record] = target.store
    assert outcome.record == record
    assert (record.outcome, record.commit, record.image, record.target) == ("deployed", COMMIT, PUSHED.pinned, "docker")
    assert record.build_url == "https://ci/job/7/"
    assert list(record.phases_s) == ["lookup", "build", "smoke", "push", "deploy"]
    assert all(took >= 0 for took in record.phases_s.values())
    assert (record.revision, record.message) == ("7", "")
    assert record.id == outcome.deployment.release.ledger_id, "the record's id is the one the release carried"
    summary = "\n".join(outcome.summary())
    assert f"replacing {OLD[:12]}" in summary
    assert outcome.summary()[-1] == "url:      http://127.0.0.1:8080/"


@pytest.mark.parametrize("error, outcome, message, revision", [
    (DeployRefused("older than the live one"), "refused", "older than the live one", ""),
    (DeployFailed("never healthy; the previous release still serves", rolled_back=True, returned_to=LIVE,
                  revision="4"),
     "rolled-back", f"rolled back to {OLD[:12]} ({LIVE.image.pinned}): never healthy; the previous release still serves",
     "4"),
    (DeployFailed("never healthy; nothing was live", rolled_back=False), "failed", "never healthy; nothing was live", ""),
    (PinotageError("cannot apply deployment/presentation: 500"), "failed", "cannot apply deployment/presentation: 500", ""),
], ids=["refused", "rolled-back", "failed", "cluster-error"])
def test_a_deploy_that_does_not_go_live_is_recorded_once_and_fails_the_run(error, outcome, message, revision):
    calls, statuses = [], []
    target = Target(calls, live=LIVE, error=error)
    with pytest.raises(type(error)):
        go("default-branch", calls, target=target, statuses=statuses)
    [record] = target.store
    assert (record.outcome, record.message, record.revision) == (outcome, message, revision)
    assert (record.commit, record.image) == (COMMIT, PUSHED.pinned), "the record names the attempted release"
    assert list(record.phases_s) == ["lookup", "build", "smoke", "push", "deploy"]
    assert calls[-2:] == ["deploy", "append"]
    assert statuses == ["pending", "failure"]


def test_the_live_digest_is_not_deployed_again():
    calls = []
    live = Release(image=PUSHED, commit=COMMIT)
    target = Target(calls, live=live)
    outcome = go("default-branch", calls, phases=Phases(calls, in_registry=PUSHED), target=target)
    assert calls == ["credentials", "find_pushed", "deployed"]
    assert target.store == [] and outcome.deployment is None
    assert "already live" in "\n".join(outcome.summary())
    assert outcome.summary()[-1] == "url:      http://127.0.0.1:8080/"


def test_a_failed_smoke_test_stops_before_the_push():
    calls, statuses = [], []
    with pytest.raises(SmokeFailed):
        go("default-branch", calls, phases=Phases(calls, smoke_error=SmokeFailed("no first slide")),
           target=Target(calls), statuses=statuses)
    assert calls == ["credentials", "find_pushed", "build", "stage", "smoke"]
    assert statuses == ["pending", "failure"]


def test_a_failure_status_names_the_phase_that_failed():
    calls, sent = [], []
    context, plan, services = make("default-branch", calls, target=Target(calls),
                                   phases=Phases(calls, smoke_error=SmokeFailed("no first slide")))
    services.report_status = lambda state, description: sent.append((state, description))
    with pytest.raises(SmokeFailed):
        runner.run(config_module.Config(), context, plan, services, say=lambda _: None, progress=lambda _: None)
    assert sent[-1] == ("failure", "smoke failed: no first slide")


def test_a_refused_status_is_shown_and_does_not_fail_the_release():
    calls, lines = [], []
    context, plan, services = make("default-branch", calls, target=Target(calls))

    def report(state, description):
        raise PinotageError("GitHub refused: 401 Bad credentials")

    services.report_status = report
    outcome = runner.run(config_module.Config(), context, plan, services, say=lines.append, progress=lambda _: None)
    assert outcome.deployment is not None
    assert "status: success not reported: GitHub refused: 401 Bad credentials" in lines


def test_each_phase_prints_start_end_and_duration():
    ticks = iter([10.0, 12.5, 20.0, 21.0])
    lines = []
    timer = runner.Timer(lines.append, clock=lambda: next(ticks))
    with timer.phase("build"):
        pass
    with pytest.raises(SmokeFailed):
        with timer.phase("smoke"):
            raise SmokeFailed("no first slide")
    assert lines == ["build: started", "build: done in 2.5 s", "smoke: started", "smoke: failed after 1.0 s (no first slide)"]
    assert timer.phases_s == {"build": 2.5, "smoke": 1.0}


def test_the_run_log_names_every_phase():
    calls, lines = [], []
    go("default-branch", calls, lines, target=Target(calls))
    for phase in ("lookup", "build", "smoke", "push", "deploy"):
        assert f"{phase}: started" in lines
        assert any(line.startswith(f"{phase}: done in ") for line in lines)


@pytest.mark.parametrize("event, present, absent", [
    ("default-branch", ["deploy", "ledger", "registry", "status"], []),
    ("pull-request", ["image"], ["deploy", "registry", "status"]),
], ids=["default-branch", "pull-request"])
def test_dry_run_describes_only_the_planned_steps(event, present, absent):
    context, plan, _ = make(event, [])
    labels = [label for label, _ in stages.dry_run(config_module.Config(), context, plan)]
    assert all(label in labels for label in present) and not any(label in labels for label in absent)


OLD_DEPLOY = ledger.Record(id="r-old", app="presentation", commit=OLD, image=LIVE.image.pinned, target="docker",
                           build_url="", started_at="2026-01-01T00:00:00+00:00",
                           finished_at="2026-01-01T00:01:00+00:00", outcome="deployed")


class RollbackTarget(Target):
    """A target whose rollback returns to LIVE, or fails or refuses as told."""

    def __init__(self, calls, *, reports_release=True, **kwargs):
        super().__init__(calls, live=Release(image=PUSHED, commit=COMMIT, ledger_id="r-new"), **kwargs)
        self.reports_release = reports_release

    def rollback(self, to_commit=None, *, progress):
        self.calls.append(("rollback", to_commit))
        if self.error:
            raise self.error
        before, self.live = self.live, LIVE
        return Deployment(target="docker", revision="3", url="http://127.0.0.1:8080/", previous=before,
                          release=LIVE if self.reports_release else None)


@pytest.mark.parametrize("reports_release", [True, False], ids=["target-says-what-serves", "read-back"])
def test_a_rollback_lands_in_the_ledger(reports_release):
    calls = []
    target = RollbackTarget(calls, reports_release=reports_release)
    target.store.append(OLD_DEPLOY)
    deployment, record = runner.rollback(config_module.Config(), target, to_commit=OLD[:8], say=lambda _: None)
    assert ("rollback", OLD[:8]) in calls and calls.count("append") == 1
    assert target.store == [OLD_DEPLOY, record]
    assert (record.commit, record.image, record.outcome, record.message) == (
        OLD, LIVE.image.pinned, "deployed", f"rollback from {COMMIT[:12]}")
    assert (list(record.phases_s), record.revision) == (["rollback"], "3")
    assert deployment.previous.commit == COMMIT


def test_a_rollback_to_a_commit_never_deployed_is_refused_before_the_target_is_asked():
    calls = []
    target = RollbackTarget(calls)
    target.store.append(OLD_DEPLOY)
    with pytest.raises(UnknownRelease, match="--to beefbeef: no successful deploy of that commit"):
        runner.rollback(config_module.Config(), target, to_commit="beefbeef", say=lambda _: None)
    assert calls == []  # no deployed(), no rollback (no Lease, no lock), no record
    assert target.store == [OLD_DEPLOY]


ROLLBACK_FAILURES = [
    # id, what the target raises, the record expected: (outcome, commit, message start) or None
    ("rolled-back", DeployFailed("the new one crashed", rolled_back=True, returned_to=Release(image=PUSHED, commit=COMMIT),
                                 attempted=LIVE, revision="5"),
     ("rolled-back", OLD, f"rollback from {COMMIT[:12]}; rolled back to {COMMIT[:12]}")),
    ("failed-before-choosing", DeployFailed("cannot pull", rolled_back=False),
     ("failed", COMMIT, f"rollback from {COMMIT[:12]}; cannot pull")),
    ("refused", DeployRefused("there is no earlier successful deploy to roll back to"), None),
]


@pytest.mark.parametrize("error, expected", [f[1:] for f in ROLLBACK_FAILURES], ids=[f[0] for f in ROLLBACK_FAILURES])
def test_a_failed_rollback_is_recorded_once_and_a_refused_one_not_at_all(error, expected):
    calls = []
    target = RollbackTarget(calls, error=error)
    with pytest.raises(type(error)):
        runner.rollback(config_module.Config(), target, to_commit=None, say=lambda _: None)
    if expected is None:
        assert target.store == [] and "append" not in calls
        return
    [record] = target.store
    assert (record.outcome, record.commit) == expected[:2]
    assert record.message.startswith(expected[2]), record.message
    assert list(record.phases_s) == ["rollback"]


FOUND = dataclasses.replace(PUSHED, built=False)  # what the lookup hands on when the registry has the commit


@pytest.mark.parametrize("event, in_registry, expected_calls, outcome", [
    ("default-branch", None, ["credentials", "find_pushed", "build", "smoke", "push"], "built-and-pushed"),
    ("default-branch", FOUND, ["credentials", "find_pushed"], "found-and-skipped"),
    ("branch", None, ["build", "smoke", "push-refused"], "built-not-pushed"),
], ids=["master-builds-what-the-registry-lacks", "master-skips-what-the-registry-has", "branch-never-pushes"])
def test_the_jenkins_stages_one_at_a_time_decide_as_run_does(event, in_registry, expected_calls, outcome):
    """Each Jenkins stage calls one runner function; together they make run's decisions."""
    calls = []
    context, plan, services = make(event, calls, phases=Phases(calls, in_registry=in_registry))
    config, quiet = config_module.Config(), (lambda line: None)
    found = runner.lookup_stage(config, context, plan, services, progress=quiet) if "push" in plan else None
    image = runner.build_stage(config, context, services, found=found, progress=quiet)
    smoked = runner.smoke_stage(config, image, services, progress=quiet)
    try:
        image, pushed = runner.push_stage(config, context, plan, image, services, progress=quiet)
    except DeployRefused:
        calls.append("push-refused")
        pushed = False
    assert calls == expected_calls
    assert (image, smoked, pushed) == {"built-and-pushed": (PUSHED, True, True),
                                       "found-and-skipped": (in_registry, False, False),
                                       "built-not-pushed": (BUILT, True, False)}[outcome]


def test_the_build_gets_the_sbom_and_the_ledger_record_keeps_it():
    calls = []
    made = Sbom(digest="sha256:" + "5" * 64, path="/state/sbom/5.cdx.json", packages=("http-server@14.1.1",))

    class PhasesWithSbom(Phases):
        def build(self, client, config, context, *, progress, sbom):
            assert sbom is made
            self.calls.append("build")
            return dataclasses.replace(BUILT, sbom=sbom.digest, packages=sbom.packages)

    class AnyImageTarget(Target):
        def deploy(self, release, *, is_ancestor, progress):
            self.calls.append("deploy")
            return Deployment(target="docker", revision="7", release=release)

    target = AnyImageTarget(calls)
    context, plan, services = make("default-branch", calls, phases=PhasesWithSbom(calls), target=target)
    services.make_sbom = lambda: calls.append("sbom") or made
    built = runner.build_stage(config_module.Config(), context, services, progress=lambda line: None)
    assert calls == ["sbom", "build"] and built.sbom == made.digest
    runner.deploy(config_module.Config(), context, dataclasses.replace(built, digest=PUSHED.digest), services,
                  say=lambda line: None, progress=lambda line: None)
    [record] = target.store
    assert (record.sbom, record.packages) == (made.digest, ("http-server@14.1.1",))


class LedgerDownTarget(Target):
    """A target whose deploy fails and whose ledger storage then refuses the record."""

    def append(self, record):
        self.calls.append("append")
        raise ClusterError("configmap/pinotage-ledger-presentation: the API server answered 503")


def test_a_failed_ledger_write_is_reported_beside_the_deploy_error_never_instead(capsys):
    from pipeline import boundary

    calls = []
    failure = DeployFailed("the rollout of abc failed (never healthy)", rolled_back=False)
    with pytest.raises(DeployFailed) as caught:
        go("default-branch", calls, target=LedgerDownTarget(calls, error=failure))
    assert caught.value is failure and calls[-1] == "append"
    assert boundary.run(lambda: (_ for _ in ()).throw(caught.value)) == 1
    assert capsys.readouterr().err.splitlines()[:2] == [
        "pinotage: error: the rollout of abc failed (never healthy)",
        "pinotage: error: and the ledger record of this failure was not written: "
        "configmap/pinotage-ledger-presentation: the API server answered 503"]


def test_a_run_that_deploys_makes_an_early_target_while_the_image_phases_run():
    """The Kubernetes client is slow to load: with early_target the target is made beside the build."""
    import threading

    calls = []
    made_in = []

    class Slow(Phases):
        def build(self, client, config, context, *, progress):
            assert made.wait(10), "the target was not being made while the build ran"
            return super().build(client, config, context, progress=progress)

    made = threading.Event()

    def make_target():
        made_in.append(threading.current_thread().name)
        made.set()
        return Target(calls, live=LIVE)

    context, plan, services = make("default-branch", calls, phases=Slow(calls))
    services = dataclasses.replace(services, make_target=make_target, early_target=True)
    outcome = runner.run(config_module.Config(), context, plan, services, say=lambda line: None,
                         progress=lambda line: None)
    assert outcome.deployment is not None and made_in == ["pinotage-make-target"]
    assert calls == ["credentials", "find_pushed", "build", "stage", "smoke", "push", "deploy", "append"]


def test_an_early_targets_failure_is_raised_at_the_deploy_after_the_image_phases():
    calls = []

    def make_target():
        raise ClusterError("kubeconfig: /nowhere: no such file")

    context, plan, services = make("default-branch", calls)
    services = dataclasses.replace(services, make_target=make_target, early_target=True)
    with pytest.raises(ClusterError, match="no such file"):
        runner.run(config_module.Config(), context, plan, services, say=lambda line: None, progress=lambda line: None)
    assert calls == ["credentials", "find_pushed", "build", "smoke", "push"]  # the image was still pushed


def test_without_early_target_the_target_is_made_by_the_deploy_itself():
    import threading

    calls, made_in = [], []

    def make_target():
        made_in.append(threading.current_thread().name)
        return Target(calls, live=LIVE)

    context, plan, services = make("default-branch", calls)
    services = dataclasses.replace(services, make_target=make_target)
    runner.run(config_module.Config(), context, plan, services, say=lambda line: None, progress=lambda line: None)
    assert made_in == [threading.main_thread().name]


def test_the_early_targets_thread_finds_the_engine_clients_modules_imported_whole():
    """Two threads importing requests at once can be handed a partly initialised module (seen in a
    benchmark run): the thread that makes the target starts only once the main thread has them."""
    script = textwrap.dedent("""
        import sys
        from pipeline import services
        assert "requests" not in sys.modules, "this check needs a process that has not imported them yet"
        seen = []
        made = services.Services(make_client=None, read_credentials=None, report_status=None, is_ancestor=None,
                                 phases=None, early_target=True,
                                 make_target=lambda: seen.append({"docker", "requests", "urllib3"} <= set(sys.modules)))
        made.prepare_target()
        made.target()
        print(seen)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[True]"
