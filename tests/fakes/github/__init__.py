"""A GitHub REST API double on loopback: commit statuses, repository webhooks, pull requests, token scopes, rate limits."""

from tests.fakes.github.server import FakeGithub

__all__ = ["FakeGithub"]
