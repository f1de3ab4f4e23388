"""Probe a container on loopback: its published port, its HTTP health, the end of its log.

Both the smoke test (``image.smoke``) and the local target (``targets.docker``) gate on a
container answering a path with 200; they share this one probe so the two cannot drift. The
probe never goes through a proxy: a Jenkins agent with ``http_proxy`` set (and no ``no_proxy``
for loopback) would otherwise send the probe to the proxy and the gate would time out.

The probe reports what it saw (``Probed``); each caller turns that into its own error.
"""

from __future__ import annotations

import dataclasses
import time
import urllib.error
import urllib.request
from typing import Any, Callable

POLL_S = 0.02  # a refused connection on loopback costs well under a millisecond
REQUEST_TIMEOUT_S = 2
BODY_LIMIT_BYTES = 2_000_000


@dataclasses.dataclass(frozen=True)
class Probed:
    """What a wait saw: ``healthy``, or why not (exit code, HEALTHCHECK verdict, last answer)."""

    healthy: bool
    waited_s: float
    exit_code: int | None = None  # set when the container stopped while waited on
    unhealthy: bool = False  # the image's own HEALTHCHECK says so
    last: str = "no answer yet"


def get(url: str, *, timeout_s: float = REQUEST_TIMEOUT_S) -> tuple[int, str]:
    """Fetch a URL without any proxy; return the status and (for 200) the body. Raises OSError."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout_s) as response:
            return response.status, response.read(BODY_LIMIT_BYTES).decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, ""


def header(url: str, name: str, *, timeout_s: float = REQUEST_TIMEOUT_S) -> tuple[int, str]:
    """Fetch a URL without any proxy; return the status and one response header ("" when absent)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout_s) as response:
            return response.status, response.headers.get(name, "")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get(name, "")


def wait_healthy(container: Any, url: str, deadline_s: float, *, poll_s: float = POLL_S,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> Probed:
    """Poll url until it answers 200, the container stops or turns unhealthy, or deadline_s passes.

    The URL is asked first: a healthy container costs one request and no engine call. Only an
    answer other than 200 makes the engine say whether the container is still worth waiting for.
    """
    started = clock()
    last = "no answer yet"
    while clock() - started < deadline_s:
        try:
            status, _ = get(url)
        except OSError as e:
            last = type(e).__name__
        else:
            if status == 200:
                return Probed(True, clock() - started, last="HTTP 200")
            last = f"HTTP {status}"
        container.reload()
        state = container.attrs.get("State") or {}
        if state.get("Status") in ("exited", "dead"):
            return Probed(False, clock() - started, exit_code=state.get("ExitCode"), last=last)
        if (state.get("Health") or {}).get("Status") == "unhealthy":
            return Probed(False, clock() - started, unhealthy=True, last=last)
        sleep(poll_s)
    return Probed(False, clock() - started, last=last)


def published_port(container: Any, port: int) -> int | None:
    """Return the host port a container publishes for port/tcp, or None (a stopped one has none)."""
    ports = (container.attrs.get("NetworkSettings") or {}).get("Ports") or {}
    bindings = ports.get(f"{port}/tcp") or []
    return int(bindings[0]["HostPort"]) if bindings else None


def exit_code(container: Any) -> int | None:
    """Return the exit code of a stopped container, None while it runs."""
    state = container.attrs.get("State") or {}
    return state.get("ExitCode") if state.get("Status") in ("exited", "dead") else None


def log_tail(container: Any, lines: int = 10) -> tuple[str, ...]:
    """Return the last non-blank lines of a container's output; () when they cannot be read."""
    try:
        text = container.logs(tail=lines).decode("utf-8", "replace")
    except Exception:  # the log is a courtesy in an error message; failing to read it must not hide the error
        return ()
    return tuple(line for line in text.splitlines() if line.strip())
