"""The local target's front: nginx on deploy.host_port, which never stops while releases change.

A release container publishes its own port on ``deploy.host_ip``; the front (one container per
app and host port, on the host's network) proxies ``host_port`` to the release it names. It runs
two nginx: the outer one listens on ``host_port``, keeps client connections alive and is never
reloaded; it passes every request over a Unix socket to the inner one, which proxies to the
release. Switching to another release writes a new configuration for the inner nginx and sends it
SIGHUP: it starts workers with the new upstream while the old workers finish what they hold, and
no listening socket ever closes. The release that was live is stopped only once no old worker is
left.

Why two: a reloaded nginx closes the kept-alive connections its old workers hold as soon as the
reload reaches them, and a client that sent its next request on one at that moment gets no answer
(RFC 9112 leaves the retry to the client; measured with one nginx, a kept-alive client lost one
request in nearly every deploy, ``benchmarks/bench_deploy.py``). Here the outer nginx keeps no
connection to the inner one: every request opens its own over the Unix socket (a few
microseconds), so a reload closes none under a request, and the new workers take requests from
the moment they start, instead of once nginx has told the old ones to stop, 100 ms after it
started the new ones (``ngx_master_process_cycle``). An old worker finishes the requests it
has accepted before it exits.

A switch never leaves the front on a release that does not serve: the release is asked once more
just before the reload, and after it the front must answer 200 from it. When nginx refuses the
new configuration (its old workers serve on), when the release answers anything else through the
front, or when the switch is interrupted, the front gets its previous configuration back by the
same graceful reload (``tests/integration/test_front.py``).

The inner configuration is also the record of which release is live: its first line names the
container, its second the image by digest (a container started before its push carries no digest
label), and ``configuration()`` reads it back from the engine.
"""

from __future__ import annotations

import dataclasses
import io
import tarfile
import time
import urllib.parse
from typing import Any, Callable

from pipeline import probe

CONF_DIR = "/etc/pinotage-front"
CONF_NAME = "nginx.conf"  # the inner nginx's, the one a switch rewrites
OUTER_NAME = "outer.conf"
SOCKET_DIR = "/run/pinotage-front"  # a tmpfs: a restarted front finds no stale socket
SOCKET = f"{SOCKET_DIR}/switch.sock"
LAYOUT = "outer-inner"  # a front of another layout (an earlier version's) is started anew
RELEASE_HEADER = "X-Pinotage-Release"  # names the container that answered, so a switch can be seen
SWITCH_DEADLINE_S = 10  # new workers answering after a reload
DRAIN_DEADLINE_S = 15  # old workers gone; nginx itself ends them after SHUTDOWN_S
SHUTDOWN_S = 10


class FrontError(Exception):
    """The front could not start or switch; the message says why in one line."""


@dataclasses.dataclass(frozen=True)
class Upstream:
    """Where the front sends requests: the container's name, its published address, and the image it
    runs by digest ("" when not known: a container an earlier version started)."""

    name: str
    host: str
    port: int
    image: str = ""


_COMMON = f"""user nobody nogroup;
worker_processes 1;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path /tmp/body;
    proxy_temp_path /tmp/proxy;
    fastcgi_temp_path /tmp/fastcgi;
    uwsgi_temp_path /tmp/uwsgi;
    scgi_temp_path /tmp/scgi;
"""
_PROXY = """proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;"""


def render(upstream: Upstream) -> str:
    """Return the inner nginx's configuration for one upstream; its first two lines name it and its image."""
    return f"""# live: {upstream.name}
# image: {upstream.image}
daemon off;
pid /tmp/pinotage-front.pid;
error_log stderr warn;
worker_shutdown_timeout {SHUTDOWN_S}s;
{_COMMON}    upstream release {{
        server {upstream.host}:{upstream.port};
        keepalive 8;
    }}
    server {{
        listen unix:{SOCKET};
        location / {{
            proxy_pass http://release;
            {_PROXY}
            add_header {RELEASE_HEADER} {upstream.name} always;
        }}
    }}
}}
"""


def render_outer(*, listen_host: str, listen_port: int) -> str:
    """Return the outer nginx's configuration: host_port to the inner nginx's socket, never reloaded."""
    # Its only upstream is the inner nginx, on a new connection for each request (no keepalive: see
    # the module's docstring).
    return f"""daemon on;
pid /tmp/pinotage-front-outer.pid;
error_log stderr crit;
{_COMMON}    upstream switch {{
        server unix:{SOCKET};
    }}
    server {{
        listen {listen_host}:{listen_port};
        location / {{
            proxy_pass http://switch;
            {_PROXY}
        }}
    }}
}}
"""


def live_name(conf: str) -> str | None:
    """Return the container a front configuration routes to, or None when it names none."""
    first = conf.split("\n", 1)[0]
    return first[len("# live: "):].strip() or None if first.startswith("# live: ") else None


def live_image(conf: str) -> str:
    """Return the image (by digest) a front configuration says it routes to, "" when it does not say."""
    lines = conf.split("\n", 2)
    second = lines[1] if len(lines) > 1 else ""
    return second[len("# image: "):].strip() if second.startswith("# image: ") else ""


class Front:
    """One app's front on one host port, found on the engine by its name."""

    def __init__(self, client: Any, *, app: str, image: str, host_ip: str, host_port: int, label: str,
                 pull: Callable[[str], None]):
        self.client = client
        self.image = image
        self.host_ip = host_ip
        self.host_port = host_port
        self.name = f"pinotage-{app}-front-{host_port}"
        self._layout_label = f"{label}.front-layout"
        self.labels = {f"{label}.app": app, f"{label}.role": "front", f"{label}.host-port": str(host_port),
                       self._layout_label: LAYOUT}
        self._pull = pull

    def container(self):
        """Return the front container, or None when there is none."""
        import docker

        try:
            return self.client.containers.get(self.name)
        except docker.errors.NotFound:
            return None

    def routed(self) -> str | None:
        """Return the name of the container the running front sends requests to, or None."""
        return live_name(self.configuration() or "")

    def configuration(self) -> str | None:
        """Return the running front's inner configuration (``live_name``, ``live_image``), or None."""
        import docker

        container = self.container()
        if container is None or container.status != "running":
            return None
        try:
            return _read_file(container, f"{CONF_DIR}/{CONF_NAME}")  # the engine copies it out: ~30 ms
        except docker.errors.NotFound:
            return None

    def switch(self, upstream: Upstream, health_url: str, *, current: str | None = None) -> None:
        """Route the front to upstream (starting the front if needed); return once old workers are gone.

        health_url is the front's own health URL: the switch is done when it answers 200 from
        upstream. If it does not (nginx refused the new configuration, the upstream stopped
        answering, or the switch is interrupted), the running front is switched back to the
        configuration it had, and FrontError (or the interrupt) goes on up. ``current`` is that
        configuration as the caller read it under the deploy lock; without it, it is read again.
        """
        import docker

        _check_answers(upstream, health_url)  # once more: it may have stopped since its health check
        conf = render(upstream)
        container = self.container()
        started = (container is None or container.status != "running"
                   or container.labels.get(self._layout_label) != LAYOUT)
        try:
            if started:
                if container is not None:
                    container.remove(force=True)
                container = self._start(conf)
                self._wait_answering(container, upstream.name, health_url, since=0)
                # Started with no restart policy, so a front that cannot bind exits and says why;
                # once it serves, it comes back with the engine.
                container.update(restart_policy={"Name": "unless-stopped"})
                return
            previous = current if current is not None else _read_file(container, f"{CONF_DIR}/{CONF_NAME}")
            self._reload(container, conf, upstream.name, health_url, previous)
        except docker.errors.APIError as e:
            raise FrontError(f"the front {self.name}: the engine refused: {e.explanation or e}") from e

    def _reload(self, container, conf: str, name: str, health_url: str, previous: str) -> None:
        """Reload the running front with conf; on any failure, reload it with previous again."""
        old_workers = _workers(container)
        try:
            _write_file(container, CONF_DIR, CONF_NAME, conf)
            signalled = time.time()
            container.kill(signal="SIGHUP")
            self._wait_answering(container, name, health_url, since=signalled)
            _wait_gone(container, old_workers)
        except FrontError as e:
            back = live_name(previous) or "its previous configuration"
            if self._restore(container, previous, health_url):
                raise FrontError(f"{e}; the front serves {back} again") from e
            raise FrontError(f"{e}; switching the front back to {back} failed too") from e
        except BaseException:  # an interrupt (Ctrl-C, SIGTERM) or an engine error: back, then on up
            self._restore(container, previous, health_url)
            raise

    def _restore(self, container, previous: str, health_url: str) -> bool:
        """Put the previous configuration back and reload; say whether the front answers from it again.

        Returns once the workers of the failed configuration are gone too: the caller removes the
        release they route to.
        """
        import docker

        back = live_name(previous)
        try:
            failed_workers = _workers(container)
            _write_file(container, CONF_DIR, CONF_NAME, previous)
            signalled = time.time()
            container.kill(signal="SIGHUP")
            if back is not None:
                self._wait_answering(container, back, health_url, since=signalled)
            _wait_gone(container, failed_workers)
        except (FrontError, docker.errors.APIError, OSError):
            return False
        return True

    def _start(self, conf: str):
        self._pull(self.image)
        # The inner nginx is the container's process (the engine's SIGHUP reaches it); the outer
        # one goes to the background first, and the container ends when the inner one does. umask
        # 0: the outer nginx's workers (nobody) may connect to the socket the inner one makes.
        script = (f"umask 0 && nginx -e stderr -c {CONF_DIR}/{OUTER_NAME} "
                  f"&& exec nginx -e stderr -c {CONF_DIR}/{CONF_NAME}")
        container = self.client.containers.create(
            self.image, name=self.name, labels=self.labels, detach=True, network_mode="host",
            tmpfs={SOCKET_DIR: "mode=755"}, command=["sh", "-c", script])
        _write_file(container, CONF_DIR, OUTER_NAME, render_outer(listen_host=self.host_ip, listen_port=self.host_port))
        _write_file(container, CONF_DIR, CONF_NAME, conf)
        container.start()
        return container

    def _wait_answering(self, container, name: str, url: str, *, since: float) -> None:
        """Wait until the front answers 200 from the named container, or fail saying why not.

        Fails at once when the named container answers anything else (it stopped serving), or
        when nginx has said since the reload signal (a time stamp) that it refused the
        configuration: then its old workers serve on with the configuration they had.
        """
        deadline = time.monotonic() + SWITCH_DEADLINE_S
        last = "no answer yet"
        while time.monotonic() < deadline:
            container.reload()
            if container.status in ("exited", "dead"):
                raise FrontError(_exited(container, self.host_ip, self.host_port))
            try:
                status, answered = probe.header(url, RELEASE_HEADER)
            except OSError as e:
                last = type(e).__name__
            else:
                if answered == name and status == 200:
                    return
                if answered == name:
                    raise FrontError(f"the front at {url} answered HTTP {status} through {name}: "
                                     f"it stopped serving after its health check")
                last = f"HTTP {status} from {answered or 'something else'}"
            refused = _refused(container, since) if since else ""
            if refused:
                raise FrontError(f"nginx refused the configuration for {name}: {refused}")
            time.sleep(probe.POLL_S)
        raise FrontError(f"the front at {url} did not answer from {name} within "
                         f"{SWITCH_DEADLINE_S} s (last: {last}); its log: {_log(container)}")


def _check_answers(upstream: Upstream, health_url: str) -> None:
    """Fail unless upstream itself answers health_url's path with 200."""
    path = urllib.parse.urlsplit(health_url).path or "/"
    url = f"http://{upstream.host}:{upstream.port}{path}"
    try:
        status, _ = probe.get(url)
    except OSError as e:
        raise FrontError(f"{upstream.name} stopped answering {url} after its health check ({type(e).__name__}); "
                         f"the front was left as it was") from e
    if status != 200:
        raise FrontError(f"{upstream.name} answered {url} with HTTP {status} after its health check; "
                         f"the front was left as it was")


def _refused(container, since: float) -> str:
    """Return nginx's complaint about a configuration it refused after the time stamp since, or ""."""
    text = container.logs(stdout=False, stderr=True, since=since).decode(errors="replace")
    for line in text.splitlines():
        if "[emerg]" in line:
            return line.split("] ", 1)[-1].strip()
    return ""


def _workers(container) -> set[str]:
    """Return the process ids of the inner nginx's workers (the container's process is their master)."""
    master = str((container.attrs.get("State") or {}).get("Pid", ""))
    processes = container.top(ps_args="-o pid,ppid,args").get("Processes") or []
    return {pid for pid, ppid, args in processes if ppid == master and "worker process" in args}


def _wait_gone(container, workers: set[str]) -> None:
    """Wait until none of the given workers is left: each finishes what it holds for the old upstream."""
    deadline = time.monotonic() + DRAIN_DEADLINE_S
    while workers and time.monotonic() < deadline:
        if not workers & _workers(container):
            return
        time.sleep(probe.POLL_S)


def _exited(container, host_ip: str, host_port: int) -> str:
    log = _log(container)
    if "Address already in use" in log:
        return (f"port {host_port} is taken by something else (set deploy.host_port to a free port); "
                f"the front said: {log}")
    if "Cannot assign requested address" in log:
        return f"deploy.host_ip {host_ip} is not an address of this host; the front said: {log}"
    return f"the front exited with {probe.exit_code(container)}: {log}"


def _log(container) -> str:
    lines = [line.split("] ", 1)[-1] for line in probe.log_tail(container, 3)]  # less the time stamp
    return " | ".join(dict.fromkeys(lines)) or "(no output)"


def _write_file(container, folder: str, name: str, text: str) -> None:
    data = text.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        folder_info = tarfile.TarInfo(folder.lstrip("/"))
        folder_info.type, folder_info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder_info)
        info = tarfile.TarInfo(f"{folder.lstrip('/')}/{name}")
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    container.put_archive("/", buffer.getvalue())


def _read_file(container, path: str) -> str:
    stream, _ = container.get_archive(path)
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.next()
        handle = tar.extractfile(member) if member is not None else None
        return handle.read().decode() if handle is not None else ""
