"""The deploy ledger: one record per deploy attempt, kept by the target.

[The run issue fills in the file store for the local target and ``pinotage history``;
the Kubernetes issue keeps the same records in the cluster.]
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

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


class Ledger(Protocol):
    def append(self, record: Record) -> None: ...

    def records(self) -> list[Record]:
        """Return every record, oldest first."""
        ...
