"""The deploy ledger: one record per deploy attempt, written by the runner, stored by the target.

Only ``pipeline/runner.py`` appends records (deploys and rollbacks alike); a target provides the
storage through its ``ledger()``: the local target a JSON-lines file under the state directory
(``FileLedger``), the Kubernetes target a ConfigMap in the cluster. ``pinotage history`` prints it.

Outcomes: ``deployed`` (the record's release went live: a deploy, or a rollback to it),
``rolled-back`` (the release failed and the previous one serves again; the message names it),
``failed`` (it failed and nothing was returned to) and ``refused`` (never attempted: older than
the live release).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import fcntl
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any, Callable, Protocol

from pipeline import files, records
from pipeline.errors import BadInput, DeployRefused, LedgerWriteFailed, UnknownRelease
from pipeline.state import Image, Release

class DeployOutcome(enum.StrEnum):
    """How a deploy or rollback attempt ended (a record's ``outcome``; the module docstring says each)."""

    DEPLOYED = "deployed"
    ROLLED_BACK = "rolled-back"
    FAILED = "failed"
    REFUSED = "refused"


OUTCOMES = tuple(outcome.value for outcome in DeployOutcome)
MAX_LEDGER_BYTES = 64 * 1024 * 1024  # some hundred thousand deploys
MAX_RECORD_BYTES = 1024 * 1024  # a record is under 1 KiB; a torn one is cut back at most this far
EDITED_HINT = "the ledger was edited by hand? fix or remove that line"


@dataclasses.dataclass(frozen=True)
class Record:
    id: str  # unique per attempt; also annotated on what the deploy wrote
    app: str
    commit: str
    image: str  # name@digest
    target: str
    build_url: str
    started_at: str  # ISO 8601, UTC
    finished_at: str
    outcome: str  # a DeployOutcome value
    phases_s: dict[str, float] = dataclasses.field(default_factory=dict)  # phase -> duration
    message: str = ""
    revision: str = ""  # the target's revision of what serves after the attempt ("" when unknown)
    sbom: str = ""  # the digest of the image's SBOM (pipeline/sbom.py); "" when the build did not write one
    packages: tuple[str, ...] = ()  # "name@version" of the npm packages the image ships


class Ledger(Protocol):
    def append(self, record: Record) -> None: ...

    def records(self) -> list[Record]:
        """Return every record, oldest first."""
        ...


def new_id() -> str:
    """Return a fresh record id: its UTC time first, so ids sort by when they started."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)


def now() -> str:
    """Return the current UTC time in ISO 8601, as records hold it."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def record_to_json(record: Record) -> dict[str, Any]:
    return dataclasses.asdict(record)


def record_from_json(data: Any, *, where: str) -> Record:
    """Rebuild a record, naming where it came from when it is not one."""
    record = records.build(Record, data, where=where, what="a deploy record", hint=EDITED_HINT)
    if record.outcome not in OUTCOMES:
        raise BadInput(f"{where}: outcome {record.outcome[:40]!r} is not one of {', '.join(OUTCOMES)}",
                       hint=EDITED_HINT)
    return record


def _warn(line: str) -> None:
    print(f"pinotage: warning: {line}", file=sys.stderr)


class FileLedger:
    """Keep records as JSON lines in one file; appends are locked and flushed to disk."""

    def __init__(self, path: str | os.PathLike, *, warn: Callable[[str], None] = _warn):
        self.path = Path(path)
        self.warn = warn

    def append(self, record: Record) -> None:
        line = (json.dumps(record_to_json(record), sort_keys=True) + "\n").encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # O_APPEND plus a lock: two pipelines finishing together each add one whole line.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                _drop_torn_line(fd, self.path, self.warn)
                files.write_all(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            raise LedgerWriteFailed(f"{self.path}: the record {record.id} was not written"
                                    f" ({e.strerror or type(e).__name__})") from None

    def records(self) -> list[Record]:
        """Return every record, oldest first; a last line a crash cut short is reported and skipped."""
        if not self.path.exists():
            return []
        lines = _read_bytes(self.path).split(b"\n")
        out = []
        for number, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            where = f"{self.path}:{number}"
            torn = number == len(lines)  # the file does not end with a newline: the append was cut
            try:
                text = files.decode(raw, where=where, what="ledger line", hint=EDITED_HINT, name_line=False)
                out.append(record_from_json(_json(text, where), where=where))
            except BadInput:
                if not torn:
                    raise
                self.warn(f"{where}: the last record is cut short (a crash while it was written?);"
                          " skipped it")
        return out


def _drop_torn_line(fd: int, path: Path, warn: Callable[[str], None]) -> None:
    """Cut a last line a crash left unfinished, so the next record starts a line of its own."""
    size = os.fstat(fd).st_size
    if not size or os.pread(fd, 1, size - 1) == b"\n":
        return
    tail = os.pread(fd, min(size, MAX_RECORD_BYTES), size - min(size, MAX_RECORD_BYTES))
    keep = size - len(tail) + tail.rfind(b"\n") + 1
    os.ftruncate(fd, keep)
    warn(f"{path}: removed a last record a crash cut short ({size - keep} bytes)")


def _read_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_LEDGER_BYTES + 1)
    except IsADirectoryError:
        raise BadInput(f"{path}: is a directory, expected the ledger file") from None
    except OSError as e:
        raise BadInput(f"{path}: cannot read the ledger: {e.strerror}") from None
    if len(data) > MAX_LEDGER_BYTES:
        raise BadInput(f"{path}: the ledger is larger than {MAX_LEDGER_BYTES // 1024 // 1024} MiB",
                       hint="move it aside: the next deploy starts a new one")
    return data


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise BadInput(f"{where}: not JSON ({e.msg})", hint=EDITED_HINT) from None
    except (ValueError, RecursionError):
        raise BadInput(f"{where}: not a deploy record (its JSON nests too deep or a number is too long)",
                       hint=EDITED_HINT) from None


def last_deployed(records: list[Record]) -> Record | None:
    """Return the newest record whose deploy went live."""
    return next((r for r in reversed(records) if r.outcome == DeployOutcome.DEPLOYED), None)


def pick_rollback(records: list[Record], *, live: Release | None, to_commit: str | None) -> Record:
    """Choose the record a rollback returns to: the newest successful deploy of ``to_commit`` (a
    commit prefix), or else the newest successful deploy of something other than what is live.

    Only ``deployed`` records put their own release live (a ``rolled-back`` one failed), and only
    one with an image by digest can be deployed again. Raise ``UnknownRelease`` when ``to_commit``
    matches no such record, ``DeployRefused`` when nothing earlier exists or the chosen one is live.
    """
    live_commit = live.commit if live is not None else ""
    live_image = live.image.pinned if live is not None and live.image.digest else ""

    def is_live(record: Record) -> bool:
        return bool(live_image and record.image == live_image or live_commit and record.commit == live_commit)

    good = [r for r in records if r.outcome == DeployOutcome.DEPLOYED and "@" in r.image]
    if not to_commit:
        earlier = [r for r in good if not is_live(r)]
        if not earlier:
            raise DeployRefused("there is no earlier successful deploy to roll back to", hint="see 'pinotage history'")
        return earlier[-1]
    matches = [r for r in good if r.commit.startswith(to_commit.lower())]
    if not matches:
        raise UnknownRelease(f"--to {to_commit}: no successful deploy of that commit in the ledger",
                             hint="see 'pinotage history'")
    if is_live(matches[-1]):
        raise DeployRefused(f"{matches[-1].commit[:12]} ({matches[-1].image}) is already deployed")
    return matches[-1]


def release_of(record: Record) -> Release:
    """Return the release a record put live, naming the record (so what a rollback writes names it)."""
    name, _, digest = record.image.partition("@")
    # a record keeps no tag: the image is named by its digest
    return Release(image=Image(name=name, tag="", digest=digest, commit=record.commit), commit=record.commit,
                   build_url=record.build_url, ledger_id=record.id)


def live_record(records: list[Record], live: Release | None) -> Record | None:
    """Return the record of what is live: the one its ledger id names, else the newest deploy of its image."""
    if live is None:
        return None
    named = [r for r in records if live.ledger_id and r.id == live.ledger_id]
    same = [r for r in records if r.outcome == DeployOutcome.DEPLOYED and live.image.digest and r.image == live.image.pinned]
    return (named or same or [None])[-1]


def live_note(records: list[Record], live: Release | None) -> list[str]:
    """Say when the live image is not the one the ledger last recorded as deployed (changed outside Pinotage)."""
    last = last_deployed(records)
    if live is None or last is None:
        return [] if last is None else [f"live: nothing, though the ledger last deployed {last.image}"]
    shown = live.image.pinned if live.image.digest else live.image.ref
    if shown == last.image:
        return []
    return [f"live: {shown} is not {last.image}, the image the ledger last deployed ({last.commit[:12]}):"
            " it was changed outside Pinotage ('pinotage diff' shows how)"]


def table(records: list[Record], *, live: Release | None = None) -> list[str]:
    """Format records as an aligned text table, oldest first; a ``*`` marks the record of what is live."""
    header = ("", "started", "outcome", "commit", "image", "target", "took", "build")
    serving = live_record(records, live)
    rows = [header]
    for r in records:
        took = f"{sum(r.phases_s.values()):.1f} s" if r.phases_s else "-"
        digest = r.image.rsplit("@", 1)[-1]
        rows.append(("*" if r is serving else "", r.started_at, r.outcome, r.commit[:12], digest[:19], r.target,
                     took, r.build_url or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
