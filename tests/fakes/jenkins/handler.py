"""The double's HTTP plumbing: record, authenticate, check the crumb, route, answer as Jenkins does."""

from __future__ import annotations

import json
import secrets
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fakes.jenkins import routes
from tests.fakes.jenkins.security import ANONYMOUS, User, authenticate, missing
from tests.fakes.jenkins.server import CRUMB_FIELD, FakeJenkins, Request
from tests.fakes.jenkins.websocket import handshake

SESSION_COOKIE = "JSESSIONID"
NO_CRUMB_PATHS = ("/j_spring_security_check",)


def handler_for(fake: FakeJenkins) -> type[BaseHTTPRequestHandler]:
    class Handler(JenkinsHandler):
        pass

    Handler.fake = fake
    return Handler


class JenkinsHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Jetty(10.0.20)"
    # Jetty sets TCP_NODELAY on every accepted socket (jetty.http.acceptedTcpNoDelay=true). Without it
    # the body, sent after the headers, waits for the client's delayed ACK: ~40 ms a request on loopback,
    # a stall real Jenkins does not have.
    disable_nagle_algorithm = True
    fake: FakeJenkins
    user: User = ANONYMOUS
    by_session = False  # authenticated by a session cookie rather than an API token

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        pass

    # --- answering ------------------------------------------------------
    def send(self, status: int, body: bytes | str = b"", content_type: str = "text/html;charset=utf-8",
             headers: dict[str, str] | None = None) -> None:
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.record(status)
        self.send_response(status)
        self.send_header("X-Jenkins", self.fake.version)
        self.send_header("X-Hudson", "1.395")
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def json(self, data: Any, status: int = 200) -> None:
        self.send(status, json.dumps(data), "application/json;charset=utf-8")

    def error(self, status: int, message: str) -> None:
        """Answer with Jenkins' HTML error page, which carries the message."""
        title = "Access Denied" if status == 403 and "permission" in message else f"Error {status}"
        self.send(status, f"<html><head><title>{title} [Jenkins]</title></head><body>"
                          f"<h2>HTTP ERROR {status} {message}</h2><p>{message}</p></body></html>")

    def refuse(self, permission: str) -> bool:
        """Answer 403 when the user lacks the permission; return whether it did."""
        message = missing(self.user, permission)
        if message:
            self.error(403, message)
        return bool(message)

    def record(self, status: int) -> None:
        """Record the request before answering, so a client never sees an answer it cannot count."""
        parts = urlsplit(self.path)
        with self.fake.lock:
            self.fake.requests.append(Request(self.command, parts.path, parse_qs(parts.query),
                                              {k.lower(): v for k, v in self.headers.items()},
                                              getattr(self, "body", b""), status))

    # --- receiving ------------------------------------------------------
    def handle_method(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length else b""
        path = unquote(parts.path)
        if self.headers.get("Upgrade", "").lower() == "websocket":
            return handshake(self, path)
        if not self.sign_in():
            return
        if self.command == "POST" and path not in NO_CRUMB_PATHS and not self.crumb_ok():
            return
        if self.command not in ("GET", "HEAD", "POST"):
            return self.error(405, "Method Not Allowed")
        routes.route(self, [s for s in path.split("/") if s], parse_qs(parts.query))

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_method

    def sign_in(self) -> bool:
        """Decide who sent the request (token, session cookie or anonymous); answer 401 for a bad token."""
        session = self.session_id()
        if session and not self.headers.get("Authorization") and session in self.fake.sessions:
            self.user, self.by_session = self.fake.users[self.fake.sessions[session]], True
            return True
        verdict = authenticate(self.fake.users, self.headers.get("Authorization", ""))
        if verdict.status:
            self.error(verdict.status, verdict.message)
            return False
        self.user = verdict.user
        return True

    def session_id(self) -> str:
        for cookie in self.headers.get("Cookie", "").split(";"):
            name, _, value = cookie.strip().partition("=")
            if name.startswith(SESSION_COOKIE):
                return value
        return ""

    def crumb_ok(self) -> bool:
        fake = self.fake
        if not fake.crumbs or self.headers.get(CRUMB_FIELD) == fake.crumb:
            return True
        token_request = self.user is not ANONYMOUS and not self.by_session and fake.users
        if token_request and not fake.crumbs_for_tokens:
            return True  # Jenkins 2.96+: an API-token request is exempt
        self.error(403, "No valid crumb was included in the request")
        return False

    def log_in(self) -> None:
        """Take the login form: a good password makes a session (a cookie), as the UI's sign-in does."""
        form = {k: v[-1] for k, v in parse_qs(self.body.decode("utf-8", "replace")).items()}
        user, password = form.get("j_username", ""), form.get("j_password", "")
        expected = self.fake.passwords.get(user)
        if expected is None or user not in self.fake.users or not secrets.compare_digest(password, expected):
            return self.send(302, headers={"Location": f"{self.fake.url}/loginError"})
        session = secrets.token_hex(16)
        self.fake.sessions[session] = user
        self.send(302, headers={"Location": f"{self.fake.url}/",
                                "Set-Cookie": f"{SESSION_COOKIE}.fake={session}; Path=/; HttpOnly"})
