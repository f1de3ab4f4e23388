"""The local target's lock, claims and ledger home: one per engine and app, whichever checkout asks."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from pipeline.errors import DeployLocked
from pipeline.targets import local_lock


def test_every_checkout_finds_the_same_folder_per_engine_and_app(tmp_path, monkeypatch):
    monkeypatch.setattr(local_lock, "SHARED_HOME", tmp_path / "absent")
    environ = {"XDG_STATE_HOME": str(tmp_path / "state"), "HOME": "/nonexistent"}
    assert local_lock.engine_dir(environ, "ABCD:EF/12", "slides") == tmp_path / "state/pinotage/ABCD_EF_12/slides"
    assert local_lock.engine_dir({"HOME": str(tmp_path)}, "E", "a") == tmp_path / ".local/state/pinotage/E/a"
    (tmp_path / "shared").mkdir()
    monkeypatch.setattr(local_lock, "SHARED_HOME", tmp_path / "shared")
    assert local_lock.engine_dir(environ, "E", "a") == tmp_path / "shared/E/a"


def test_a_second_holder_waits_names_the_first_then_goes_on(tmp_path):
    path = tmp_path / "docker-a.lock"
    said, order = [], []
    first_in = threading.Event()

    def first():
        with local_lock.hold(path, who="build 41", deadline_s=5, progress=said.append):
            first_in.set()
            time.sleep(0.6)
            order.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    first_in.wait(5)
    with local_lock.hold(path, who="build 42", deadline_s=5, progress=said.append):
        order.append("second in")
    thread.join()
    assert order == ["first done", "second in"]
    assert len(said) == 1 and said[0].startswith("waiting for the deploy lock: held by build 41, pid ")


def test_a_holder_past_the_deadline_is_deploy_locked_naming_it(tmp_path):
    path = tmp_path / "docker-a.lock"
    with local_lock.hold(path, who="build 41", deadline_s=1, progress=lambda _: None):
        with pytest.raises(DeployLocked) as e:
            with local_lock.hold(path, who="build 42", deadline_s=0.5, progress=lambda _: None):
                pass
    assert "holds the lock (build 41, pid " in e.value.message and "gave up after 0.5 s" in e.value.message
    with local_lock.hold(path, who="build 43", deadline_s=0.5, progress=lambda _: None):
        pass  # released when the holder left


class Engine:
    """The one engine call the ledger's location needs; any other is refused."""

    def __init__(self, engine_id):
        self.engine_id = engine_id

    def info(self):
        return {"ID": self.engine_id}

    def __getattr__(self, name):
        raise AssertionError(f"the ledger's location needs no engine call {name!r}")


def refuse():
    raise AssertionError("the ledger's location needs no registry login")


def test_two_checkouts_of_one_app_on_one_engine_share_the_ledger(tmp_path, monkeypatch):
    from pipeline import config as config_module
    from pipeline.targets import docker

    monkeypatch.setattr(local_lock, "SHARED_HOME", tmp_path / "absent")
    environ = {"XDG_STATE_HOME": str(tmp_path / "state")}
    ledgers = []
    for checkout in ("clone-a", "clone-b"):
        (tmp_path / checkout).mkdir()
        config = config_module.load(environ={}, cwd=str(tmp_path / checkout))
        ledgers.append(docker.DockerTarget(config, environ, lambda: Engine("ENGINE:1"), refuse).ledger().path)
    assert ledgers[0] == ledgers[1] == tmp_path / "state/pinotage/ENGINE_1/presentation/ledger-presentation.jsonl"
    other = docker.DockerTarget(config, environ, lambda: Engine("ENGINE:2"), refuse).ledger().path
    assert other != ledgers[0]
    explicit = config_module.load(environ={}, cwd=str(tmp_path / "clone-a"), overrides=["state_dir=.state"])
    assert docker.DockerTarget(explicit, environ, lambda: Engine("ENGINE:1"), refuse).ledger().path == \
        tmp_path / "clone-a/.state/ledger-presentation.jsonl"


def test_a_claim_holds_while_its_process_lives_and_not_after_it_is_killed(tmp_path):
    path = tmp_path / "staged" / "pinotage-slides-0123456789ab-c0ffee.claim"
    assert not local_lock.claimed(path)
    give_up = local_lock.claim(path)
    assert local_lock.claimed(path), "this process holds it"
    give_up()
    assert not local_lock.claimed(path) and not path.exists()

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, pathlib; from pipeline.targets import local_lock; "
                               "local_lock.claim(pathlib.Path(sys.argv[1])); print('held', flush=True); sys.stdin.read()",
         str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        assert local_lock.claimed(path), "another live process holds it"
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert path.exists() and not local_lock.claimed(path), "a killed holder leaves its file, but no claim"
