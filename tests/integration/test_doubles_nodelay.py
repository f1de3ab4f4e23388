"""The Kubernetes and GitHub doubles answer as promptly as the Go servers they stand for.

Go's net/http sets TCP_NODELAY on every connection, as Jetty does for Jenkins (see
test_jenkins_double.py). Python's HTTP server writes an answer's headers and body apart; without
TCP_NODELAY the body waits for the client's delayed ACK, ~44 ms a request on loopback, which makes
every test and benchmark that counts requests slower than against the real services.
"""

from __future__ import annotations

import socket
import socketserver
import urllib.request

import pytest

from tests.fakes.github.server import FakeGithub
from tests.fakes.kube import FakeKube

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("make, path", [
    (lambda: FakeKube(), "/version"),
    (lambda: FakeGithub(token="t0ken", repos=("acme/slides",)), "/repos/acme/slides/hooks"),
], ids=["kube-apiserver", "github"])
def test_the_double_sets_tcp_nodelay_on_each_connection(make, path, monkeypatch):
    seen = []
    setup = socketserver.StreamRequestHandler.setup

    def recording_setup(handler):
        setup(handler)
        seen.append(handler.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    monkeypatch.setattr(socketserver.StreamRequestHandler, "setup", recording_setup)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with make() as fake:
        try:
            opener.open(fake.url + path, timeout=10).read()
        except urllib.error.HTTPError:
            pass  # refused without a token: the connection was served all the same
    assert seen and all(seen)
