"""What the deploy benchmark's client counts as a dropped request, against a server on loopback."""

from __future__ import annotations

import http.server
import socket
import threading
import time

import pytest

from benchmarks import bench_deploy

DECK = b"<html><section>slide</section></html>"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes: no delayed-ACK wait between them

    def do_GET(self):  # noqa: N802 (the name http.server calls)
        if self.path == "/one-per-connection" and getattr(self, "answered", False):
            self.close_connection = True  # closes a kept-alive connection under the next request
            return
        self.answered = True  # one handler serves one connection
        status, body, close = {
            "/deck": (200, DECK, False),
            "/deck-then-close": (200, DECK, True),
            "/one-per-connection": (200, DECK, False),
            "/failing": (503, DECK, False),
            "/something-else": (200, b"<html>not it</html>", False),
        }[self.path]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    served = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    served.daemon_threads = True
    threading.Thread(target=served.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{served.server_port}"
    served.shutdown()
    served.server_close()


def _count(url: str) -> bench_deploy.Counted:
    with bench_deploy.Client(url) as client:
        time.sleep(0.3)
    return client.counted()


@pytest.mark.parametrize("path", ["/deck", "/deck-then-close"], ids=["kept-alive", "server-closes-after-answering"])
def test_whole_answers_that_are_the_deck_drop_nothing(server, path):
    counted = _count(server + path)
    assert counted.asked > 20 and counted.dropped == 0, counted.reasons[:3]


@pytest.mark.parametrize("path, reason", [
    ("/failing", "HTTP 503"),
    ("/something-else", "a body of 19 bytes that is not the deck"),
], ids=["5xx", "wrong-body"])
def test_an_answer_that_is_not_the_deck_is_dropped(server, path, reason):
    counted = _count(server + path)
    assert counted.asked > 20 and counted.dropped == counted.asked
    assert set(counted.reasons) == {f"kept-alive connection: {reason}", f"new connection: {reason}"}


def test_a_kept_alive_connection_closed_under_a_request_is_dropped_and_the_client_reconnects(server):
    counted = _count(server + "/one-per-connection")
    # Every kept-alive request but the first on each connection finds it closed, so every other one
    # fails; the client opens a new connection after each failure, whose first request succeeds.
    kept_alive = counted.asked - counted.asked // bench_deploy.NEW_CONNECTION_EVERY
    assert set(counted.reasons) == {"kept-alive connection: RemoteDisconnected"}
    assert kept_alive // 2 - 1 <= counted.dropped <= kept_alive // 2 + 1


def test_a_refused_connection_is_dropped():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, never listening: connections are refused
        counted = _count(f"http://127.0.0.1:{port}/")
    assert counted.asked > 20 and counted.dropped == counted.asked
    assert {why.split(": ", 1)[1] for why in counted.reasons} == {"ConnectionRefusedError"}


@pytest.mark.parametrize("runs, met, gap", [
    ([(0, 1200, 2.0), (0, 1000, 1.0)], True, ""),
    ([(0, 1200, 2.0), (0, 900, 1.5)], False, "gap: a run of only 900 requests"),
    ([(1, 1200, 2.0), (0, 1000, 1.0)], False, "gap: 1 dropped"),
    ([(0, 1200, 20.0), (0, 1000, 1.0)], False, "gap: a rate of only 60/s"),
], ids=["met", "too-few", "one-dropped", "too-slow"])
def test_the_row_is_met_only_when_every_run_drops_none_of_enough_requests_fast_enough(runs, met, gap):
    row = bench_deploy.drops_row("drops", [bench_deploy.Counted(asked, dropped, took_s, ["why"] * dropped, asked - 300)
                                            for dropped, asked, took_s in runs])
    assert row["met"] is met
    assert (gap in row["note"]) if gap else "gap:" not in row["note"]
    rates = ", ".join(f"{asked / took_s:.0f}" for _, asked, took_s in runs)
    assert f"at {rates}/s" in row["note"], "each run's rate is reported"
    during = ", ".join(str(asked - 300) for _, asked, _ in runs)
    assert f"of which during the command {during} " in row["note"], "the requests during the command are told apart"
