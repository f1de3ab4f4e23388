"""Git facts for the build context and the deploy order: commit, branch, dirty state, ancestry.

Everything goes through gitpython on a real repository; nothing here changes the repository.
"""

from __future__ import annotations

import re
import urllib.parse

from pipeline.errors import BadInput

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def open_repo(path: str):
    """Open the git repository that holds path (searching parent folders)."""
    import git

    try:
        return git.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as e:
        raise BadInput(f"{path}: not inside a git checkout",
                       hint="run from a clone of the repository, or set GIT_COMMIT and BRANCH_NAME as Jenkins does") from e


def head_commit(repo) -> str:
    """Return the full hash of HEAD."""
    import git

    try:
        return repo.head.commit.hexsha
    except (ValueError, git.BadName) as e:
        raise BadInput(f"{repo.working_dir}: the repository has no commit yet",
                       hint="commit something first") from e


def current_branch(repo) -> str:
    """Return the checked-out branch, or "" on a detached HEAD."""
    return "" if repo.head.is_detached else repo.active_branch.name


def tag_at_head(repo) -> str:
    """Return a tag that points at HEAD ("" when none does); the newest name sorts last."""
    head = repo.head.commit.hexsha
    names = sorted(tag.name for tag in repo.tags if tag.commit.hexsha == head)
    return names[-1] if names else ""


def is_dirty(repo) -> bool:
    """Say whether the work tree differs from HEAD (untracked files count: they reach the image)."""
    return repo.is_dirty(untracked_files=True)


def origin_url(repo) -> str:
    """Return the origin remote's URL without any user or token in it ("" when there is none)."""
    try:
        url = repo.remotes.origin.url
    except (AttributeError, IndexError):
        return ""
    return strip_userinfo(url)


def strip_userinfo(url: str) -> str:
    """Drop "user:token@" from an http(s) URL: a clone URL can carry a credential."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("http", "https") and "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        return urllib.parse.urlunsplit(parts._replace(netloc=host))
    return url


def is_strict_ancestor(repo, older: str, newer: str) -> bool:
    """Say whether older is an ancestor of newer and not the same commit.

    A commit the checkout does not know (a shallow clone, a force-pushed history) cannot be
    shown to be older, so the answer is False: the deploy goes ahead rather than being blocked
    by a history we cannot see.
    """
    import git

    if older == newer:
        return False
    try:
        return repo.is_ancestor(older, newer)
    except (git.GitCommandError, ValueError):
        return False
