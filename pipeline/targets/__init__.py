"""Deploy targets: the local Docker engine (the embedded default) and a Kubernetes cluster.

Every target offers the same verbs, so ``runner.py`` never asks which one it has:

- ``deployed() -> Release | None``: what is live now, read from the target itself;
- ``deploy(release, *, is_ancestor, progress) -> Deployment``: put the release live and gate it.
  Before writing, refuse (``DeployRefused``) a commit for which ``is_ancestor(release.commit,
  live.commit)`` is true, deciding on the state just read (a Kubernetes 409 re-reads and re-decides).
  On a failed gate, return to the previous release by itself, then raise ``DeployFailed`` with
  ``rolled_back``, ``returned_to`` (the release serving again) and ``revision``;
- ``rollback(to_commit=None, *, progress) -> Deployment``: return to the previous successful
  deploy, or the named one; refuse when a newer deploy has landed since. The Deployment's
  ``release`` is the release returned to; a failure names it in ``DeployFailed.attempted``;
- ``stage(release, *, progress) -> Staged | None``: start the release before its image is pushed
  (no digest yet), for the smoke test to check (``Staged.container`` answering at ``Staged.url``);
  the ``deploy`` of a release with the same ledger id may route to it, and nothing is served from
  it before that. The caller ``discard()``s it after the deploy, or when the run ends before one.
  None: nothing can be staged (a cluster's nodes pull from the registry);
- ``ledger() -> Ledger``: the storage of the deploy records (a file, or the cluster);
- ``url() -> str``: where the release is served, "" when the target cannot know (a cluster's
  Service and ingress are not the target's to read).

A target never writes a ledger record: ``runner.py`` writes one per deploy or rollback attempt,
from what the target returned or raised, with every phase's duration.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from pipeline.ledger import Ledger
from pipeline.shell import Progress
from pipeline.state import Deployment, Release

IsAncestor = Callable[[str, str], bool]  # (older, newer): is older a strict ancestor of newer?

__all__ = ["IsAncestor", "Progress", "Staged", "Target"]


class Staged(Protocol):
    container: Any  # the docker SDK container the smoke test probes
    url: str  # where it answers, on loopback

    def discard(self) -> None: ...


class Target(Protocol):
    name: str

    def deployed(self) -> Release | None: ...

    def deploy(self, release: Release, *, is_ancestor: IsAncestor, progress: Progress) -> Deployment: ...

    def stage(self, release: Release, *, progress: Progress) -> Staged | None: ...

    def rollback(self, to_commit: str | None = None, *, progress: Progress) -> Deployment: ...

    def ledger(self) -> Ledger: ...

    def url(self) -> str: ...
