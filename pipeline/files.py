"""Read and write the files Pinotage keeps or is given, so that a bad one is one clear line.

Every file Pinotage reads (configuration, state file, ledger, kubeconfig, job YAML, Jenkinsfile)
goes through ``read_text``: a directory, a missing file, a file too large or one that is not
UTF-8 text is ``BadInput`` naming the file and quoting none of it (a kubeconfig holds
credentials). Files Pinotage writes whole go through ``write_atomic``: a crash or a full disk
leaves the old file whole and no temporary file behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from pathlib import Path
from typing import Iterator

from pipeline.errors import BadInput

MAX_FILE_BYTES = 4 * 1024 * 1024  # far above any real configuration, ledger or kubeconfig


def read_text(path: str | os.PathLike, *, what: str = "file", limit_bytes: int = MAX_FILE_BYTES,
              hint: str = "", name: str = "") -> str:
    """Return a text file's content; raise BadInput naming the file (or ``name``) when it is not readable text."""
    name = name or str(path)
    try:
        with open(path, "rb") as f:
            data = f.read(limit_bytes + 1)
    except FileNotFoundError:
        raise BadInput(f"{name}: no such {what}", hint=hint) from None
    except IsADirectoryError:
        raise BadInput(f"{name}: is a directory, expected a {what}", hint=hint) from None
    except OSError as e:
        raise BadInput(f"{name}: cannot read the {what}: {e.strerror}", hint=hint) from None
    if len(data) > limit_bytes:
        raise BadInput(f"{name}: the {what} is larger than {limit_bytes // 1024} KiB", hint=hint)
    return decode(data, where=name, what=what, hint=hint)


def decode(data: bytes, *, where: str, what: str = "file", hint: str = "", name_line: bool = True) -> str:
    """Decode UTF-8 text; raise BadInput naming the line of the first bad byte, quoting nothing.

    ``name_line=False`` when ``where`` already names the line (one line of a file).
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        number = data.count(b"\n", 0, e.start) + 1
        line = f":{number}" if name_line else ""
        raise BadInput(f"{where}{line}: the {what} is not UTF-8 text (a bad byte at offset {e.start})",
                       hint=hint) from None
    if "\x00" in text:
        number = text.count("\n", 0, text.index("\x00")) + 1
        line = f":{number}" if name_line else ""
        raise BadInput(f"{where}{line}: the {what} is binary, not text (it holds a NUL byte)", hint=hint)
    return text


def write_atomic(path: str | os.PathLike, data: bytes, *, mode: int = 0o644) -> None:
    """Replace a file whole: write a temporary file, fsync it, rename it over, fsync the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte: os.write may write fewer than asked (a signal, a full pipe or disk)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError("write wrote nothing")
        view = view[written:]


@contextlib.contextmanager
def locked(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on PATH.lock while the block runs (for read-modify-write of PATH)."""
    lock_path = Path(f"{path}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def cache_dir(environ) -> Path | None:
    """Return Pinotage's cache folder for this user ($XDG_CACHE_HOME/pinotage, else ~/.cache/pinotage), or None."""
    cache = environ.get("XDG_CACHE_HOME") or (f"{environ['HOME']}/.cache" if environ.get("HOME") else "")
    return Path(cache, "pinotage") if cache else None


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
