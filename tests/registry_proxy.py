"""A small HTTP proxy on 127.0.0.1 in front of the real test registry, to inject faults and count bytes.

Every request goes to the registry unchanged (the Host header too, so the registry's Location
headers point back at the proxy) unless a planned fault matches it first: then the proxy answers
that status itself, with the registry's JSON error shape. It also counts the request body bytes it
forwarded, which is what a push uploads. ``stop()`` closes the port, so the engine sees a registry
that is down (connection refused). Loopback only.
"""

from __future__ import annotations

import collections
import dataclasses
import http.client
import http.server
import json
import threading
from typing import Callable

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate"}
FAULT_BODIES = {
    429: {"code": "TOOMANYREQUESTS", "message": "too many requests (injected)"},
    500: {"code": "UNKNOWN", "message": "internal error (injected)"},
    503: {"code": "UNAVAILABLE", "message": "service unavailable (injected)"},
}


def is_manifest_put(method: str, path: str) -> bool:
    return method == "PUT" and "/manifests/" in path


@dataclasses.dataclass
class Seen:
    method: str
    path: str
    status: int
    injected: bool
    body_bytes: int


class FaultProxy:
    """Forward to ``upstream`` (host:port), answering planned faults for matching requests first."""

    def __init__(self, upstream: str, *, faults: tuple[int, ...] = (),
                 match: Callable[[str, str], bool] = is_manifest_put):
        self.upstream = upstream
        self.faults = collections.deque(faults)
        self.match = match
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _handle(self) -> None:
                body = self._read_body()
                with proxy._lock:
                    fault = proxy.faults.popleft() if proxy.faults and proxy.match(self.command, self.path) else None
                if fault is not None:
                    payload = json.dumps({"errors": [FAULT_BODIES.get(fault, {"code": "UNKNOWN", "message": "injected"})]})
                    self._answer(fault, [("Content-Type", "application/json")], payload.encode())
                    proxy._note(Seen(self.command, self.path, fault, True, len(body)))
                    return
                connection = http.client.HTTPConnection(proxy.upstream, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                    headers["Content-Length"] = str(len(body))
                    connection.request(self.command, self.path, body=body, headers=headers)
                    response = connection.getresponse()
                    data = response.read()
                    out = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP | {"content-length"}]
                    self._answer(response.status, out, data)
                    proxy._note(Seen(self.command, self.path, response.status, False, len(body)))
                finally:
                    connection.close()

            def _read_body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _answer(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _note(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def start(self) -> "FaultProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the port: from now on the registry is down (connection refused)."""
        self.server.shutdown()
        self.server.server_close()

    def uploaded_bytes(self) -> int:
        """Return the request body bytes forwarded to the registry (what pushes uploaded)."""
        with self._lock:
            return sum(s.body_bytes for s in self.seen if not s.injected)

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        except OSError:
            pass
