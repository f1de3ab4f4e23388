"""Headless Debian Chromium loads the deployed presentation, shows the first slide, moves to the next.

Chromium is driven over the DevTools protocol (websocket-client). It resolves no host name but
127.0.0.1, so the page can reach nothing beyond loopback; every request it makes is recorded and
must go to the server that serves the deck: the exported site is self-contained. Screenshots are
kept under test-artifacts/.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, need
from tests.integration.app_loop import make_app_loop

pytestmark = pytest.mark.integration

ARTIFACTS = ROOT / "test-artifacts"
START_TIMEOUT_S = 30
STEP_TIMEOUT_S = 20


@pytest.fixture(scope="module")
def deployed(docker_client, registry, base_images, tmp_path_factory):
    loop = make_app_loop(tmp_path_factory.mktemp("browser"), registry, base_images)
    try:
        done = loop.pinotage("run")
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"url:      {loop.url}" in done.stdout.splitlines()
        yield loop
    finally:
        loop.cleanup(docker_client)


class Chromium:
    """One headless Chromium with a fresh profile, and a DevTools session on its first page."""

    def __init__(self, binary: str, profile: Path):
        self.process = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", f"--user-data-dir={profile}",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             # Nothing but loopback resolves: the page cannot reach the outside world.
             "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
             "--window-size=1280,800", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.port = self._devtools_port(profile / "DevToolsActivePort")
        pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=5))
        page = next(p for p in pages if p["type"] == "page")
        import websocket

        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=STEP_TIMEOUT_S,
                                              suppress_origin=True)
        self.ids = itertools.count(1)
        self.events: list[dict] = []

    def _devtools_port(self, marker: Path) -> int:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited {self.process.returncode}: "
                                   f"{self.process.stderr.read().decode(errors='replace')[-500:]}")
            if marker.exists() and marker.read_text().strip():
                return int(marker.read_text().split()[0])
            time.sleep(0.1)
        raise TimeoutError(f"chromium wrote no {marker.name} within {START_TIMEOUT_S} s")

    def call(self, method: str, **params) -> dict:
        """Send one DevTools command and return its result; events that arrive meanwhile are kept."""
        number = next(self.ids)
        self.ws.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == number:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)

    def wait_for(self, method: str) -> dict:
        for index, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(index)
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while time.monotonic() < deadline:
            message = json.loads(self.ws.recv())
            if message.get("method") == method:
                return message
            self.events.append(message)
        raise TimeoutError(f"no {method} within {STEP_TIMEOUT_S} s")

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def until(self, expression: str, what: str):
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"{what}: not within {STEP_TIMEOUT_S} s")

    def settled_requests(self) -> list[str]:
        """Wait until every request the page sent has finished or failed; return every URL asked, in order.

        A redirect keeps its request id and sends again: each hop's URL is in the list.
        """
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while True:
            asked = [e["params"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]
            sent = {params["requestId"]: params["request"]["url"] for params in asked}
            ended = {e["params"]["requestId"] for e in self.events
                     if e.get("method") in ("Network.loadingFinished", "Network.loadingFailed")}
            if set(sent) <= ended:
                return [params["request"]["url"] for params in asked]
            if time.monotonic() > deadline:
                raise TimeoutError(f"requests still open after {STEP_TIMEOUT_S} s: "
                                   f"{sorted(sent[rid] for rid in set(sent) - ended)}")
            self.evaluate("1")  # collects the events that have arrived meanwhile
            time.sleep(0.1)

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    def press(self, key: str, code: str, key_code: int) -> None:
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key=key, code=code,
                      windowsVirtualKeyCode=key_code, nativeVirtualKeyCode=key_code)

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@pytest.fixture
def chromium(tmp_path):
    binary = shutil.which("chromium")
    if not binary:
        need("Chromium", "the Debian chromium package is not installed")
    browser = Chromium(binary, tmp_path / "profile")
    yield browser
    browser.close()


PRESENT = "document.querySelector('.reveal .slides > section.present')"


def test_the_deployed_presentation_renders_and_moves_to_the_next_slide(deployed, chromium):
    chromium.call("Page.enable")
    chromium.call("Network.enable")
    chromium.call("Runtime.enable")
    chromium.call("Page.navigate", url=deployed.url)
    chromium.wait_for("Page.loadEventFired")
    chromium.until("typeof Reveal !== 'undefined' && Reveal.isReady()", "reveal.js ready")

    first = chromium.evaluate(f"{PRESENT}.textContent")  # innerText would carry the CSS upper case
    assert "Pinotage" in first
    assert chromium.evaluate("Reveal.getIndices().h") == 0
    assert chromium.evaluate(f"{PRESENT}.getBoundingClientRect().height") > 100, "the first slide has no height"
    chromium.screenshot(ARTIFACTS / "browser-first-slide.png")

    chromium.press("ArrowRight", "ArrowRight", 39)
    chromium.until("Reveal.getIndices().h === 1", "the next slide after ArrowRight")
    second = chromium.until(f"{PRESENT} && {PRESENT}.textContent", "the second slide's text")
    assert second and second != first
    chromium.screenshot(ARTIFACTS / "browser-second-slide.png")

    # Every request the page made (scripts, styles, fonts, the favicon) went to the deck's own server.
    requests = chromium.settled_requests()
    origin = urllib.parse.urlsplit(deployed.url)
    assert deployed.url in requests and len(requests) > 5, requests
    elsewhere = sorted({url for url in requests
                        if urllib.parse.urlsplit(url)[:2] != origin[:2] and not url.startswith("data:")})
    assert elsewhere == [], f"the deck asked hosts other than {origin.netloc}: {elsewhere}"
    # ...and each was answered: nothing the page names is missing from the export
    failed = [e["params"] for e in chromium.events if e.get("method") == "Network.loadingFailed"]
    answered = {e["params"]["response"]["url"]: e["params"]["response"]["status"]
                for e in chromium.events if e.get("method") == "Network.responseReceived"}
    assert failed == [], failed
    assert {url: status for url, status in answered.items() if status >= 400} == {}
    thrown = [e["params"]["exceptionDetails"].get("text") for e in chromium.events
              if e.get("method") == "Runtime.exceptionThrown"]
    assert thrown == [], f"the page threw: {thrown}"
    for name in ("browser-first-slide.png", "browser-second-slide.png"):
        assert (ARTIFACTS / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
