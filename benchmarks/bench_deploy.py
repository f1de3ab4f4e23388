"""Requests dropped while the local target changes release: during a deploy and during a rollback.

One client asks the served URL (the deck, no proxy) back to back, with no pause, from LEAD_S
before the command starts until it has returned: a live app has traffic when an operation begins,
and a rollback now takes about a second and a quarter, in which one client asks fewer than the
1,000 requests the goal wants in every run. The note gives the requests during the command apart. Its requests go on two kinds of connection, because
each hides a way of dropping that the other shows:

- a kept-alive HTTP/1.1 connection, reused for three requests in four: it sees what a browser
  sees when the front closes or resets a connection it holds (as a reloaded nginx does);
- a new connection for every fourth request (``Connection: close``): it sees what a kept-alive
  connection hides, a listening port that closes or moves (refused) while releases change. One
  in four samples the port every few milliseconds, finer than any such gap could be, and leaves
  the kept-alive requests, which cost the front far less, to set the rate.

Every request is a whole request and response through the front, read to the end. A request is
dropped when it is refused, reset, times out, when its connection closes before the whole answer
(a kept-alive connection closed under a request counts, and the next request opens a new one), or
when the answer is not a 200 whose body is the deck. A server that says ``Connection: close`` on a
complete answer drops nothing: the client opens a new connection for its next request. With a
front of one reloaded nginx, this client lost one request on its kept-alive connection in nearly
every deploy and rollback: the request it sent as the reload closed that connection
(``RemoteDisconnected``). The front now keeps client connections in an nginx that is never
reloaded (``pipeline/targets/front.py``). The client's rate is bound by the answers, not by its
own work: a raw socket was no faster than ``http.client`` here.

The deploy is the whole `pinotage run` of a new commit (build, smoke test, push, deploy), the
rollback the whole `pinotage rollback` that follows; each round commits a new slide, so every
deploy and rollback moves the front. The goal has no peer: none dropped, in every run, of at least
1,000 requests at 100 or more a second.
"""

from __future__ import annotations

import http.client
import sys
import threading
import time
import urllib.parse

from benchmarks import bench_run, measure

ROUNDS = {False: 5, True: 1}
MIN_REQUESTS = 1000
MIN_RATE_PER_S = 100
NEW_CONNECTION_EVERY = 4  # the rest go on the kept-alive connection
DECK_MARK = b"<section"  # in every answer that is the deck
REQUEST_TIMEOUT_S = 5
LEAD_S = 0.5  # the client asks for this long before the command starts
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
        with Client(url) as client:
            client.lead()
            bench.pinotage_run(env, expect="full")
        counts["deploy"].append(client.counted())
        with Client(url) as client:
            client.lead()
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
            f" at {', '.join(f'{r.rate_per_s:.0f}' for r in runs)}/s, of which during the command"
            f" {', '.join(str(r.during) for r in runs)} (one client, back to back, from {LEAD_S:g} s before the"
            f" command until it returned; one request in {NEW_CONNECTION_EVERY} on a new connection, the rest"
            f" kept alive)")
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

    def __init__(self, asked: int, dropped: int, took_s: float, reasons: list[str], during: int):
        self.asked, self.dropped, self.took_s, self.reasons, self.during = asked, dropped, took_s, reasons, during
        self.rate_per_s = asked / took_s if took_s else 0.0

    def __str__(self) -> str:
        return f"{self.dropped} of {self.asked} dropped in {self.took_s:.1f} s"


class Client:
    """One client thread asking a URL back to back while the block runs, on a kept-alive connection
    and, every NEW_CONNECTION_EVERY-th request, on a new one."""

    def __init__(self, url: str):
        parts = urllib.parse.urlsplit(url)
        self.host, self.port, self.path = parts.hostname, parts.port, parts.path or "/"
        self.asked = 0
        self.asked_before = 0  # by the end of the lead
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

    def lead(self) -> None:
        """Ask for LEAD_S before the command starts; note how many requests that was."""
        time.sleep(LEAD_S)
        self.asked_before = self.asked

    def counted(self) -> Counted:
        return Counted(self.asked, len(self.reasons), self.took_s, self.reasons, self.asked - self.asked_before)

    def _ask(self) -> None:
        kept = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT_S)
        while not self._stop.is_set():
            fresh = self.asked % NEW_CONNECTION_EVERY == NEW_CONNECTION_EVERY - 1
            connection = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT_S) if fresh else kept
            why = self._one(connection, close=fresh)
            self.asked += 1
            if why:
                self.reasons.append(f"{'new' if fresh else 'kept-alive'} connection: {why}")
            if fresh or why:
                connection.close()  # the kept one opens again on its next request
        kept.close()

    def _one(self, connection: http.client.HTTPConnection, *, close: bool) -> str:
        """Ask once and read the whole answer; return why it counts as dropped, or ""."""
        try:
            connection.request("GET", self.path, headers={"Connection": "close"} if close else {})
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as e:
            return type(e).__name__
        if response.status != 200:
            return f"HTTP {response.status}"
        return "" if DECK_MARK in body else f"a body of {len(body)} bytes that is not the deck"


if __name__ == "__main__":
    for found in run("--quick" in sys.argv):
        print(found)
