"""A registry in token mode, as Docker Hub runs: Debian's docker-registry with ``auth: token``,
behind a small token issuer written here.

The registry answers ``401`` with ``WWW-Authenticate: Bearer realm=…,service=…,scope=…``; a
client trades its login at the realm for a JWT that names the actions it may take on one
repository (``pull``, ``push``), signed RS256 with a key whose certificate the registry trusts
(``rootcertbundle``; the certificate rides in the token's ``x5c`` header). The issuer grants
each user only the actions it is given here: ``pusher`` pull and push, ``reader`` pull only.
Signing uses the openssl command (no Python crypto library is installed).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import secrets
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests.fakes import send_json

SERVICE = "pinotage-test-registry"
ISSUER = "pinotage-test-issuer"
TOKEN_LIFETIME_S = 300


@dataclasses.dataclass(frozen=True)
class TokenRegistry:
    url: str  # host:port, what image names start with
    realm: str  # the token issuer's URL
    users: dict  # user -> (password, actions granted)
    issued: list  # (user, scope asked, actions granted), in order

    @property
    def api(self) -> str:
        return f"http://{self.url}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_signing_key(folder: Path) -> tuple[Path, Path]:
    """Make the issuer's RSA key and its self-signed certificate; return (key, cert)."""
    key, cert = folder / "issuer-key.pem", folder / "issuer-cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", f"/CN={ISSUER}"], check=True, capture_output=True, timeout=60)
    return key, cert


def sign(claims: dict, key: Path, cert: Path) -> str:
    """Return a JWT of the claims, RS256-signed with key, its certificate in x5c."""
    der = subprocess.run(["openssl", "x509", "-in", str(cert), "-outform", "DER"], check=True,
                         capture_output=True, timeout=30).stdout
    header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(key)], input=signing_input.encode(),
                               check=True, capture_output=True, timeout=30).stdout
    return f"{signing_input}.{_b64url(signature)}"


def _issuer(registry: dict, key: Path, cert: Path):
    class Issuer(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            if url.path != "/token" or query.get("service") != [SERVICE]:
                self._reply(404, {"errors": [{"code": "NOT_FOUND"}]})
                return
            user, password = self._login()
            known = registry["users"].get(user)
            if known is None or not secrets.compare_digest(known[0], password):
                self._reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "wrong user or password"}]})
                return
            access = []
            for scope in query.get("scope", []):
                kind, _, rest = scope.partition(":")
                name, _, actions = rest.rpartition(":")
                granted = [a for a in actions.split(",") if a in known[1]]
                registry["issued"].append((user, scope, granted))
                access.append({"type": kind, "name": name, "actions": granted})
            now = int(time.time())
            claims = {"iss": ISSUER, "sub": user, "aud": SERVICE, "exp": now + TOKEN_LIFETIME_S, "nbf": now - 10,
                      "iat": now, "jti": secrets.token_hex(8), "access": access}
            token = sign(claims, key, cert)
            self._reply(200, {"token": token, "access_token": token, "expires_in": TOKEN_LIFETIME_S})

        def _login(self) -> tuple[str, str]:
            header = self.headers.get("Authorization", "")
            if not header.startswith("Basic "):
                return "", ""
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            return user, password

        def _reply(self, code: int, body: dict) -> None:
            send_json(self, code, body)

    return Issuer


def start(tmp: Path, serve_registry) -> tuple[subprocess.Popen, ThreadingHTTPServer, TokenRegistry]:
    """Start the issuer and the registry in token mode on loopback; return them once both answer."""
    key, cert = make_signing_key(tmp)
    users = {"pusher": (secrets.token_urlsafe(12), ("pull", "push")),
             "reader": (secrets.token_urlsafe(12), ("pull",))}
    state = {"users": users, "issued": []}
    issuer = ThreadingHTTPServer(("127.0.0.1", 0), _issuer(state, key, cert))
    threading.Thread(target=issuer.serve_forever, daemon=True).start()
    realm = f"http://127.0.0.1:{issuer.server_address[1]}/token"
    process, port = serve_registry(tmp, f"{{token: {{realm: '{realm}', service: {SERVICE}, issuer: {ISSUER}, "
                                        f"rootcertbundle: {cert}}}}}")
    return process, issuer, TokenRegistry(f"127.0.0.1:{port}", realm, users, state["issued"])
