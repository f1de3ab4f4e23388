"""Requests dropped while the local target changes release: during a deploy and during a rollback.

One client asks the served URL (the deck, a new connection each time, no proxy) at a steady rate
from just before the command starts until it ends; a request is dropped when it is refused,
reset, times out or answers anything but 200. The deploy is the whole `pinotage run` of a new
commit (build, smoke test, push, deploy), the rollback the whole `pinotage rollback` that follows;
each round commits a new slide, so every deploy and rollback moves the front. The goal has no
peer: none dropped, in every run, of at least 1,000 requests at 100 or more a second.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
import urllib.parse

from benchmarks import bench_run, measure

ROUNDS = {False: 5, True: 1}
MIN_REQUESTS = 1000
MIN_RATE_PER_S = 100
RATE_PER_S = {"deploy": 150, "rollback": 800}  # the rollback lasts a second or two: it needs a faster client
REQUEST_TIMEOUT_S = 5
GOAL = "0 dropped, of ≥ 1,000 at ≥ 100/s, in every run"
ROWS = {"deploy": "requests dropped during a deploy (`pinotage run` of a new commit, local target)",
        "rollback": "requests dropped during a rollback (`pinotage rollback`, local target)"}


def run(quick: bool) -> list[dict]:
    """Count dropped requests over deploys and rollbacks, alternately; return the two rows."""
    return bench_run.with_bench(measure_drops, quick, [(ROWS[k], "requests", GOAL) for k in ("deploy", "rollback")])


def measure_drops(bench: "bench_run.Bench", quick: bool) -> list[dict]:
    env = bench.cold_environment("drops")
    bench_run.say("the first release (not counted)")
    bench.pinotage_run(env, expect="full")
    url = f"http://127.0.0.1:{env['host_port']}/"
    counts: dict[str, list[Counted]] = {"deploy": [], "rollback": []}
    for i in range(ROUNDS[quick]):
        bench.commit_slide(i)
        with Client(url, RATE_PER_S["deploy"]) as client:
            bench.pinotage_run(env, expect="full")
        counts["deploy"].append(client.counted())
        with Client(url, RATE_PER_S["rollback"]) as client:
            measure.run_timed([*measure.pinotage_argv(), "rollback"], env=bench.environ(env), cwd=bench.repo,
                              timeout_s=bench_run.RUN_TIMEOUT_S)
        counts["rollback"].append(client.counted())
        bench_run.say(f"round {i + 1}: deploy {counts['deploy'][-1]}; rollback {counts['rollback'][-1]}")
    return [drops_row(ROWS[kind], runs) for kind, runs in counts.items()]


def drops_row(name: str, runs: list["Counted"]) -> dict:
    worst = max(r.dropped for r in runs)
    fewest = min(r.asked for r in runs)
    slowest = min(r.rate_per_s for r in runs)
    met = worst == 0 and fewest >= MIN_REQUESTS and slowest >= MIN_RATE_PER_S
    note = (f"n={len(runs)} runs; per run: dropped {', '.join(str(r.dropped) for r in runs)} of "
            f"{', '.join(str(r.asked) for r in runs)} requests, over {', '.join(f'{r.took_s:.1f}' for r in runs)} s"
            f" (lowest rate {slowest:.0f}/s)")
    reasons = sorted({why for r in runs for why in r.reasons})
    if reasons:
        note += "; seen: " + "; ".join(reasons)[:300]
    if not met:
        gaps = [f"{worst} dropped"] if worst else []
        gaps += [f"a run of only {fewest} requests"] if fewest < MIN_REQUESTS else []
        gaps += [f"a rate of only {slowest:.0f}/s"] if slowest < MIN_RATE_PER_S else []
        note += "; gap: " + ", ".join(gaps)
    return measure.row(name, float(worst), None, "requests", GOAL, met, note)


class Counted:
    """What one client saw: requests asked, dropped (and why), over how long."""

    def __init__(self, asked: int, dropped: int, took_s: float, reasons: list[str]):
        self.asked, self.dropped, self.took_s, self.reasons = asked, dropped, took_s, reasons
        self.rate_per_s = asked / took_s if took_s else 0.0

    def __str__(self) -> str:
        return f"{self.dropped} of {self.asked} dropped in {self.took_s:.1f} s"


class Client:
    """One client thread asking a URL at a steady rate (a new connection each time) while the block runs."""

    def __init__(self, url: str, rate_per_s: float):
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        # The plainest client, so that one thread reaches a high rate: a browser would be slower.
        self.request = f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode()
        self.interval_s = 1 / rate_per_s
        self.asked = 0
        self.reasons: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._ask, daemon=True)

    def __enter__(self) -> "Client":
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(REQUEST_TIMEOUT_S * 2)
        self.took_s = time.monotonic() - self.started

    def counted(self) -> Counted:
        return Counted(self.asked, len(self.reasons), self.took_s, self.reasons)

    def _ask(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            self.asked += 1
            why = self._one()
            if why:
                self.reasons.append(why)
            due += self.interval_s
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)

    def _one(self) -> str:
        """Ask once (HTTP/1.1, a new connection closed by the server); return why it was dropped, or ""."""
        try:
            with socket.create_connection((self.host, self.port), timeout=REQUEST_TIMEOUT_S) as connection:
                connection.sendall(self.request)
                head = connection.recv(65536)
                while connection.recv(65536):
                    pass
        except OSError as e:
            return type(e).__name__
        status = head.split(b"\r\n", 1)[0]
        return "" if status.startswith(b"HTTP/1.1 200 ") else (status.decode(errors="replace")[:40] or "no answer")


if __name__ == "__main__":
    for found in run("--quick" in sys.argv):
        print(found)
