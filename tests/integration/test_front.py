"""The local target's front when a switch goes wrong: it keeps serving the release it served.

The front is the real one: nginx from the local front image, on the host's network, switched by
graceful reload. The releases behind it are small HTTP servers in this process on loopback, each
answering with its own name, so a test can make one stop, fail or stall at the moment it needs.
A client asks the front on a new connection every few milliseconds throughout each switch.
"""

from __future__ import annotations

import dataclasses
import http.client
import http.server
import re
import secrets
import signal
import threading
import time
import urllib.request

import pytest

from pipeline.targets import front
from tests.conftest import free_port
from tests.integration.asking import Client

pytestmark = pytest.mark.integration

SWITCH_BACK_S = 3  # a failed switch ends, the old release served again, well within the switch deadline


class Release(http.server.ThreadingHTTPServer):
    """A release on loopback: 200 and its name for every path, until told to fail (or to stall).

    mode: "serve"; "fail-after-first" (a 503 for every request after the first, as a release that
    turns unhealthy right after the front's last look at it); "stall-after-first" (holds every
    request after the first for STALL_S).
    """

    STALL_S = 1.5
    daemon_threads = True

    def __init__(self, name: str, mode: str = "serve"):
        self.name, self.mode, self.asked = name, mode, 0
        super().__init__(("127.0.0.1", 0), _Handler)
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def upstream(self) -> front.Upstream:
        return front.Upstream(self.name, "127.0.0.1", self.server_port)

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # the front keeps upstream connections alive
    disable_nagle_algorithm = True  # headers and body go in two writes: no delayed-ACK wait between them

    def do_GET(self):  # noqa: N802 (the name http.server calls)
        release: Release = self.server
        release.asked += 1
        status = 200
        if release.mode == "fail-after-first" and release.asked > 1:
            status = 503
        elif release.mode == "stall-after-first" and release.asked > 1:
            time.sleep(Release.STALL_S)
        body = release.name.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@dataclasses.dataclass(frozen=True)
class Failed:
    """A switch that raised, under a client's requests: what it raised, how long it took, what the client saw."""

    error: BaseException
    took_s: float
    answers: list[tuple[int, str]]  # every answer, in order
    failures: list[str]
    after: list[tuple[int, str]]  # the answers once the switch had raised


def _switch_failing(the_front: front.Front, release: Release, url: str, expected=front.FrontError) -> Failed:
    """Switch the front to release while a client asks it; the switch must raise expected."""
    with Client(url) as client:
        time.sleep(0.1)
        started = time.monotonic()
        with pytest.raises(expected) as raised:
            the_front.switch(release.upstream, url)
        took_s = time.monotonic() - started
        answered = len(client.answers)
        time.sleep(0.2)
    return Failed(raised.value, took_s, client.answers, client.failures, client.answers[answered:])


@pytest.fixture
def served(docker_client, base_images):
    """A front on a free port serving release "a"; yields (front, release a, the front's URL)."""
    tag = secrets.token_hex(3)
    port = free_port()
    the_front = front.Front(docker_client, app=f"ft-{tag}", image=base_images.front, host_ip="127.0.0.1",
                            host_port=port, label="org.pinotage-test", pull=lambda ref: None)
    a = Release(f"release-a-{tag}")
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        the_front.switch(a.upstream, url)
        yield the_front, a, url
    finally:
        container = the_front.container()
        if container is not None:
            container.remove(force=True)
        a.stop()


def _serves(url: str) -> tuple[int, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as response:
        return response.status, response.read().decode()


def test_a_switch_to_a_serving_release_moves_every_new_request_and_drops_none(served):
    the_front, a, url = served
    b = Release(a.name.replace("release-a", "release-b"))
    try:
        with Client(url) as client:
            time.sleep(0.2)
            the_front.switch(b.upstream, url)
            time.sleep(0.2)
        assert client.failures == []
        names = [body for _, body in client.answers]
        assert {status for status, _ in client.answers} == {200}
        assert names[0] == a.name and names[-1] == b.name
        assert set(names) == {a.name, b.name}
        assert the_front.routed() == b.name
    finally:
        b.stop()


def test_a_kept_alive_client_connection_outlives_every_switch_and_loses_no_request(served):
    the_front, a, url = served
    b = Release(a.name.replace("release-a", "release-b"))
    port = int(url.split(":")[2].split("/")[0])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    seen: list[tuple[int, str]] = []
    failures: list[str] = []
    sockets: set[int] = set()
    stop = threading.Event()

    def ask() -> None:  # back to back on one connection, as a browser keeps one
        while not stop.is_set():
            try:
                connection.request("GET", "/")
                response = connection.getresponse()
                seen.append((response.status, response.read().decode()))
                sockets.add(id(connection.sock))
            except (OSError, http.client.HTTPException) as e:
                failures.append(type(e).__name__)
                connection.close()

    asking = threading.Thread(target=ask, daemon=True)
    asking.start()
    try:
        for release in (b, a, b, a, b, a):
            time.sleep(0.05)
            the_front.switch(release.upstream, url)
    finally:
        stop.set()
        asking.join(10)
        connection.close()
        b.stop()
    assert failures == []
    assert set(seen) == {(200, a.name), (200, b.name)}
    # The outer nginx closes a connection, saying so in its last answer, after 1,000 requests
    # (its keepalive_requests); the switches closed none.
    assert len(sockets) <= len(seen) // 1000 + 1, (len(sockets), len(seen))


def test_a_release_that_stopped_before_the_switch_is_never_routed(served):
    the_front, a, url = served
    b = Release(a.name.replace("release-a", "release-b"))
    b.stop()  # healthy a moment ago, gone now
    failed = _switch_failing(the_front, b, url)
    assert re.match(f"{b.name} stopped answering .* the front was left as it was", str(failed.error))
    assert failed.took_s < 1
    assert failed.failures == []
    assert set(failed.answers) == {(200, a.name)}
    assert the_front.routed() == a.name


def test_a_release_that_fails_right_after_the_reload_is_switched_back_at_once(served):
    the_front, a, url = served
    b = Release(a.name.replace("release-a", "release-b"), mode="fail-after-first")
    try:
        failed = _switch_failing(the_front, b, url)
        assert f"answered HTTP 503 through {b.name}" in str(failed.error)
        assert str(failed.error).endswith(f"the front serves {a.name} again")
        assert failed.took_s < SWITCH_BACK_S
        assert failed.failures == [], "the listening socket never closed"
        assert set(failed.answers) <= {(200, a.name), (503, b.name)}
        assert set(failed.after) == {(200, a.name)}, "once the switch has failed, nothing reaches b"
        assert the_front.routed() == a.name
        assert _serves(url) == (200, a.name)
    finally:
        b.stop()


def test_a_configuration_nginx_refuses_leaves_the_old_workers_serving(served, monkeypatch):
    the_front, a, url = served
    b = Release(a.name.replace("release-a", "release-b"))
    good = front.render
    # A configuration nginx refuses on reload (as a front image with another nginx might): it
    # logs why, and its old workers serve on with the configuration they have.
    monkeypatch.setattr(front, "render", lambda *args, **kw: good(*args, **kw) + "no_such_directive on;\n")
    master = the_front.container().attrs["State"]["Pid"]
    try:
        failed = _switch_failing(the_front, b, url)
        message = str(failed.error)
        assert f"nginx refused the configuration for {b.name}: " in message
        assert 'unknown directive "no_such_directive"' in message
        assert message.endswith(f"the front serves {a.name} again")
        assert failed.took_s < SWITCH_BACK_S
        assert failed.failures == []
        assert set(failed.answers) == {(200, a.name)}, "not one request reached b or failed"
        assert the_front.routed() == a.name, "the configuration on disk names what serves"
        container = the_front.container()
        assert container.status == "running" and container.attrs["State"]["Pid"] == master
        monkeypatch.setattr(front, "render", good)
        the_front.switch(b.upstream, url)  # the next switch, with a configuration nginx takes, works
        assert _serves(url) == (200, b.name)
    finally:
        b.stop()


def test_an_interrupt_during_the_switch_switches_back(served):
    the_front, a, url = served
    b = Release(a.name.replace("release-a", "release-b"), mode="stall-after-first")
    # Ctrl-C (or the SIGTERM of a Jenkins abort, which pinotage turns into the same) while the
    # front waits for b to answer through it: b holds every request after its first.
    interrupt = threading.Timer(0.6, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT))
    interrupt.start()
    try:
        failed = _switch_failing(the_front, b, url, expected=KeyboardInterrupt)
        assert failed.took_s < SWITCH_BACK_S
        assert the_front.routed() == a.name
        assert _serves(url) == (200, a.name)
        assert failed.failures == []
        # b answers the requests it held when it is done holding them; nothing else reaches it.
        assert set(failed.answers) <= {(200, a.name), (200, b.name)}
        assert (200, a.name) in failed.after
    finally:
        interrupt.cancel()
        b.stop()


def test_a_front_of_another_layout_is_started_anew(docker_client, base_images):
    tag = secrets.token_hex(3)
    port = free_port()
    the_front = front.Front(docker_client, app=f"ft-{tag}", image=base_images.front, host_ip="127.0.0.1",
                            host_port=port, label="org.pinotage-test", pull=lambda ref: None)
    # A front an earlier version started: same name, no layout label (it serves nothing here).
    earlier = docker_client.containers.run(base_images.front, ["sleep", "infinity"], name=the_front.name,
                                           labels={"org.pinotage-test.role": "front"}, detach=True)
    a = Release(f"release-a-{tag}")
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        the_front.switch(a.upstream, url)
        assert _serves(url) == (200, a.name)
        assert the_front.container().id != earlier.id
        assert the_front.container().labels["org.pinotage-test.front-layout"] == front.LAYOUT
    finally:
        for container in docker_client.containers.list(all=True, filters={"name": the_front.name}):
            container.remove(force=True)
        a.stop()
