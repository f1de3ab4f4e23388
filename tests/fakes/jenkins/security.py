"""Users, their API tokens and permissions, as Jenkins' matrix authorisation grants them.

A permission is named as Jenkins names it in its 403 pages, ``Group/Name``. Overall/Administer
implies every other. Job/ExtendedRead is off, as in a Jenkins that has not enabled it, so
reading a job's config.xml needs Job/Configure.
"""

from __future__ import annotations

import base64
import dataclasses
import secrets

ADMINISTER = "Overall/Administer"
PERMISSIONS = frozenset({
    ADMINISTER, "Overall/Read",
    "Job/Create", "Job/Delete", "Job/Configure", "Job/Read", "Job/Build", "Job/Discover",
    "View/Create", "View/Delete", "View/Configure", "View/Read",
    "Computer/Configure", "Computer/Create", "Computer/Delete", "Computer/Connect",
    "Credentials/View", "Credentials/Create", "Credentials/Update", "Credentials/Delete",
})


@dataclasses.dataclass(frozen=True)
class User:
    """A Jenkins user who signs in with an API token and holds these permissions."""

    name: str
    token: str
    permissions: frozenset[str] = frozenset({ADMINISTER})

    def __post_init__(self) -> None:
        unknown = set(self.permissions) - PERMISSIONS
        if unknown:
            raise ValueError(f"unknown Jenkins permission(s): {', '.join(sorted(unknown))}")
        object.__setattr__(self, "permissions", frozenset(self.permissions))

    def may(self, permission: str) -> bool:
        return ADMINISTER in self.permissions or permission in self.permissions


ANONYMOUS = User("anonymous", "", frozenset())
ANONYMOUS_ADMIN = User("anonymous", "", frozenset({ADMINISTER}))  # a Jenkins with security off


@dataclasses.dataclass(frozen=True)
class Verdict:
    """Who a request is, or why Jenkins refuses it (status and message)."""

    user: User = ANONYMOUS
    status: int = 0
    message: str = ""


def authenticate(users: dict[str, User], authorization: str) -> Verdict:
    """Decide who sent a request from its Authorization header; with no users, security is off."""
    if not users:
        return Verdict(ANONYMOUS_ADMIN)
    if not authorization:
        return Verdict(ANONYMOUS)
    scheme, _, encoded = authorization.partition(" ")
    try:
        name, _, token = base64.b64decode(encoded).decode("utf-8").partition(":")
    except ValueError:
        name, token = "", ""
    user = users.get(name)
    if scheme.lower() != "basic" or user is None or not secrets.compare_digest(token, user.token):
        return Verdict(status=401, message=f"Invalid password/token for user: {name}")
    return Verdict(user)


def missing(user: User, permission: str) -> str:
    """Return the message of Jenkins' 403 when the user lacks a permission, else ""."""
    if user.may(permission):
        return ""
    return f"{user.name} is missing the {permission} permission"
