"""Remember which (rendered job, live config) pairs compared the same, byte for byte.

Pinotage keeps no copy of Jenkins' state: every update reads every job's live config. Comparing a
job parses both XML documents, and a job unchanged since the last update has the very same two
byte strings as then, so its verdict is looked up by their digest instead. An edit in Jenkins or
in jobs/ changes the bytes, and that job is compared in full; a change to the comparison itself
(compare.py) or to the Python running it starts afresh. The file is an optimisation only:
unreadable, it is ignored.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import tempfile
from pathlib import Path
from typing import AbstractSet, Iterable, Mapping

from pipeline import files

DIGEST_BYTES = 32
FILE_NAME = "jobs-same-pairs"


def key(rendered: bytes, live: str) -> bytes:
    """The digest of one pair, salted with the comparison's own source."""
    digest = hashlib.sha256(_salt())
    digest.update(hashlib.sha256(rendered).digest())
    digest.update(live.encode("utf-8"))
    return digest.digest()


def load(environ: Mapping[str, str]) -> frozenset[bytes]:
    """Read the pairs the last update found the same; none when there is no such file or it is damaged."""
    path = _path(environ)
    try:
        data = path.read_bytes() if path else b""
    except OSError:
        return frozenset()
    if len(data) % DIGEST_BYTES:
        return frozenset()
    return frozenset(data[i:i + DIGEST_BYTES] for i in range(0, len(data), DIGEST_BYTES))


def save(environ: Mapping[str, str], keys: Iterable[bytes], before: AbstractSet[bytes]) -> None:
    """Replace the file with these pairs (when they differ from those read); a failure to write is ignored."""
    keys = frozenset(keys)
    path = _path(environ)
    if path is None or keys == before:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("wb", dir=path.parent, prefix=f".{FILE_NAME}.", delete=False) as out:
            out.write(b"".join(sorted(keys)))
    except OSError:
        return
    try:
        os.replace(out.name, path)  # whole or not at all, for a concurrent update reading it
    except OSError:
        Path(out.name).unlink(missing_ok=True)


def _path(environ: Mapping[str, str]) -> Path | None:
    cache = files.cache_dir(environ)
    return cache / FILE_NAME if cache else None


@functools.lru_cache(maxsize=1)
def _salt() -> bytes:
    """The comparison's source and the Python that parses the XML: a change to either starts afresh."""
    return hashlib.sha256(Path(__file__).with_name("compare.py").read_bytes() + sys.version.encode()).digest()
