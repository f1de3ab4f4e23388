"""An npm registry advisory service double on loopback, for ``npm audit``.

The registry's bulk advisory endpoint (``POST /-/npm/v1/security/advisories/bulk``, which npm
sends gzip-compressed) takes ``{name: [version, ...]}`` and answers ``{name: [advisory, ...]}``
with the advisories whose ``vulnerable_versions`` take in one of the versions asked about. It is a
double only because the registry proxy on the development machines refuses POST (405), so the
real service cannot be reached from here; the same tests run against a real registry when
``PINOTAGE_TEST_NPM_REGISTRY`` is set. Anything else (package documents included) is refused with
404, which npm reads as "not from the registry".

The advisories carry the published advisories' URL, title, severity, range, CWE and CVSS (GitHub
Advisory Database) for the two packages the tests pin; their numeric ids are the double's own.
"""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BULK = "/-/npm/v1/security/advisories/bulk"
ADVISORIES = {
    "lodash": [{
        "id": 1106913, "url": "https://github.com/advisories/GHSA-35jh-r3h4-6jhm",
        "title": "Command Injection in lodash", "severity": "high", "vulnerable_versions": "<4.17.21",
        "cwe": ["CWE-77", "CWE-94"],
        "cvss": {"score": 7.2, "vectorString": "CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:U/C:H/I:H/A:H"},
    }],
    "minimist": [{
        "id": 1097678, "url": "https://github.com/advisories/GHSA-xvch-5gv4-984h",
        "title": "Prototype Pollution in minimist", "severity": "critical", "vulnerable_versions": "<0.2.4",
        "cwe": ["CWE-1321"],
        "cvss": {"score": 9.8, "vectorString": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"},
    }, {
        "id": 1096850, "url": "https://github.com/advisories/GHSA-xvch-5gv4-984h",
        "title": "Prototype Pollution in minimist", "severity": "critical", "vulnerable_versions": ">=1.0.0 <1.2.6",
        "cwe": ["CWE-1321"],
        "cvss": {"score": 9.8, "vectorString": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"},
    }],
}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("-")[0].split("."))


def affects(vulnerable_versions: str, version: str) -> bool:
    """Tell whether a range of the forms the table uses ("<X", ">=X <Y") takes in a version."""
    checks = {"<": lambda a, b: a < b, ">=": lambda a, b: a >= b}
    for part in vulnerable_versions.split():
        op = ">=" if part.startswith(">=") else "<"
        if not checks[op](_version(version), _version(part[len(op):])):
            return False
    return True


class FakeAdvisories:
    """Serve the bulk advisory endpoint; keep each request's body (name -> versions)."""

    def __init__(self):
        self.asked: list[dict[str, list[str]]] = []
        self.requests: list[tuple[str, str, int]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def __enter__(self) -> "FakeAdvisories":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, asked: dict[str, list[str]]) -> dict[str, list[dict]]:
        return {name: hits for name, versions in asked.items()
                if (hits := [a for a in ADVISORIES.get(name, [])
                             if any(affects(a["vulnerable_versions"], v) for v in versions)])}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, body: bytes = b"", kind: str = "application/json") -> None:
                fake.requests.append((self.command, self.path, status))
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._send(404, b'{"error":"Not found"}')

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != BULK:
                    return self._send(404, b'{"error":"Not found"}')
                try:
                    body = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
                    asked = json.loads(body)
                    assert isinstance(asked, dict) and all(isinstance(v, list) for v in asked.values())
                except (OSError, ValueError, AssertionError):
                    return self._send(400, b'{"error":"Invalid package tree, run npm install to rebuild"}')
                fake.asked.append(asked)
                self._send(200, json.dumps(fake.answer(asked)).encode())

        return Handler
