"""A build pod's engine over mutual TLS: the right certificates connect; a wrong CA, a client
certificate from another pod, or a missing file is one line and exit 1.

The engine is a loopback stand-in that speaks TLS exactly as dockerd --tlsverify does (its
certificate, and a client certificate signed by its CA required) and answers the two calls a
connection makes (/version, /_ping). The certificates are the real ones the pod's certs
container makes (docker/ci-engine/engine-certs), one set per "pod".
"""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline import services
from pipeline.errors import PinotageError
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def pods(tmp_path_factory):
    """Two pods' certificates: {"a": (server_dir, client_dir), "b": (...)}."""
    made = {}
    for pod in ("a", "b"):
        root = tmp_path_factory.mktemp(f"pod-{pod}")
        server, client = root / "server", root / "client"
        server.mkdir(), client.mkdir()
        subprocess.run([str(ROOT / "docker/ci-engine/engine-certs"), str(server), str(client)], check=True,
                       capture_output=True, timeout=60)
        made[pod] = (server, client)
    return made


class Engine(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path.endswith("/_ping"):
            body, kind = b"OK", "text/plain"
        elif path.endswith("/version"):
            body, kind = json.dumps({"ApiVersion": "1.41", "Version": "20.10.24", "MinAPIVersion": "1.12"}).encode(), \
                "application/json"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def engine(pods):
    """pod a's engine on a loopback port: its certificate, and a client certificate from its CA required."""
    server_dir, _ = pods["a"]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(server_dir / "cert.pem", server_dir / "key.pem")
    context.load_verify_locations(server_dir / "ca.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Engine)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"tcp://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def environ(host: str, cert_path) -> dict[str, str]:
    return {"DOCKER_HOST": host, "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(cert_path), "HOME": "/nonexistent"}


def test_the_pods_own_certificates_connect(engine, pods, monkeypatch):
    # an agent behind a TLS-inspecting proxy has this set; requests would let it override the pod's CA
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    client = services.docker_client(environ(engine, pods["a"][1]), trusted=False)
    assert client.api.base_url.startswith("https://127.0.0.1:")
    client.close()


@pytest.mark.parametrize("certs, expected", [
    ("other-pod", "do not trust each other: the engine's certificate is not signed by the client's ca.pem"),
    ("empty", "has no ca.pem, cert.pem, key.pem"),
    ("no-key", "has no key.pem"),
], ids=["wrong-ca", "missing-certificates", "missing-key"])
def test_a_wrong_ca_or_a_missing_file_is_one_line_and_exit_1(engine, pods, tmp_path, certs, expected):
    folder = {"other-pod": pods["b"][1], "empty": tmp_path, "no-key": tmp_path}[certs]
    if certs == "no-key":
        for name in ("ca.pem", "cert.pem"):
            (tmp_path / name).write_bytes((pods["a"][1] / name).read_bytes())
    with pytest.raises(PinotageError) as refused:
        services.docker_client(environ(engine, folder), trusted=False)
    assert expected in refused.value.message
    assert "\n" not in refused.value.message and refused.value.exit_code == 1


def test_a_client_certificate_from_another_pod_is_refused_in_one_line(engine, pods, tmp_path):
    (tmp_path / "ca.pem").write_bytes((pods["a"][1] / "ca.pem").read_bytes())  # trusts the engine...
    for name in ("cert.pem", "key.pem"):  # ...but holds another pod's client certificate
        (tmp_path / name).write_bytes((pods["b"][1] / name).read_bytes())
    with pytest.raises(PinotageError) as refused:
        services.docker_client(environ(engine, tmp_path), trusted=False)
    assert "\n" not in refused.value.message and refused.value.exit_code == 1
    assert "do not trust each other" in refused.value.message, refused.value.message


def test_an_engine_that_closes_the_handshake_is_one_line_too():
    # what a real dockerd's refusal of another pod's client certificate can look like under TLS 1.3,
    # when the client's request races the engine's alert (tests/integration/test_agent_pod.py)
    import docker.errors

    from pipeline import engine_tls

    seen = docker.errors.DockerException(
        "Error while fetching server API version: HTTPSConnectionPool(host='127.0.0.1', port=2376): Max retries "
        "exceeded with url: /version (Caused by SSLError(SSLEOFError(8, 'EOF occurred in violation of protocol "
        "(_ssl.c:2393)')))")
    with pytest.raises(PinotageError) as refused:
        engine_tls.raise_if_handshake(seen, {"DOCKER_HOST": "tcp://127.0.0.1:2376"})
    assert refused.value.message == ("the Docker engine at tcp://127.0.0.1:2376 and this client do not trust each "
                                     "other: the engine closed the connection in the TLS handshake (it refuses the "
                                     "client's certificate)")
