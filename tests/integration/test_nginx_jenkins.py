"""scripts/nginx/jenkins.conf in real nginx, on loopback, in front of the Jenkins test double."""

from __future__ import annotations

import ssl
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.fakes.jenkins import FakeJenkins
from tests.integration import nginx

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "scripts" / "nginx" / "jenkins.conf"


def adapt(conf: str, *, http: int, https: int, upstream: int, cert: Path, key: Path) -> str:
    """Move the shipped config to loopback test ports and a throwaway certificate, changing nothing else."""
    return nginx.replace_once(conf, CONF.name, [
        ("    listen 80;\n", f"    listen 127.0.0.1:{http};\n"),
        ("    listen [::]:80;\n", ""),
        ("    listen 443 ssl;\n", f"    listen 127.0.0.1:{https} ssl;\n"),
        ("    listen [::]:443 ssl;\n", ""),
        ("/etc/ssl/jenkins/jenkins.crt", str(cert)),
        ("/etc/ssl/jenkins/jenkins.key", str(key)),
        ("    server 10.96.0.80:8080;\n", f"    server 127.0.0.1:{upstream};\n"),
    ])


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    """nginx with jenkins.conf on loopback ports, proxying to the Jenkins double; stopped afterwards."""
    prefix = tmp_path_factory.mktemp("nginx")
    cert, key = nginx.self_signed(prefix, "jenkins")
    fake = FakeJenkins().start()
    http, https = free_port(), free_port()
    upstream = int(fake.url.rsplit(":", 1)[1])
    conf = adapt(CONF.read_text(), http=http, https=https, upstream=upstream, cert=cert, key=key)
    try:
        with nginx.running(prefix, conf, https) as test_output:
            yield {"http": http, "https": https, "cert": cert, "fake": fake, "test_output": test_output}
    finally:
        fake.stop()


def test_nginx_accepts_the_config(proxy):
    assert "syntax is ok" in proxy["test_output"] and "test is successful" in proxy["test_output"]


@pytest.mark.parametrize("path", ["/", "/job/presentation/api/json?tree=name", "/login?from=%2F"],
                         ids=["root", "api-with-query", "login-with-escaped-query"])
def test_http_redirects_to_https_keeping_the_path(proxy, path):
    import requests

    response = requests.get(f"http://127.0.0.1:{proxy['http']}{path}", allow_redirects=False, timeout=10)
    assert response.status_code == 301
    assert response.headers["Location"] == f"https://127.0.0.1{path}"


def test_jenkins_sees_the_documented_proxy_headers(proxy):
    import requests

    fake = proxy["fake"]
    fake.clear_requests()
    response = requests.get(f"https://127.0.0.1:{proxy['https']}/api/json", verify=str(proxy["cert"]),
                            headers={"X-Forwarded-For": "203.0.113.9"}, timeout=10)
    assert response.status_code == 200 and response.json()["_class"] == "hudson.model.Hudson"
    assert response.headers["X-Jenkins"] == "2.580.1"
    [seen] = [r for r in fake.requests if r.path == "/api/json"]
    expected = {"host": f"127.0.0.1:{proxy['https']}", "x-forwarded-proto": "https",
                "x-forwarded-host": "127.0.0.1", "x-forwarded-port": str(proxy["https"]),
                "x-real-ip": "127.0.0.1", "x-forwarded-for": "203.0.113.9, 127.0.0.1"}
    assert {name: seen.headers.get(name) for name in expected} == expected
    assert "upgrade" not in seen.headers
    # HSTS: a browser that reached Jenkins over TLS never tries plain HTTP again
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


def test_a_posted_config_streams_through_unbuffered(proxy):
    import requests

    body = b"<project><description>" + b"x" * 2_000_000 + b"</description></project>"
    response = requests.post(f"https://127.0.0.1:{proxy['https']}/createItem?name=big", data=body,
                             headers={"Content-Type": "application/xml"}, verify=str(proxy["cert"]), timeout=30)
    assert response.status_code == 200
    saved = proxy["fake"].jobs["big"].config  # as Jenkins writes it back on save
    assert len(ET.fromstring(saved.encode()).findtext("description")) == 2_000_000
    log = (Path(proxy["cert"]).parent / "error.log").read_text()
    assert "buffered to a temporary file" not in log, "nginx spooled the body to disk"


def test_websocket_upgrade_passes_through(proxy):
    import websocket

    fake = proxy["fake"]
    fake.clear_requests()
    ws = websocket.create_connection(f"wss://127.0.0.1:{proxy['https']}/wsagents/", timeout=10,
                                     sslopt={"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": str(proxy["cert"])})
    try:
        ws.send("agent hello")
        assert ws.recv() == "agent hello"
    finally:
        ws.close()
    [upgrade] = [r for r in fake.requests if r.path == "/wsagents/"]
    assert upgrade.status == 101
    assert upgrade.headers["upgrade"].lower() == "websocket"
    assert upgrade.headers["connection"].lower() == "upgrade"
    assert upgrade.headers["x-forwarded-proto"] == "https"
