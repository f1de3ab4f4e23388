"""The loopback probe shared by the smoke test and the local target: no proxy, stopped containers."""

from __future__ import annotations

import contextlib
import http.server
import json
import subprocess
import sys
import threading

import pytest

from pipeline import probe
from tests.conftest import ROOT


class _Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.seen.append(self.path)
        body = self.server.body
        self.send_response(self.server.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def _server(status: int, body: bytes):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    server.status, server.body, server.seen = status, body, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


# Runs in a child process whose environment has the proxy variables set (tests never patch os.environ).
_CHILD = """
import json, sys
from pipeline import probe

class Running:
    name = "app"
    attrs = {"State": {"Status": "running"}}
    def reload(self):
        pass

url = sys.argv[1]
how = sys.argv[2]
if how == "get":
    status, body = probe.get(url)
    print(json.dumps({"healthy": status == 200, "body": body}))
else:
    seen = probe.wait_healthy(Running(), url, 3, poll_s=0.05)
    print(json.dumps({"healthy": seen.healthy, "body": seen.last}))
"""


@pytest.mark.parametrize("how", ["get", "wait_healthy"])
@pytest.mark.parametrize("variable", ["http_proxy", "HTTP_PROXY", "all_proxy"])
def test_the_probe_ignores_a_proxy_in_its_environment(variable, how):
    with _server(200, b"ok\n") as app, _server(502, b"proxy\n") as proxy:
        environ = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), variable: f"http://127.0.0.1:{proxy.server_port}"}
        done = subprocess.run([sys.executable, "-c", _CHILD, f"http://127.0.0.1:{app.server_port}/healthz", how],
                              env=environ, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["healthy"], done.stdout
    assert proxy.seen == [], "the probe went through the proxy"
    assert app.seen[:1] == ["/healthz"]


def test_the_same_environment_does_send_plain_urllib_to_the_proxy():
    """Shows the test above can fail: urlopen honours http_proxy, so a loopback probe hits the proxy."""
    with _server(200, b"ok\n") as app, _server(502, b"proxy\n") as proxy:
        environ = {"PATH": "/usr/bin:/bin", "http_proxy": f"http://127.0.0.1:{proxy.server_port}"}
        code = ("import sys, urllib.request, urllib.error\n"
                "try:\n    urllib.request.urlopen(sys.argv[1], timeout=5)\n"
                "except urllib.error.HTTPError as e:\n    print(e.code)\n")
        done = subprocess.run([sys.executable, "-c", code, f"http://127.0.0.1:{app.server_port}/healthz"],
                              env=environ, capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "502" and proxy.seen and not app.seen


class _Container:
    """The attributes the engine reports for a container (the inspect JSON shape), nothing more."""

    def __init__(self, attrs: dict, logs: bytes | Exception = b""):
        self.attrs = attrs
        self._logs = logs

    def logs(self, tail: int):
        if isinstance(self._logs, Exception):
            raise self._logs
        return b"\n".join(self._logs.splitlines()[-tail:])


_RUNNING = {"State": {"Status": "running", "ExitCode": 0},
            "NetworkSettings": {"Ports": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "49153"}]}}}
_EXITED = {"State": {"Status": "exited", "ExitCode": 3}, "NetworkSettings": {"Ports": {}}}
_CREATED = {"State": {"Status": "created", "ExitCode": 0}, "NetworkSettings": {"Ports": None}}
_UNPUBLISHED = {"State": {"Status": "running", "ExitCode": 0}, "NetworkSettings": {"Ports": {"8080/tcp": None}}}


@pytest.mark.parametrize("attrs, port, expected", [
    (_RUNNING, 8080, 49153),
    (_RUNNING, 9090, None),
    (_EXITED, 8080, None),
    (_CREATED, 8080, None),
    (_UNPUBLISHED, 8080, None),
], ids=["running", "another-port", "exited-ports-empty", "created-ports-null", "exposed-not-published"])
def test_published_port(attrs, port, expected):
    assert probe.published_port(_Container(attrs), port) == expected


@pytest.mark.parametrize("attrs, expected", [
    (_RUNNING, None), (_EXITED, 3), (_CREATED, None),
], ids=["running", "exited", "created"])
def test_exit_code(attrs, expected):
    assert probe.exit_code(_Container(attrs)) == expected


@pytest.mark.parametrize("logs, expected", [
    (b"one\n\ntwo\nthree\n", ("two", "three")),
    (b"", ()),
    (OSError("engine gone"), ()),
], ids=["last-lines-without-blanks", "no-output", "unreadable"])
def test_log_tail(logs, expected):
    assert probe.log_tail(_Container(_EXITED, logs), lines=3) == expected
