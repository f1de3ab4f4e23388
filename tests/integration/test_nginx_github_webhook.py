"""scripts/nginx/github-webhook.conf in real nginx: the GitHub double delivers through it, nothing else passes."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import http.server
import ssl
import threading
from pathlib import Path

import pytest

from pipeline import github
from tests.conftest import free_port
from tests.fakes.github import FakeGithub
from tests.integration import nginx

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "scripts" / "nginx" / "github-webhook.conf"
TOKEN = "ghp_nginx_test_token"
SECRET = "nginx-test-hook-secret"
SLUG = "acme/slides"


class Receiver(http.server.ThreadingHTTPServer):
    """Stands where Jenkins would: records every request that reaches it and answers 200."""

    def __init__(self):
        self.seen: list[tuple[str, str, dict, bytes]] = []
        received = self.seen

        class Handler(http.server.BaseHTTPRequestHandler):
            def handle_any(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_PUT = handle_any

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture(scope="module")
def hook_proxy(tmp_path_factory):
    prefix = tmp_path_factory.mktemp("nginx-hook")
    cert, key = nginx.self_signed(prefix, "hooks")
    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    https = free_port()
    conf = nginx.replace_once(CONF.read_text(), CONF.name, [
        ("    listen 443 ssl;\n", f"    listen 127.0.0.1:{https} ssl;\n"),
        ("    listen [::]:443 ssl;\n", ""),
        ("/etc/ssl/hooks/hooks.crt", str(cert)),
        ("/etc/ssl/hooks/hooks.key", str(key)),
        ("    server 10.96.0.80:8080;\n", f"    server 127.0.0.1:{receiver.server_address[1]};\n"),
    ])
    try:
        with nginx.running(prefix, conf, https):
            yield {"https": https, "cert": cert, "receiver": receiver}
    finally:
        receiver.shutdown()
        receiver.server_close()


def raw(proxy, method: str, path: str, body: bytes = b"{}") -> int:
    """Send a request with the path exactly as written (no client-side normalising); return the status."""
    tls = ssl.create_default_context(cafile=str(proxy["cert"]))
    connection = http.client.HTTPSConnection("127.0.0.1", proxy["https"], context=tls, timeout=10)
    try:
        connection.request(method, path, body=body if method != "GET" else None,
                           headers={"Content-Type": "application/json"})
        return connection.getresponse().status
    finally:
        connection.close()


def test_a_signed_delivery_passes_through(hook_proxy):
    receiver = hook_proxy["receiver"]
    receiver.seen.clear()
    url = f"https://127.0.0.1:{hook_proxy['https']}/github-webhook/"
    with FakeGithub(token=TOKEN, repos=(SLUG,)) as hub:
        hub.store.deliver_cafile = str(hook_proxy["cert"])
        github.ensure_hook(hub.url, SLUG, token=TOKEN, url=url, secret=SECRET, dry_run=False)
        [hook] = hub.hooks[SLUG]
        assert hub.deliver(SLUG, hook["id"], "push", {"ref": "refs/heads/master"}) == 200
        assert hook["last_response"]["code"] == 200
    [(method, path, headers, body)] = receiver.seen
    assert (method, path, headers["x-github-event"]) == ("POST", "/github-webhook/", "push")
    assert headers["x-hub-signature-256"] == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["x-forwarded-proto"] == "https"


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/github-webhook/", 403),
    ("PUT", "/github-webhook/", 403),
    ("GET", "/", 404),
    ("GET", "/login", 404),
    ("POST", "/script", 404),
    ("POST", "/github-webhook/../script", 404),
    ("POST", "/github-webhook/x", 404),
    ("POST", "/github-webhook", 301),  # nginx redirects to the path with the slash
], ids=["get-hook", "put-hook", "root", "login", "script-console", "dot-dot-out", "below-hook", "no-slash"])
def test_nothing_else_reaches_jenkins(hook_proxy, method, path, status):
    receiver = hook_proxy["receiver"]
    receiver.seen.clear()
    assert raw(hook_proxy, method, path) == status
    assert receiver.seen == []


@pytest.mark.parametrize("path", ["/script/../github-webhook/", "/%67ithub-webhook/", "/github-webhook/?x=1"],
                         ids=["dot-dot-in", "escaped", "query"])
def test_another_spelling_of_the_hook_reaches_jenkins_as_the_hook_path(hook_proxy, path):
    receiver = hook_proxy["receiver"]
    receiver.seen.clear()
    assert raw(hook_proxy, "POST", path) == 200
    [(_, seen, _, _)] = receiver.seen
    assert seen.split("?")[0] == "/github-webhook/"
