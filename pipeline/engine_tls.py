"""A Docker engine reached over TCP with mutual TLS (a build pod's engine sidecar): its failures in one line.

``DOCKER_TLS_VERIFY`` asks for mutual TLS with the files in ``DOCKER_CERT_PATH`` (ca.pem,
cert.pem, key.pem). A missing file, or a certificate one side does not trust, is one line naming
what is wrong, and exit 1: the build cannot reach its engine. The docker SDK's own messages nest
three exceptions on one line and name no file.
"""

from __future__ import annotations

import os
from typing import Mapping, NoReturn

from pipeline.errors import PinotageError

TLS_FILES = ("ca.pem", "cert.pem", "key.pem")
NEGOTIATE_FROM = "1.24"  # a version every engine answers /version on; the real one is asked next
ENGINE_TIMEOUT_S = 300
_HINT = ("DOCKER_CERT_PATH must hold this engine's CA and a client certificate it signed"
         " (in a build pod: the ones its certs container made)")
_REASONS = (
    ("CERTIFICATE_VERIFY_FAILED", "the engine's certificate is not signed by the client's ca.pem"),
    ("unknown ca", "the engine does not know the CA of the client's certificate"),
    ("bad certificate", "the engine refused the client's certificate"),
    ("certificate required", "the engine asks for a client certificate"),
    # TLS 1.3: the client may send its request before the engine's alert arrives, and then sees
    # only the connection closed (seen with dockerd refusing another pod's client certificate)
    ("EOF occurred in violation of protocol",
     "the engine closed the connection in the TLS handshake (it refuses the client's certificate)"),
)


def check_files(settings: Mapping[str, str], environ: Mapping[str, str]) -> None:
    """Raise when DOCKER_TLS_VERIFY is set and a certificate file is missing."""
    if not settings.get("DOCKER_TLS_VERIFY"):
        return
    folder = settings.get("DOCKER_CERT_PATH") or os.path.join(environ.get("HOME", "/root"), ".docker")
    missing = [name for name in TLS_FILES if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise PinotageError(f"DOCKER_TLS_VERIFY is set but {folder} has no {', '.join(missing)}", hint=_HINT)


def connect(settings: Mapping[str, str]):
    """Return a docker client for a TLS engine that trusts only DOCKER_CERT_PATH's CA.

    requests lets REQUESTS_CA_BUNDLE (and proxy variables) from the process environment win over
    the CA the SDK sets on its session, so an agent behind a TLS-inspecting proxy would check the
    engine against the wrong CA; the session ignores the environment, and the API version is
    negotiated only after that.
    """
    import docker

    kwargs = docker.utils.kwargs_from_env(environment=dict(settings))
    client = docker.DockerClient(version=NEGOTIATE_FROM, timeout=ENGINE_TIMEOUT_S, **kwargs)
    client.api.trust_env = False
    client.api._version = client.api._retrieve_server_version()  # the SDK's own negotiation, now on this session
    return client


def raise_if_handshake(error: Exception, settings: Mapping[str, str]) -> None:
    """Raise one line when the engine and the client did not agree on certificates; else return."""
    text = str(error)
    reason = next((why for marker, why in _REASONS if marker.lower() in text.lower()), "")
    if reason or "SSLError" in text:
        _refuse(settings.get("DOCKER_HOST", "(default)"), reason or "the TLS handshake failed")


def _refuse(host: str, reason: str) -> NoReturn:
    raise PinotageError(f"the Docker engine at {host} and this client do not trust each other: {reason}",
                        hint=_HINT) from None
