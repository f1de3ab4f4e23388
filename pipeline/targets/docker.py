"""The local target, the embedded default: the release runs as a container on the local engine.

A deploy pulls the image by digest from the registry and starts it on a loopback port of its own,
or takes the container ``stage`` started from the same image before the push, which the run's
smoke test checked (``containers.Staged``). Only once it answers its health path does the front
(``targets/front.py``: nginx on ``deploy.host_port``, which never stops) switch to it with a
graceful reload; then the previous container is stopped, kept for rollback, which starts it
again and switches the front back the same way. If the release never gets healthy, or the front
cannot switch, the new container goes and the previous release serves on, untouched;
``DeployFailed`` says so.

What is live is read from the engine itself: the front's configuration names the container it
serves and its image by digest, and containers carry the rest of the release in labels. The
ledger's storage is a file, written by the runner only, and a file lock serialises deploys and
rollbacks of one app on one engine, so the order check is made on the state just read; both sit
where every checkout on the machine finds them (``targets/local_lock.py``), unless ``state_dir``
is set.
"""

from __future__ import annotations

import datetime
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from pipeline import config as config_module
from pipeline import probe
from pipeline.errors import DeployFailed, DeployRefused
from pipeline.ledger import FileLedger, pick_rollback, release_of
from pipeline.state import Deployment, Image, Release
from pipeline.targets import IsAncestor, Progress, containers, local_lock
from pipeline.targets import front as front_module

if TYPE_CHECKING:
    from pipeline.registry import Credentials

STAGED_LABEL = f"{containers.LABEL}.staged"  # on a container started before its push (``stage``)
KEEP_PREVIOUS = 1  # stopped containers kept for a fast rollback; older ones go


def make_target(config: config_module.Config, environ: Mapping[str, str], progress: Progress, *,
                connect: Callable[[], Any], credentials: Callable[[], Credentials | None]) -> "DockerTarget":
    """Build the local target; connect() gives the docker SDK client and credentials() the registry
    login for a pull, each called when first needed only."""
    return DockerTarget(config, environ, connect, credentials)


class DockerTarget:
    name = "docker"

    def __init__(self, config: config_module.Config, environ: Mapping[str, str], connect: Callable[[], Any],
                 credentials: Callable[[], Credentials | None]):
        self.config = config
        self.environ = environ  # BUILD_URL names the holder of the deploy lock
        self._connect = connect
        self._credentials = credentials
        self._client = None
        self._staged: dict[str, containers.Staged] = {}  # by ledger id: what stage() started, for deploy
        self.app = config.app
        self._state_dir = config.path(config.state_dir) if config.sources.get("state_dir", "default") != "default" \
            else None  # unset: per engine and app, where every checkout finds it (targets/local_lock.py)

    @property
    def state_dir(self) -> Path:
        if self._state_dir is None:
            self._state_dir = local_lock.engine_dir(self.environ, self.client.info().get("ID", ""), self.app)
        return self._state_dir

    @property
    def client(self):
        # Reading the ledger ('pinotage history') needs no engine; everything else connects once.
        if self._client is None:
            self._client = self._connect()
        return self._client

    # --- the Target verbs ---------------------------------------------------

    def deployed(self) -> Release | None:
        return self._live()[1]

    def stage(self, release: Release, *, progress: Progress) -> containers.Staged | None:
        """Start the release's container before its image is pushed, for the smoke test; ``deploy`` takes it.

        The image has no digest yet: the container runs the built image by its tag. The run's
        smoke test checks this very container (``image.check``); the deploy of the release with
        the same ledger id routes to it only if the pushed digest names that image and it still
        answers, else it starts the release as always. Nothing routes to it before that deploy
        switches the front, under the deploy lock and after the order check. None: the engine
        refused (the smoke test then runs in its sandbox, and the deploy reports what fails).
        """
        import docker

        container = None
        name = self._name(release)
        claim_path = self._claim_path(name)
        try:
            release_claim = local_lock.claim(claim_path)
        except OSError as e:
            progress(f"the release's own container was not started for the smoke test "
                     f"({claim_path}: {e.strerror or type(e).__name__})")
            return None
        try:
            container = self._create(release, name, staged=True)
            container.start()
            port = containers.published_port(containers.reloaded(container), self.config.image.port)
        except (DeployFailed, docker.errors.APIError) as e:
            containers.remove(container)
            release_claim()
            progress(f"the release's own container did not start for the smoke test ({_reason(e, self.config.deploy)})")
            return None
        progress(f"started {container.name}, the release's own container, on {containers.RELEASE_HOST}:{port}")
        staged = containers.Staged(self.client, container, port, lambda e: _reason(e, self.config.deploy),
                                   release_claim)
        self._staged[release.ledger_id] = staged
        return staged

    def deploy(self, release: Release, *, is_ancestor: IsAncestor, progress: Progress) -> Deployment:
        staged = self._staged.pop(release.ledger_id, None) if release.ledger_id else None
        try:
            with self._locked(progress):
                live_container, live, front_conf = self._live()
                if live is not None and is_ancestor(release.commit, live.commit):
                    raise DeployRefused(
                        f"refusing to deploy {release.commit[:12]}: it is older than the deployed "
                        f"{live.commit[:12]} (an older build finishing late must not replace a newer one)",
                        hint="deploy a newer commit, or go back on purpose with 'pinotage rollback --to COMMIT'")
                self._pull(release.image, progress)
                started = staged.take(release, progress) if staged is not None else None
                self._start_checked(release, live_container, live, progress, started=started, front_conf=front_conf)
                return Deployment(target=self.name, revision=_revision(release), url=self.url(), previous=live,
                                  release=release)
        finally:
            if staged is not None:
                staged.discard()  # a no-op once taken

    def rollback(self, to_commit: str | None = None, *, progress: Progress) -> Deployment:
        with self._locked(progress):
            live_container, live, front_conf = self._live()
            record = pick_rollback(self.ledger().records(), live=live, to_commit=to_commit)
            release = release_of(record)
            kept = self._kept(record.id)
            if kept is None:
                self._pull(release.image, progress)
            progress(f"rolling back to {record.commit[:12]} ({record.image}), deployed {record.started_at}")
            self._start_checked(release, live_container, live, progress, kept=kept, front_conf=front_conf)
            return Deployment(target=self.name, revision=_revision(release), url=self.url(), previous=live,
                              release=release)

    def ledger(self) -> FileLedger:
        return FileLedger(self.state_dir / f"ledger-{self.app}.jsonl")

    def url(self) -> str:
        return f"http://{self._probe_host()}:{self.config.deploy.host_port}/"

    # --- steps -----------------------------------------------------------------

    def _start_checked(self, release: Release, live_container, live: Release | None, progress: Progress,
                       *, kept=None, started: tuple[Any, int] | None = None, front_conf: str | None = None) -> None:
        """Start the release on its own port, gate it, switch the front to it, then stop the previous one.

        ``started`` is a container already started and smoke-tested, and its port (``Staged.take``);
        ``front_conf`` the front's configuration as read under the lock (None: no front runs).

        Until the front has switched, the previous release serves untouched; any failure before
        that removes (or stops again, when kept) the new container and leaves it so. An interrupt
        until the previous one is stopped does the same, starting it again if need be: an
        interrupted attempt is not recorded, so what serves must be what was live.
        """
        import docker

        container, port = started if started is not None else (kept, 0)
        legacy = live_container if live_container is not None and containers.holds(live_container, self._host_port()) else None
        try:
            if started is None:
                if container is None:
                    container = self._create(release, self._name(release))
                container.start()
                port = containers.published_port(containers.reloaded(container), self.config.image.port)
                progress(f"{container.name} started on {containers.RELEASE_HOST}:{port}")
            self._wait_healthy(container, port, progress)  # one request, for a staged one the smoke test saw healthy
            if legacy is not None:
                # A container of an earlier version holds host_port itself: the front needs it.
                progress(f"stopping {legacy.name}, which holds port {self._host_port()} itself, for the front")
                legacy.stop(timeout=containers.STOP_TIMEOUT_S)
            self._front().switch(front_module.Upstream(container.name, containers.RELEASE_HOST, port,
                                                       containers.reference(release.image)), self._health_url(),
                                 current=front_conf)
            progress(f"the front on port {self._host_port()} serves {container.name}")
            if live_container is not None and legacy is None and live_container.id != container.id:
                progress(f"stopping {live_container.name} ({live.commit[:12]}), kept for rollback")
                containers.stop(live_container)  # nothing routes to it any more: a failure to stop it harms no request
        except KeyboardInterrupt:  # an abort (Ctrl-C, or the SIGTERM of a Jenkins abort): the new one goes
            self._withdraw(container, live_container, live, kept=kept, progress=progress)
            raise
        except (DeployFailed, front_module.FrontError, docker.errors.APIError) as e:
            reason = _reason(e, self.config.deploy)  # the first failure is the one to report, whatever follows
            self._withdraw(container, live_container, live, kept=kept, progress=progress)
            self._remove_front_if_down()
            if live_container is None:
                raise DeployFailed(f"{reason}; nothing was live", **_failed(release, None)) from e
            if legacy is None:
                raise DeployFailed(f"{reason}; the previous release still serves", hint=getattr(e, "hint", ""),
                                   **_failed(release, live)) from e
            restart_failed = self._restart(legacy, progress)
            if restart_failed:
                raise DeployFailed(f"{reason}; starting the previous release again failed too ({restart_failed})",
                                   **_failed(release, None),
                                   hint=f"nothing serves on port {self._host_port()}; see 'docker ps -a'") from e
            raise DeployFailed(f"{reason}; the previous release serves again", **_failed(release, live)) from e
        progress(f"serving {release.image.pinned} at {self.url()}")
        self._prune(keep=container)

    def _withdraw(self, container, live_container, live: Release | None, *, kept, progress: Progress) -> None:
        """Route the front back to live_container, then remove the new container (stop it, when kept).

        A new container the front still routes to after that is what serves: it stays.
        """
        self._route_back(container, live_container, live, progress)
        if container is None or (live_container is not None and self._front().routed() == container.name):
            return
        if kept is None:
            containers.remove(container)
        else:
            containers.stop(container)

    def _route_back(self, container, live_container, live: Release | None, progress: Progress) -> None:
        """Start the live container again and switch the front back to it, if the front routes to container.

        A failed or interrupted switch puts the front's previous configuration back itself; this
        covers an interrupt after the switch, and a front whose switching back failed too. The live
        container may be stopping (the engine ends a stop it has begun, whoever asked for it): it
        is stopped, then started, before the front goes back to it.
        """
        import docker

        if container is None or live_container is None or self._front().routed() != container.name:
            return
        try:
            containers.stop(live_container)
            if self._restart(live_container, progress):
                return  # it does not start again: the new release serves on
            port = containers.published_port(containers.reloaded(live_container), self.config.image.port)
            self._front().switch(front_module.Upstream(live_container.name, containers.RELEASE_HOST, port,
                                                       containers.reference(live.image) if live is not None else ""),
                                 self._health_url())
        except (DeployFailed, front_module.FrontError, docker.errors.APIError):
            pass  # the caller reports the first failure; 'pinotage status' shows what the front serves

    def _restart(self, container, progress: Progress) -> str:
        """Start a stopped previous container again and wait for its health; return why not, or ""."""
        import docker

        try:
            container.start()
            # Its own published port: the configured one may be what just failed.
            port = containers.serving_port(containers.reloaded(container))
            if port is None:
                return f"{container.name} publishes no port"
            self._wait_healthy(container, port, progress)
        except (DeployFailed, docker.errors.APIError) as e:
            return _reason(e, self.config.deploy)
        return ""

    def _pull(self, image: Image, progress: Progress) -> None:
        import docker

        try:
            self.client.images.get(image.pinned)
            progress(f"{image.pinned} is on this engine already")  # a digest names the content: no pull needed
            return
        except docker.errors.ImageNotFound:
            pass
        progress(f"pulling {image.pinned}")
        try:
            self.client.images.pull(image.pinned, auth_config=self._auth())
        except docker.errors.APIError as e:
            raise DeployFailed(f"cannot pull {image.pinned}: {e.explanation or e}", rolled_back=False,
                               hint="was it pushed to this registry? are the registry credentials right?") from e

    def _name(self, release: Release) -> str:
        # A random part keeps names unique when the same commit is deployed again (a rollback).
        return f"pinotage-{self.app}-{release.commit[:12]}-{secrets.token_hex(3)}"

    def _create(self, release: Release, name: str, *, staged: bool = False):
        """Create the release's container: by digest, or by tag before the push (``stage``)."""
        image = release.image
        labels = {
            f"{containers.LABEL}.app": self.app, f"{containers.LABEL}.role": "serving", f"{containers.LABEL}.commit": release.commit,
            f"{containers.LABEL}.image-name": image.name, f"{containers.LABEL}.image-tag": image.tag,
            f"{containers.LABEL}.image-digest": image.digest, f"{containers.LABEL}.build-url": release.build_url,
            f"{containers.LABEL}.ledger-id": release.ledger_id,
            f"{containers.LABEL}.deployed-at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds"),
        }
        if staged:  # its run claims it (_claim_path) until its deploy took or discarded it
            labels[STAGED_LABEL] = "true"
        port = self.config.image.port
        # A port of its own, fixed at creation, on loopback: only the front faces clients, and an
        # engine restart gives the container the same port again (the front's upstream stays right).
        return self.client.containers.create(
            containers.reference(image), name=name, labels=labels, detach=True,
            environment={"PORT": str(port)},
            ports={f"{port}/tcp": (containers.RELEASE_HOST, containers.free_port())},
            restart_policy={"Name": "unless-stopped"},
        )

    def _front(self) -> front_module.Front:
        return front_module.Front(self.client, app=self.app, image=self.config.deploy.front_image,
                                  host_ip=self.config.deploy.host_ip, host_port=self._host_port(), label=containers.LABEL,
                                  pull=self._pull_front)

    def _pull_front(self, ref: str) -> None:
        import docker

        try:
            self.client.images.get(ref)
        except docker.errors.ImageNotFound:
            self.client.images.pull(ref)

    def _remove_front_if_down(self) -> None:
        """Remove this port's front when it is not running (it failed to start): a later deploy starts it anew."""
        container = self._front().container()
        if container is not None and container.status != "running":
            containers.remove(container)

    def _health_url(self) -> str:
        return f"http://{self._probe_host()}:{self._host_port()}{self.config.image.health_path}"

    def _host_port(self) -> int:
        return self.config.deploy.host_port

    def _wait_healthy(self, container, port: int, progress: Progress) -> None:
        """Wait until the container answers its health path; fail fast when it exits or is unhealthy."""
        url = f"http://{containers.RELEASE_HOST}:{port}{self.config.image.health_path}"
        deadline_s = self.config.deadlines.rollout_s
        seen = probe.wait_healthy(container, url, deadline_s)
        if seen.healthy:
            progress(f"{container.name} healthy after {seen.waited_s:.1f} s")
            return
        if seen.exit_code is not None:
            raise DeployFailed(f"{container.name} exited with {seen.exit_code}: {containers.log_tail(container)}",
                               rolled_back=False)
        if seen.unhealthy:
            raise DeployFailed(f"{container.name} is unhealthy by its HEALTHCHECK: {containers.log_tail(container)}",
                               rolled_back=False)
        raise DeployFailed(f"{container.name} did not answer {self.config.image.health_path} with 200 within "
                           f"{deadline_s} s (last: {seen.last})", rolled_back=False,
                           hint="see its output with 'docker logs'; raise deadlines.rollout_s if it is just slow")

    def _prune(self, *, keep) -> None:
        """Remove this app's containers the front does not serve, but the newest KEEP_PREVIOUS stopped ones
        and those another run staged and still claims.

        Deploys hold the lock, so another running release container is one a crash left behind.
        """
        others = [c for c in self._containers() if c.id != keep.id and not self._in_staging(c)]
        for container in others:
            if container.status == "running":
                self._remove(container)
        stopped = [c for c in others if c.status != "running"]
        stopped.sort(key=lambda c: c.labels.get(f"{containers.LABEL}.deployed-at", ""), reverse=True)
        for container in stopped[KEEP_PREVIOUS:]:
            self._remove(container)

    def _remove(self, container) -> None:
        containers.remove(container)
        if container.labels.get(STAGED_LABEL) == "true":  # a claim file its run, killed, left behind
            self._claim_path(container.name).unlink(missing_ok=True)

    # --- reading the engine and the ledger --------------------------------------

    def _containers(self):
        return self.client.containers.list(all=True, filters={"label": [f"{containers.LABEL}.app={self.app}",
                                                                       f"{containers.LABEL}.role=serving"]})

    def _live(self) -> tuple[Any, Release | None, str | None]:
        """Return the container the front serves, its release, and the front's configuration (None: no
        front runs). Without a front: the newest running container (an earlier version's front-less
        release), but for those a run still in progress staged, which nothing routes to yet."""
        mine = self._containers()
        conf = self._front().configuration()
        routed = front_module.live_name(conf or "")
        for container in mine:
            if routed is not None and container.name == routed:
                return container, containers.release_of(container, front_module.live_image(conf)), conf
        running = [c for c in mine if c.status == "running" and not self._in_staging(c)]
        running.sort(key=lambda c: c.labels.get(f"{containers.LABEL}.deployed-at", ""))
        return (running[-1], containers.release_of(running[-1]), conf) if running else (None, None, conf)

    def _in_staging(self, container) -> bool:
        """Say whether a run still in progress (this one or another) staged container for its smoke test."""
        return (any(s.container.id == container.id for s in self._staged.values())
                or (container.labels.get(STAGED_LABEL) == "true" and local_lock.claimed(self._claim_path(container.name))))

    def _claim_path(self, name: str) -> Path:
        return self.state_dir / "staged" / f"{name}.claim"

    def _kept(self, ledger_id: str):
        if not ledger_id:
            return None
        for container in self._containers():
            if (container.labels.get(f"{containers.LABEL}.ledger-id") == ledger_id and container.status != "running"
                    and not containers.holds(container, self._host_port())):
                return container
        return None

    def _auth(self) -> dict[str, str] | None:
        # Asked for at the moment of the pull, never kept: the registry needs it to hand out the image.
        credentials = self._credentials()
        return credentials.auth_config() if credentials is not None else None

    def _probe_host(self) -> str:
        host = self.config.deploy.host_ip
        return "127.0.0.1" if host in ("0.0.0.0", "") else host

    def _locked(self, progress: Progress):
        who = self.environ.get("BUILD_URL") or f"pinotage in {self.config.root}"
        return local_lock.hold(Path(self.state_dir, f"docker-{self.app}.lock"), who=who,
                               deadline_s=self.config.deadlines.lock_s, progress=progress)


# --- helpers --------------------------------------------------------------------


def _revision(release: Release) -> str:
    # containers have no revision counter: the id of the ledger record that made them stands in
    return release.ledger_id or release.image.digest


def _failed(attempted: Release, serving: Release | None) -> dict[str, Any]:
    """Say, for DeployFailed, what the attempt tried and which release (if any) serves again."""
    return {"rolled_back": serving is not None, "returned_to": serving, "attempted": attempted,
            "revision": _revision(serving) if serving is not None else ""}


def _reason(error: Exception, deploy) -> str:
    """Say in one line why a step failed: our own message, or the engine's explained."""
    if isinstance(error, DeployFailed):
        return " ".join(error.message.split())
    if isinstance(error, front_module.FrontError):
        return " ".join(str(error).split())
    text = " ".join(str(getattr(error, "explanation", "") or error).split())
    text = text.rsplit("Error starting userland proxy: ", 1)[-1]  # the rest names the engine's endpoint ids
    if "port is already allocated" in text or "address already in use" in text:
        return (f"port {deploy.host_port} is taken by something else (set deploy.host_port to a free port);"
                f" the engine said: {text}")
    if "cannot assign requested address" in text:
        return f"deploy.host_ip {deploy.host_ip} is not an address of this host; the engine said: {text}"
    return f"the engine refused: {text}"
