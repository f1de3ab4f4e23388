"""Commit statuses and the repository webhook against the GitHub API double on loopback."""

from __future__ import annotations

import pytest
import requests

from pipeline import github
from pipeline.errors import BadInput, GithubError
from tests.fakes.github import FakeGithub

SHA = "c" * 40
TOKEN = "ghp_fake_token_for_tests"
SECRET = "hook-secret-for-tests"
SLUG = "acme/slides"
HOOK_URL = "https://jenkins.example.com/github-webhook/"


@pytest.fixture
def hub():
    with FakeGithub(token=TOKEN, repos=(SLUG,)) as fake:
        yield fake


def ensure(hub, *, token=TOKEN, url=HOOK_URL, dry_run=False):
    return github.ensure_hook(hub.url, SLUG, token=token, url=url, secret=SECRET, dry_run=dry_run)


# --- statuses -------------------------------------------------------------------

@pytest.mark.parametrize("state", github.STATES)
def test_each_state_is_created(hub, state):
    github.report(hub.url, SLUG, SHA, state, token=TOKEN, description="d" * 200, target_url="https://ci/7/")
    [created] = hub.statuses[(SLUG, SHA)]
    assert (created["state"], created["context"], created["target_url"]) == (state, "pinotage", "https://ci/7/")
    assert len(created["description"]) == github.DESCRIPTION_MAX


@pytest.mark.parametrize("slug, sha, code, hint", [
    ("acme/other", SHA, "404 Not Found", "check github.repo"),
    (SLUG, "nothex", "422 No commit found for SHA: nothex", ""),
], ids=["unknown-repo", "unknown-sha"])
def test_refusals_carry_githubs_message(hub, slug, sha, code, hint):
    with pytest.raises(GithubError) as caught:
        github.report(hub.url, slug, sha, "success", token=TOKEN)
    assert caught.value.message.endswith(code)
    assert hint in caught.value.hint
    assert TOKEN not in caught.value.message + caught.value.hint
    assert hub.statuses == {}


def test_a_refused_token_is_one_clear_line(hub):
    with pytest.raises(GithubError) as caught:
        github.report(hub.url, SLUG, SHA, "success", token="wrong")
    assert caught.value.lines() == [caught.value.message] and caught.value.hint == ""
    assert "401 Bad credentials" in caught.value.message and "PINOTAGE_GITHUB_TOKEN" in caught.value.message
    assert [r.status for r in hub.requests] == [401], "a 401 is not retried"


def test_a_token_without_status_scope_is_told_which_it_needs():
    with FakeGithub(token=TOKEN, repos=(SLUG,), scopes=("read:org",)) as hub:
        with pytest.raises(GithubError) as caught:
            github.report(hub.url, SLUG, SHA, "pending", token=TOKEN)
    assert "the token grants read:org; it needs repo or repo:status" in caught.value.hint


@pytest.mark.parametrize("status", [403, 429], ids=["403-secondary", "429"])
def test_a_rate_limited_status_is_retried_after_the_time_github_asks(hub, status):
    hub.throttle(retry_after_s=1, status=status)
    github.report(hub.url, SLUG, SHA, "success", token=TOKEN)
    first, second = hub.requests
    assert (first.status, second.status) == (status, 201)
    assert second.at - first.at >= 1.0
    assert hub.early_retries == 0 and hub.states(SLUG, SHA) == ["success"]


def test_retries_are_bounded():
    waits = []
    with FakeGithub(token=TOKEN, repos=(SLUG,)) as hub:
        hub.throttle(retry_after_s=2, times=github.RETRIES + 1)
        with pytest.raises(GithubError, match="rate limit still holds after 4 attempts"):
            github.report(hub.url, SLUG, SHA, "success", token=TOKEN, sleep=waits.append)
    assert waits == [2.0] * github.RETRIES
    assert hub.statuses == {}


def test_a_wait_longer_than_the_bound_is_not_waited_for(hub):
    waits = []
    hub.throttle(retry_after_s=github.RETRY_WAIT_MAX_S + 1)
    with pytest.raises(GithubError, match=r"still holds after 1 attempt \(it asks to wait 91 s\)"):
        github.report(hub.url, SLUG, SHA, "success", token=TOKEN, sleep=waits.append)
    assert waits == [] and hub.statuses == {}


@pytest.mark.parametrize("status, message, headers, wait", [
    (403, "You have exceeded a secondary rate limit.", {"Retry-After": "7"}, 7.0),
    (429, "", {"Retry-After": "3"}, 3.0),
    (403, "API rate limit exceeded for user ID 1.", {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1010"}, 11.0),
    (403, "You have exceeded a secondary rate limit.", {}, 60.0),
    (403, "Resource not accessible by integration", {"x-ratelimit-remaining": "4999"}, None),
    (404, "Not Found", {"Retry-After": "5"}, None),
], ids=["secondary-retry-after", "429", "primary-reset", "secondary-no-header", "403-permission", "404"])
def test_rate_limit_wait(status, message, headers, wait):
    assert github.rate_limit_wait(status, message, headers, now=1000.0) == wait


def test_unreachable_api_is_one_clear_error():
    with FakeGithub(token=TOKEN, repos=()) as gone:
        url = gone.url
    with pytest.raises(GithubError, match="cannot reach"):
        github.report(url, SLUG, SHA, "pending", token=TOKEN)


@pytest.mark.parametrize("configured, source, slug", [
    (SLUG, "https://github.com/other/x.git", SLUG),
    ("", "https://github.com/acme/slides.git", SLUG),
    ("", "git@github.com:acme/slides.git", SLUG),
    ("", "https://gitlab.example/acme/slides.git", ""),
], ids=["configured-wins", "https-clone", "ssh-clone", "not-github"])
def test_repo_slug(configured, source, slug):
    assert github.repo_slug(configured, source) == slug


# --- the webhook ------------------------------------------------------------------

def test_hook_is_created_with_the_fields_jenkins_needs(hub):
    assert ensure(hub).action == "create"
    [hook] = hub.hooks[SLUG]
    assert (hook["events"], hook["active"], hook["config"]) == (
        ["pull_request", "push"], True,
        {"url": HOOK_URL, "content_type": "json", "insecure_ssl": "0", "secret": "********"})
    assert hub.store.secrets[hook["id"]] == SECRET


def test_second_run_writes_nothing(hub):
    ensure(hub)
    writes = len(hub.writes())
    change = ensure(hub)
    assert change.action == "none" and len(hub.writes()) == writes == 1


@pytest.mark.parametrize("existing, differs", [
    ({"events": ["push"]}, "events push -> pull_request,push"),
    ({"config": {"url": HOOK_URL, "content_type": "form", "secret": SECRET}}, "content type form -> json"),
    ({"config": {"url": HOOK_URL, "content_type": "json"}}, "no secret -> secret set"),
    ({"config": {"url": HOOK_URL, "content_type": "json", "secret": SECRET, "insecure_ssl": "1"}},
     "insecure_ssl 1 -> 0"),
    ({"active": False}, "inactive -> active"),
], ids=["events", "content-type", "no-secret", "insecure-ssl", "inactive"])
def test_a_differing_hook_is_patched_then_left_alone(hub, existing, differs):
    body = {"name": "web", "active": True, "events": ["push", "pull_request"],
            "config": {"url": HOOK_URL, "content_type": "json", "secret": SECRET}, **existing}
    made = requests.post(f"{hub.url}/repos/{SLUG}/hooks", json=body, timeout=5,
                         headers={"Authorization": f"token {TOKEN}"})
    assert made.status_code == 201, made.text
    dry = ensure(hub, dry_run=True)
    assert (dry.action, dry.differs) == ("update", (differs,)) and len(hub.writes()) == 1
    assert ensure(hub).action == "update"
    assert [r.method for r in hub.writes()] == ["POST", "PATCH"]
    [hook] = hub.hooks[SLUG]
    assert github.plan_hook([hook], HOOK_URL).action == "none"
    assert hub.store.secrets[hook["id"]] == SECRET


def test_dry_run_writes_nothing(hub):
    change = ensure(hub, dry_run=True)
    assert change.action == "create" and hub.writes() == [] and hub.hooks == {}


@pytest.mark.parametrize("scopes", [("repo:status", "read:repo_hook"), ()], ids=["read-only", "no-scope"])
def test_a_token_without_admin_repo_hook_is_one_line(scopes):
    with FakeGithub(token=TOKEN, repos=(SLUG,), scopes=scopes) as hub:
        with pytest.raises(BadInput) as caught:
            ensure(hub)
        assert hub.writes() == []
    assert caught.value.lines() == [caught.value.message] and "not admin:repo_hook" in caught.value.message


def test_a_refused_token_is_one_line_for_the_hook(hub):
    with pytest.raises(GithubError) as caught:
        ensure(hub, token="expired")
    assert caught.value.lines() == [caught.value.message] and "401 Bad credentials" in caught.value.message


def test_a_delivery_is_signed_and_its_answer_recorded(hub):
    import hashlib
    import hmac
    import http.server
    import threading

    seen = {}

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen["signature"], seen["body"] = self.headers["X-Hub-Signature-256"], body
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ensure(hub, url=f"http://127.0.0.1:{server.server_address[1]}/github-webhook/")
        [hook] = hub.hooks[SLUG]
        assert hub.deliver(SLUG, hook["id"], "push", {"ref": "refs/heads/master"}) == 200
    finally:
        server.shutdown()
        server.server_close()
    expected = hmac.new(SECRET.encode(), seen["body"], hashlib.sha256).hexdigest()
    assert seen["signature"] == f"sha256={expected}"
    deliveries = requests.get(f"{hub.url}/repos/{SLUG}/hooks/{hook['id']}/deliveries", timeout=5,
                              headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert [(d["event"], d["status_code"], d["status"]) for d in deliveries] == [("push", 200, "OK")]
    assert hub.hooks[SLUG][0]["last_response"] == {"code": 200, "status": "active", "message": "OK"}


# --- the double refuses what GitHub refuses -------------------------------------------

@pytest.mark.parametrize("method, path, body, code, message", [
    ("GET", "/user", None, 404, "Not Found"),
    ("DELETE", f"/repos/{SLUG}/statuses/{SHA}", None, 404, "Not Found"),
    ("POST", f"/repos/{SLUG}/issues", {}, 404, "Not Found"),
    ("POST", f"/repos/{SLUG}/hooks", {"config": {"url": "ftp://x"}}, 422, "Validation Failed"),
    ("POST", f"/repos/{SLUG}/hooks", {"config": {"url": HOOK_URL, "content_type": "xml"}}, 422, "Validation Failed"),
    ("POST", f"/repos/{SLUG}/hooks", {"config": {"url": HOOK_URL}, "events": ["pushes"]}, 422, "Validation Failed"),
    ("POST", f"/repos/{SLUG}/hooks", {"config": {"url": HOOK_URL}, "colour": "red"}, 422, "Invalid request"),
    ("POST", f"/repos/{SLUG}/hooks", {"events": ["push"]}, 422, "Invalid request"),
    ("POST", f"/repos/{SLUG}/statuses/{SHA}", {"state": "success", "extra": 1}, 422, "Invalid request"),
    ("PATCH", f"/repos/{SLUG}/hooks/99", {"active": True}, 404, "Not Found"),
], ids=["unknown-route", "wrong-method", "other-api", "hook-url", "content-type", "unknown-event", "unknown-key",
        "no-config", "status-unknown-key", "unknown-hook"])
def test_the_double_refuses_what_it_does_not_know(hub, method, path, body, code, message):
    answer = requests.request(method, hub.url + path, json=body, timeout=5,
                              headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == code and answer.json()["message"].startswith(message)


def test_the_double_sends_scopes_and_rate_limit_headers(hub):
    answer = requests.get(f"{hub.url}/repos/{SLUG}/hooks", timeout=5, headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.headers["X-OAuth-Scopes"] == "repo, admin:repo_hook"
    assert "admin:repo_hook" in answer.headers["X-Accepted-OAuth-Scopes"]
    assert answer.headers["x-ratelimit-remaining"] == "4999"
    refused = requests.get(f"{hub.url}/repos/{SLUG}/hooks", timeout=5,
                           headers={"Authorization": f"Bearer {TOKEN}", "X-GitHub-Api-Version": "1999-01-01"})
    assert refused.status_code == 400


def test_the_double_keeps_throttling_an_early_retry(hub):
    hub.throttle(retry_after_s=5)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    statuses = [requests.get(f"{hub.url}/repos/{SLUG}/hooks", headers=auth, timeout=5).status_code for _ in range(2)]
    assert statuses == [403, 403] and hub.early_retries == 1


# --- pull requests (preview prune) ---------------------------------------------------------

@pytest.mark.parametrize("close, merged, state", [(False, False, "open"), (True, False, "closed"),
                                                  (True, True, "merged")], ids=["open", "closed", "merged"])
def test_pull_state(hub, close, merged, state):
    hub.open_pull(SLUG, 7, "b" * 40)
    if close:
        hub.close_pull(SLUG, 7, merged=merged)
    assert github.pull_state(hub.url, SLUG, "7", token=TOKEN) == state


def test_a_pull_request_github_does_not_show_is_an_error_never_gone(hub):
    with pytest.raises(GithubError) as refused:
        github.pull_state(hub.url, SLUG, "999", token=TOKEN)
    assert "404 Not Found" in refused.value.message and "not visible to this token" in refused.value.hint
    with FakeGithub(token=TOKEN, repos=(SLUG,), scopes=("read:org",)) as narrow:
        narrow.open_pull(SLUG, 7, "b" * 40)
        with pytest.raises(GithubError) as hidden:
            github.pull_state(narrow.url, SLUG, "7", token=TOKEN)
    assert "it needs repo or public_repo" in hidden.value.hint
