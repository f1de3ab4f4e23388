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
import fcntl
import json
import os
import secrets
from pathlib import Path
from typing import Any, Protocol

from pipeline.errors import BadInput, DeployRefused, UnknownRelease
from pipeline.state import Image, Release

OUTCOMES = ("deployed", "rolled-back", "failed", "refused")


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
    outcome: str  # one of OUTCOMES
    phases_s: dict[str, float] = dataclasses.field(default_factory=dict)  # phase -> duration
    message: str = ""
    revision: str = ""  # the target's revision of what serves after the attempt ("" when unknown)


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
    fields = {field.name for field in dataclasses.fields(Record)}
    required = {field.name for field in dataclasses.fields(Record)
                if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING}
    if not isinstance(data, dict) or not required <= set(data) or not set(data) <= fields:
        raise BadInput(f"{where}: not a deploy record")
    if data["outcome"] not in OUTCOMES:
        raise BadInput(f"{where}: outcome {data['outcome']!r} is not one of {', '.join(OUTCOMES)}")
    return Record(**data)


class FileLedger:
    """Keep records as JSON lines in one file; appends are locked and flushed to disk."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def append(self, record: Record) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record_to_json(record), sort_keys=True) + "\n"
        # O_APPEND plus a lock: two pipelines finishing together each add one whole line.
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def records(self) -> list[Record]:
        """Return every record, oldest first."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        out = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            where = f"{self.path}:{number}"
            try:
                data = json.loads(line)
            except ValueError as e:
                raise BadInput(f"{where}: not JSON ({e.msg})", hint="the ledger file was edited by hand?") from e
            out.append(record_from_json(data, where=where))
        return out


def last_deployed(records: list[Record]) -> Record | None:
    """Return the newest record whose deploy went live."""
    return next((r for r in reversed(records) if r.outcome == "deployed"), None)


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

    good = [r for r in records if r.outcome == "deployed" and "@" in r.image]
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


def table(records: list[Record]) -> list[str]:
    """Format records as an aligned text table, oldest first."""
    header = ("started", "outcome", "commit", "image", "target", "took", "build")
    rows = [header]
    for r in records:
        took = f"{sum(r.phases_s.values()):.1f} s" if r.phases_s else "-"
        digest = r.image.rsplit("@", 1)[-1]
        rows.append((r.started_at, r.outcome, r.commit[:12], digest[:19], r.target, took, r.build_url or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
