"""A GitHub REST API double on loopback: commit statuses, repository webhooks, token scopes, rate limits."""

from tests.fakes.github.server import FakeGithub

__all__ = ["FakeGithub"]
