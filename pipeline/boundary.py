"""The one error boundary: an expected error becomes one line a problem, a hint and an exit code.

Expected errors are ``PinotageError`` and the errors the client libraries raise when a service
cannot be reached or refuses (requests, urllib3, python-jenkins, the Kubernetes and Docker
clients, the socket layer): those say which service and why, and exit 1. Anything else is a
bug and shows its traceback, after the line that says so. Every line goes out through the
redacting streams (``pipeline.redact``), and at most ``MAX_LINES`` problems are printed.
"""

from __future__ import annotations

import contextlib
import re
import signal
import sys
import threading
import traceback
from typing import Callable, Iterator

from pipeline.errors import EXIT_FAILED, PinotageError

EXIT_BUG = 70  # EX_SOFTWARE
MAX_LINES = 20
MAX_LINE_CHARS = 500
UNREACHABLE_HINT = "check the service's URL in 'pinotage config', and that it runs and answers from here"

# class (module.qualname, as in the MRO) -> the service it speaks for
SERVICE_ERRORS = {
    "requests.exceptions.RequestException": "HTTP request",
    "urllib3.exceptions.HTTPError": "HTTP request",
    "jenkins.JenkinsException": "Jenkins",
    "kubernetes.client.exceptions.ApiException": "the Kubernetes API server",
    "docker.errors.DockerException": "the Docker engine",
    "http.client.HTTPException": "HTTP request",
    "builtins.ConnectionError": "connection",
    "builtins.TimeoutError": "connection",
    "socket.gaierror": "name lookup",
}


class Terminated(KeyboardInterrupt):
    """SIGTERM (a Jenkins abort sends it): unwinds as Ctrl-C does, so every clean-up on the way runs."""


def run(call: Callable[[], int]) -> int:
    """Run a command; print an expected error as short lines and return its exit code."""
    try:
        with _terminate_as_interrupt():
            return call()
    except PinotageError as e:
        report(e.lines() + list(getattr(e, "__notes__", ())), e.hint)
        return e.exit_code
    except Terminated:
        print("pinotage: terminated (SIGTERM); cleaned up", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("pinotage: interrupted; cleaned up", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 -- sorted below into a service's failure or a bug
        line = service_failure(e)
        if line is None:
            print("pinotage: internal error (a bug in Pinotage; please report it with this traceback):",
                  file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
            return EXIT_BUG
        report([line], UNREACHABLE_HINT)
        return EXIT_FAILED


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into Terminated while the command runs (only the main thread may set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminated(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def report(lines: list[str], hint: str = "") -> None:
    """Print problems, one a line, at most MAX_LINES of them, then the hint."""
    for line in lines[:MAX_LINES]:
        print(f"pinotage: error: {_cut(line)}", file=sys.stderr)
    if len(lines) > MAX_LINES:
        print(f"pinotage: error: … and {len(lines) - MAX_LINES} more problems", file=sys.stderr)
    if hint:
        print(f"  hint: {_cut(hint)}", file=sys.stderr)


def service_failure(e: BaseException) -> str | None:
    """Say which service failed and why, for an error a client library raised; None for others."""
    names = {f"{kind.__module__}.{kind.__qualname__}" for kind in type(e).__mro__}
    service = next((label for name, label in SERVICE_ERRORS.items() if name in names), None)
    if service is None:
        return None
    url = _url_of(e)
    where = f"{service} to {url}" if url else service
    status = getattr(e, "status", None)
    if isinstance(status, int) and status:
        return f"{where} failed: it answered {status} {getattr(e, 'reason', '') or ''}".rstrip()
    return f"{where} failed: {_reason(e)}"


def _url_of(e: BaseException) -> str:
    request = getattr(e, "request", None)
    url = getattr(request, "url", None) if request is not None else None
    if not url and getattr(e, "url", None) and getattr(e, "pool", None) is not None:
        pool = e.pool
        url = f"{getattr(pool, 'scheme', 'http')}://{pool.host}:{pool.port}{e.url}"
    return str(url or "")


def _reason(e: BaseException) -> str:
    """Find the most specific reason in the chain: an errno's words, else the innermost error's type."""
    seen: list[BaseException] = []
    current: BaseException | None = e
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = getattr(current, "reason", None) if isinstance(getattr(current, "reason", None), BaseException) \
            else (current.args[0] if current.args and isinstance(current.args[0], BaseException)
                  else current.__cause__ or current.__context__)
    for error in reversed(seen):
        if isinstance(error, OSError) and error.strerror:
            return error.strerror.lower()
        match = re.search(r"\[Errno -?\d+\] ([^'\"\)]+)", str(error))
        if match:
            return match.group(1).strip().lower()
    innermost = seen[-1]
    said = " ".join(str(innermost).split())
    if said and "object at 0x" not in said:
        return said if len(said) <= 200 else said[:200] + "…"
    return {"ConnectTimeoutError": "timed out connecting", "ReadTimeoutError": "timed out reading the answer",
            "ConnectTimeout": "timed out connecting", "ReadTimeout": "timed out reading the answer",
            "SSLError": "TLS failed"}.get(type(innermost).__name__, type(innermost).__name__)


def _cut(line: str) -> str:
    line = line.replace("\r", " ")
    return line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS] + f"… ({len(line)} characters)"
