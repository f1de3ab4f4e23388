"""Commit statuses against the GitHub API double on loopback."""

from __future__ import annotations

import pytest

from pipeline import github
from pipeline.errors import GithubError
from tests.fakes.github import FakeGithub

SHA = "c" * 40
TOKEN = "ghp_fake_token_for_tests"


@pytest.fixture
def hub():
    with FakeGithub(token=TOKEN, repos=("acme/slides",)) as fake:
        yield fake


@pytest.mark.parametrize("state", github.STATES)
def test_each_state_is_created(hub, state):
    github.report(hub.url, "acme/slides", SHA, state, token=TOKEN, description="d" * 200, target_url="https://ci/7/")
    [created] = hub.statuses[("acme/slides", SHA)]
    assert (created["state"], created["context"], created["target_url"]) == (state, "pinotage", "https://ci/7/")
    assert len(created["description"]) == github.DESCRIPTION_MAX


@pytest.mark.parametrize("slug, sha, token, code, hint", [
    ("acme/slides", SHA, "wrong", "401 Bad credentials", "PINOTAGE_GITHUB_TOKEN was refused"),
    ("acme/other", SHA, TOKEN, "404 Not Found", "check github.repo"),
    ("acme/slides", "nothex", TOKEN, "422 No commit found for SHA: nothex", ""),
], ids=["bad-token", "unknown-repo", "unknown-sha"])
def test_refusals_carry_githubs_message(hub, slug, sha, token, code, hint):
    with pytest.raises(GithubError) as caught:
        github.report(hub.url, slug, sha, "success", token=token)
    assert caught.value.message.endswith(code)
    assert hint in caught.value.hint
    assert token not in caught.value.message + caught.value.hint
    assert hub.statuses == {}


def test_unreachable_api_is_one_clear_error():
    with FakeGithub(token=TOKEN, repos=()) as gone:
        url = gone.url
    with pytest.raises(GithubError, match="cannot reach"):
        github.report(url, "acme/slides", SHA, "pending", token=TOKEN)


@pytest.mark.parametrize("configured, source, slug", [
    ("acme/slides", "https://github.com/other/x.git", "acme/slides"),
    ("", "https://github.com/acme/slides.git", "acme/slides"),
    ("", "git@github.com:acme/slides.git", "acme/slides"),
    ("", "https://gitlab.example/acme/slides.git", ""),
], ids=["configured-wins", "https-clone", "ssh-clone", "not-github"])
def test_repo_slug(configured, source, slug):
    assert github.repo_slug(configured, source) == slug


@pytest.mark.parametrize("method, path", [
    ("GET", "/user"), ("DELETE", "/repos/acme/slides/statuses/" + SHA), ("POST", "/repos/acme/slides/issues"),
], ids=["unknown-route", "wrong-method", "other-api"])
def test_the_double_refuses_what_it_does_not_know(hub, method, path):
    import requests

    answer = requests.request(method, hub.url + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert answer.status_code == 404 and answer.json()["message"] == "Not Found"
