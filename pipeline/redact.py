"""Mask secrets in everything Pinotage prints, as Jenkins masks the credentials a build binds.

The CLI wraps standard output and standard error in ``RedactingStream`` for the whole command:
every line printed (progress, errors, summaries, a command's output, a traceback) has the value
of every secret the process has read replaced by ``****``, and the password in any URL
(``https://user:token@host``) masked. A message someone forgot to check cannot leak a secret.

A secret is known once the process reads it: ``config.secret()``, the one way a phase reads a
secret from the environment, and the readers of credential files (a kubeconfig's token) give
each value to ``remember``; a secret no phase needed is never read, not even to mask it. The set
of remembered values is the one piece of process-wide state in Pinotage, on purpose: the point is
that no caller has to pass it on.
"""

from __future__ import annotations

import contextlib
import re
import sys
from typing import Iterable, Iterator, TextIO

MASK = "****"
MIN_SECRET_CHARS = 4  # shorter values would mask ordinary words; no real secret is that short
# scheme://userinfo@ -- the userinfo is a user and password, or a token alone
URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^\s/@:]*)(?P<password>:[^\s/@]*)?@")

_remembered: set[str] = set()


def remember(*values: str | None) -> None:
    """Mask these values from now on in everything the command prints."""
    for value in values:
        _remembered.update(_forms(value or ""))


def mask_urls(text: str) -> str:
    """Mask the credentials of every URL in ``text``: the password, or a token given as the user."""
    def masked(match: re.Match) -> str:
        if match.group("password") is not None:
            return f"{match.group('scheme')}{match.group('user')}:{MASK}@"
        return f"{match.group('scheme')}{MASK}@"

    return URL_USERINFO.sub(masked, text)


def redact(text: str, values: Iterable[str] = ()) -> str:
    """Mask URL credentials and every known secret value in ``text``."""
    known = sorted(set(values) | _remembered, key=len, reverse=True)  # longest first: no partial masks
    for value in known:
        if value in text:
            text = text.replace(value, MASK)
    return mask_urls(text)


class RedactingStream:
    """A text stream that masks secrets line by line before passing text on."""

    def __init__(self, stream: TextIO, values: Iterable[str] = ()):
        self.stream = stream
        self.values = [form for value in values for form in _forms(value)]
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        if "\n" in self._pending:
            complete, _, self._pending = self._pending.rpartition("\n")
            self.stream.write(redact(complete + "\n", self.values))
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self.stream.write(redact(self._pending, self.values))
            self._pending = ""
        self.stream.flush()

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """Redact sys.stdout and sys.stderr while the block runs."""
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RedactingStream(out), RedactingStream(err)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        sys.stdout, sys.stderr = out, err
        _remembered.clear()  # a test may run many commands in one process


def _forms(value: str) -> list[str]:
    """Return the forms a secret may be printed in: whole, stripped, and each of its lines."""
    forms = {value, value.strip(), *value.splitlines()}
    forms |= {form.strip() for form in list(forms)}
    return [form for form in forms if len(form) >= MIN_SECRET_CHARS]
