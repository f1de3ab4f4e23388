"""A client that asks a URL while a block runs, each time on a new connection, as users do during a
deploy; it records every answer (status and body, in order) and every failure to get one."""

from __future__ import annotations

import http.client
import threading
import urllib.error
import urllib.request


class Client:
    """One client asking url every interval_s on a new connection (no proxy) while the block runs."""

    def __init__(self, url: str, interval_s: float = 0.005):
        self.url = url
        self.interval_s = interval_s
        self.answers: list[tuple[int, str]] = []  # (status, body) in order; a 5xx is an answer too
        self.failures: list[str] = []  # refused, reset, timed out, closed before the whole answer
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._ask, daemon=True)

    @property
    def statuses(self) -> set[int]:
        return {status for status, _ in self.answers}

    def __enter__(self) -> "Client":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def _ask(self) -> None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while not self._stop.wait(self.interval_s):
            try:
                with opener.open(self.url, timeout=5) as response:
                    self.answers.append((response.status, response.read().decode(errors="replace")))
            except urllib.error.HTTPError as e:
                self.answers.append((e.code, e.read().decode(errors="replace")))
            except (OSError, http.client.HTTPException) as e:
                self.failures.append(f"{type(e).__name__}: {e}")
