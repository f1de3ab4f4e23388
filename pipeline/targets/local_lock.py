"""Where the local target keeps its ledger and lock: per engine and app, for every checkout on the machine.

A ledger under the checkout's ``.pinotage/`` lets a second clone on the same machine say "no
deploys recorded yet" while the app it deployed is live, and a lock there serialises nothing
between clones. So unless ``state_dir`` is set (file, environment or flag), both live in
``<state home>/<engine id>/<app>/``, where the state home is the first of:

1. ``/var/lib/pinotage``, when an administrator made it and it is writable (a shared build agent);
2. ``$XDG_STATE_HOME/pinotage``;
3. ``$HOME/.local/state/pinotage``.

The lock is an ``flock`` on a file that also names its holder, so a second deploy waits (up to
``deadlines.lock_s``), says who it waits for, and then decides again on what is live by then.

A claim is an ``flock`` too, held by a run for as long as it needs something that no deploy
lock covers (the container it staged for its smoke test): the kernel drops it when the run
ends, however it ends, so ``claimed`` tells a run still at work from one that crashed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import time
from pathlib import Path
from typing import Callable, Iterator, Mapping

from pipeline.errors import BadInput, DeployLocked

SHARED_HOME = Path("/var/lib/pinotage")
POLL_S = 0.2
SAY_EVERY_S = 10.0


def state_home(environ: Mapping[str, str]) -> Path:
    """Return the machine's folder for Pinotage state (see the module docstring)."""
    if SHARED_HOME.is_dir() and os.access(SHARED_HOME, os.W_OK):
        return SHARED_HOME
    if environ.get("XDG_STATE_HOME"):
        return Path(environ["XDG_STATE_HOME"], "pinotage")
    return Path(environ.get("HOME") or Path.home(), ".local", "state", "pinotage")


def engine_dir(environ: Mapping[str, str], engine_id: str, app: str) -> Path:
    """Return the folder of one app's ledger and lock on one engine."""
    safe_id = re.sub(r"[^A-Za-z0-9_.-]", "_", engine_id)[:100] or "engine"
    return state_home(environ) / safe_id / app


@contextlib.contextmanager
def hold(path: Path, *, who: str, deadline_s: float, progress: Callable[[str], None]) -> Iterator[None]:
    """Hold the lock file ``path``; wait for another holder up to ``deadline_s``, saying who holds it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise BadInput(f"{path}: cannot make the deploy lock ({e.strerror or type(e).__name__})",
                       hint="set state_dir to a folder this user may write") from None
    try:
        _acquire(fd, path, deadline_s, progress)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "who": who,
                                  "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing releases the flock


def claim(path: Path) -> Callable[[], None]:
    """Claim ``path`` (a new file) for this process; return what gives it up and removes the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file nobody holds: never blocks
    except OSError:
        os.close(fd)
        raise

    def give_up() -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)

    return give_up


def claimed(path: Path) -> bool:
    """Say whether a process still running holds the claim on ``path`` (this one included)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _acquire(fd: int, path: Path, deadline_s: float, progress: Callable[[str], None]) -> None:
    started = time.monotonic()
    said_at = None
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        waited = time.monotonic() - started
        if waited >= deadline_s:
            raise DeployLocked(f"{path}: another deploy of this app on this engine holds the lock ({holder(path)});"
                               f" gave up after {deadline_s:g} s",
                               hint="wait for it to finish, or raise deadlines.lock_s")
        if said_at is None or time.monotonic() - said_at >= SAY_EVERY_S:
            progress(f"waiting for the deploy lock: held by {holder(path)}")
            said_at = time.monotonic()
        time.sleep(POLL_S)


def holder(path: Path) -> str:
    """Describe who holds the lock, from what it wrote into the lock file."""
    try:
        data = json.loads(path.read_text()[:2000] or "{}")
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict) or not data.get("pid"):
        return "a deploy that has not said who it is"
    return f"{str(data.get('who') or 'a deploy')[:200]}, pid {data['pid']} on {str(data.get('host'))[:100]}" \
           f" since {str(data.get('since'))[:40]}"
