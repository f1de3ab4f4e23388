"""The frozen values handed between phases, and the state file between Jenkins stages.

``pinotage build --state s.json`` writes what it built; ``pinotage push --state
s.json`` reads it and adds the digest; ``deploy`` and ``gate`` read that. The file
holds names and digests only, never a credential; it is read into one checked ``State``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import files, records
from pipeline.errors import BadInput

if TYPE_CHECKING:
    from pipeline.context import BuildContext

STATE_VERSION = 1
SECTIONS = ("version", "context", "image", "deployment", "stage")
SECTION_NAMES = {"context": "a build context", "image": "an image", "deployment": "a deployment",
                 "stage": "a stage mark"}
REWRITE_HINT = "delete it, or run 'pinotage context --state FILE' again to write it afresh"


@dataclasses.dataclass(frozen=True)
class Image:
    """An image: its name (registry/repository), the tags it carries, and once pushed its digest."""

    name: str
    tag: str
    tags: tuple[str, ...] = ()
    digest: str = ""  # "sha256:…", known once the registry holds it
    commit: str = ""
    built: bool = True  # False when the registry already had it and the build was skipped
    sbom: str = ""  # the digest of the app's SBOM the build wrote (pipeline/sbom.py); "" when unknown
    packages: tuple[str, ...] = ()  # "name@version" of the npm packages the image ships, from that SBOM

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.tag}"

    @property
    def pinned(self) -> str:
        """Return the reference by digest: what deploys use, so a moved tag cannot change them."""
        if not self.digest:
            raise ValueError(f"{self.ref} has no digest yet")
        return f"{self.name}@{self.digest}"


@dataclasses.dataclass(frozen=True)
class Release:
    """What a deploy asks a target for."""

    image: Image
    commit: str
    build_url: str = ""
    ledger_id: str = ""


@dataclasses.dataclass(frozen=True)
class Deployment:
    """What a target reports after a deploy or rollback: what serves now, where, and what it replaced."""

    target: str
    revision: str
    url: str = ""
    previous: Release | None = None
    release: Release | None = None  # what serves now: the release deployed, or the one rolled back to


@dataclasses.dataclass(frozen=True)
class StageMark:
    """The shape of the state file's "stage": which stage ran last in a build, and how it ended."""

    name: str = ""
    result: str = ""  # "running" until the stage passed, then "passed"
    build_url: str = ""


@dataclasses.dataclass(frozen=True)
class State:
    """The state file between Jenkins stages: what each stage wrote, None until one did."""

    context: BuildContext | None = None
    image: Image | None = None
    deployment: Deployment | None = None
    stage: StageMark | None = None


def to_json(value: Any) -> dict[str, Any]:
    """Turn a value of this module into plain JSON data."""
    return dataclasses.asdict(value)


def read_state(path: str | os.PathLike) -> State:
    """Read the hand-off file, each of its values checked; a missing file is an empty state."""
    from pipeline.context import from_json as context_from_json

    path = Path(path)
    if not path.exists():
        return State()
    text = files.read_text(path, what="state file", hint=REWRITE_HINT)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as e:
        where = f"{path}:{e.lineno}" if isinstance(e, json.JSONDecodeError) else str(path)
        raise BadInput(f"{where}: not a Pinotage state file (not JSON)", hint=REWRITE_HINT) from None
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise BadInput(f"{path}: not a Pinotage state file of version {STATE_VERSION}", hint=REWRITE_HINT)
    unknown = sorted(str(key) for key in data if key not in SECTIONS)
    if unknown:
        raise BadInput(f"{path}: not a Pinotage state file: unknown key {unknown[0][:40]!r}", hint=REWRITE_HINT)
    values = {key: records.build(kind, data[key], where=f"{path}: {key}", what=SECTION_NAMES[key],
                                 hint=REWRITE_HINT)
              for key, kind in _section_types().items() if data.get(key) is not None}
    if "context" in values:
        values["context"] = context_from_json(data["context"])  # also checks the commit and the event
    return State(**values)


def write_state(path: str | os.PathLike, *, replace: bool = False, **updates: Any) -> State:
    """Set values of the hand-off file (``context=``, ``image=``, ``deployment=``, ``stage=``).

    Atomically and under a lock: a crash leaves the old file whole. ``replace=True`` starts the
    file afresh: the first stage of a build uses it, because Jenkins reuses workspaces and an
    earlier build's image must not reach this build's later stages. Return the state written.
    """
    path = Path(path)
    if path.is_dir():
        raise BadInput(f"{path}: is a directory, expected the state file")
    try:
        with files.locked(path):
            state = dataclasses.replace(State() if replace else read_state(path), **updates)
            data = {"version": STATE_VERSION,
                    **{key: value for key, value in to_json(state).items() if value is not None}}
            files.write_atomic(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
    except OSError as e:
        raise BadInput(f"{path}: cannot write the state file ({e.strerror or type(e).__name__})",
                       hint="pass --state a file in a folder this user may write") from None
    return state


def mark_stage(path: str | os.PathLike, name: str, result: str, build_url: str) -> None:
    """Record which stage ran last in this build and whether it passed, for the failure status to name.

    A state file that cannot be read is left alone: the stage's own command reports it.
    """
    try:
        write_state(path, stage=StageMark(name=name, result=result, build_url=build_url))
    except BadInput:
        pass


def failure_text(state: State, build_url: str) -> str:
    """Describe where a build failed from the stage the state file last recorded for this build."""
    stage = state.stage
    if stage is None or stage.build_url != build_url or not stage.name:
        return "failed before its first pinotage stage"
    if stage.result == "passed":
        return f"failed after stage {stage.name}"
    return f"failed in stage {stage.name}"


def _section_types() -> dict[str, type]:
    from pipeline.context import BuildContext

    return {"context": BuildContext, "image": Image, "deployment": Deployment, "stage": StageMark}
