"""What registry logins the engine hears from the runner's Docker client.

A branch or pull-request build must send the engine no login from the docker config file,
neither with a build (X-Registry-Config) nor with a pull or push (X-Registry-Auth). The engine
is a loopback stand-in that answers the few API calls used here, records their headers and
refuses anything else; the client runs in a child process whose DOCKER_CONFIG names a config
file holding a login, the way a Jenkins agent's would.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REGISTRY = "127.0.0.1:5999"
PASSWORD = "s3cret-from-config"

CLIENT_SCRIPT = """
import io, sys, tarfile
from pipeline import services

client = services.docker_client({"DOCKER_HOST": sys.argv[1]}, trusted=sys.argv[2] == "trusted")
context = io.BytesIO()
with tarfile.open(fileobj=context, mode="w") as tar:
    dockerfile = b"FROM scratch\\n"
    info = tarfile.TarInfo("Dockerfile")
    info.size = len(dockerfile)
    tar.addfile(info, io.BytesIO(dockerfile))
context.seek(0)
list(client.api.build(fileobj=context, custom_context=True, tag="%(registry)s/app:1", decode=True))
list(client.api.pull("%(registry)s/app", tag="1", stream=True, decode=True))
list(client.api.push("%(registry)s/app", tag="1", stream=True, decode=True))
""" % {"registry": REGISTRY}


class Engine(BaseHTTPRequestHandler):
    """Answer version, ping, build, pull and push as dockerd does; refuse the rest with 404."""

    seen: list[tuple[str, dict[str, str]]]

    def log_message(self, *args) -> None:
        pass

    def _reply(self, status: int, body: dict) -> None:
        data = (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/version":
            self._reply(200, {"ApiVersion": "1.41", "Version": "20.10.0", "MinAPIVersion": "1.12"})
        elif path.endswith("/_ping"):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")
        else:
            self._reply(404, {"message": f"page not found: GET {path}"})

    def do_POST(self) -> None:
        path = self.path.split("?")[0]
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        call = {"/v1.41/build": "build", "/v1.41/images/create": "pull",
                f"/v1.41/images/{REGISTRY}/app/push": "push"}.get(path)
        if call is None:
            self._reply(404, {"message": f"page not found: POST {path}"})
            return
        self.seen.append((call, dict(self.headers)))
        self._reply(200, {"stream": f"{call} done\n"} if call == "build" else {"status": f"{call} done"})


@pytest.fixture
def engine():
    handler = type("RecordingEngine", (Engine,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, handler.seen
    server.shutdown()
    server.server_close()


@pytest.fixture
def docker_config(tmp_path) -> Path:
    folder = tmp_path / "docker"
    folder.mkdir()
    login = base64.b64encode(f"jenkins:{PASSWORD}".encode()).decode()
    (folder / "config.json").write_text(json.dumps({"auths": {REGISTRY: {"auth": login}}}))
    return folder


def _logins(headers: dict[str, str]) -> list[str]:
    """Return every registry login's password carried by the auth headers."""
    passwords = []
    for name in ("X-Registry-Config", "X-Registry-Auth"):
        value = headers.get(name)
        if not value:
            continue
        decoded = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        entries = decoded.values() if name == "X-Registry-Config" else [decoded]
        passwords += [entry.get("password", "") for entry in entries if isinstance(entry, dict)]
    return [p for p in passwords if p]


@pytest.mark.parametrize("trust, sends_login", [
    ("untrusted", False),
    ("trusted", True),  # the control: the stand-in does see a login when one is sent
], ids=["branch-or-pr-client-sends-no-login", "default-branch-client-sends-the-config-login"])
def test_registry_logins_reach_the_engine_only_from_a_trusted_client(engine, docker_config, environ, tmp_path,
                                                                      trust, sends_login):
    server, seen = engine
    child_env = {**environ, "HOME": str(tmp_path), "DOCKER_CONFIG": str(docker_config),
                 "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-c", CLIENT_SCRIPT, f"tcp://127.0.0.1:{server.server_port}", trust],
                          env=child_env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [call for call, _ in seen] == ["build", "pull", "push"]
    for call, headers in seen:
        assert _logins(headers) == ([PASSWORD] if sends_login else []), f"{call}: {sorted(headers)}"
