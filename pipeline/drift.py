"""Drift: the fields Pinotage manages, as k8s/ would set them, against what is live.

The Kubernetes target answers ``would_apply(release)``: the live Deployment, and what a deploy of
the release the ledger last recorded would make of it, from a server-side apply with
``dryRun=All``. Both carry ``metadata.managedFields`` (FieldsV1), which say which fields each
field manager owns. A field is compared when the manager ``pinotage`` owns it in either object:
in the answer (what k8s/ sets, taking back by force what someone changed by hand) or in the live
object (what the last deploy set and k8s/ no longer does). Fields that only other managers own (a
label added with kubectl, an autoscaler's replicas it took over, the controller's annotations)
and server defaults are never compared, so they are never drift. Everything here is pure.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

Path = tuple[str, ...]  # FieldsV1 keys: ("f:spec", "f:template", ..., 'k:{"name":"app"}', "f:image")
ABSENT = "(absent)"


@dataclasses.dataclass(frozen=True)
class Difference:
    """One managed field whose live value is not the one k8s/ sets."""

    field: str  # spec.template.spec.containers[name=presentation].image
    live: str  # JSON of the live value, or ABSENT
    wanted: str  # JSON of the value k8s/ sets, or ABSENT


def owned_paths(obj: dict, manager: str) -> set[Path]:
    """Return the leaf fields ``manager`` owns in an object, from its managedFields."""
    paths: set[Path] = set()
    for entry in (obj.get("metadata") or {}).get("managedFields") or ():
        if entry.get("manager") == manager and entry.get("fieldsType") == "FieldsV1":
            _leaves(entry.get("fieldsV1") or {}, (), paths)
    return paths


def _leaves(node: dict, prefix: Path, out: set[Path]) -> None:
    children = [key for key in node if key != "."]
    if not children:
        if prefix:
            out.add(prefix)
        return
    for key in children:
        _leaves(node[key] if isinstance(node[key], dict) else {}, prefix + (key,), out)


def value_at(obj: Any, path: Path) -> tuple[bool, Any]:
    """Return (found, value) at a FieldsV1 path: ``f:name`` a mapping key, ``k:{...}`` a list item, ``v:x`` a set item."""
    for step in path:
        kind, _, rest = step.partition(":")
        if kind == "f" and isinstance(obj, dict) and rest in obj:
            obj = obj[rest]
        elif kind in ("k", "v") and isinstance(obj, list):
            wanted = json.loads(rest)
            match = [item for item in obj if (_item_matches(item, wanted) if kind == "k" else item == wanted)]
            if not match:
                return False, None
            obj = match[0]
        else:
            return False, None
    return True, obj


def _item_matches(item: Any, keys: dict) -> bool:
    return isinstance(item, dict) and all(item.get(key) == value for key, value in keys.items())


def differences(live: dict, would: dict, manager: str) -> list[Difference]:
    """List the fields ``manager`` owns in either object whose values differ, in field order."""
    found = []
    for path in sorted(owned_paths(would, manager) | owned_paths(live, manager)):
        if path[:1] == ("f:status",) or path[:2] == ("f:metadata", "f:managedFields"):
            continue
        in_live, live_value = value_at(live, path)
        in_would, would_value = value_at(would, path)
        if (in_live, live_value) != (in_would, would_value):
            found.append(Difference(field_name(path), _show(in_live, live_value), _show(in_would, would_value)))
    return found


def field_name(path: Path) -> str:
    """Spell a FieldsV1 path for people: ``spec.template.spec.containers[name=presentation].image``."""
    text = ""
    for step in path:
        kind, _, rest = step.partition(":")
        if kind == "f":
            text += ("." if text else "") + rest
        elif kind == "k":
            text += "[" + ",".join(f"{k}={v}" for k, v in json.loads(rest).items()) + "]"
        else:
            text += f"[{rest}]"
    return text


def _show(found: bool, value: Any) -> str:
    return json.dumps(value, sort_keys=True) if found else ABSENT


def report(what: str, diffs: list[Difference]) -> list[str]:
    """Format the differences, one line each, live value first (as ``diff live k8s/`` would)."""
    if not diffs:
        return [f"{what}: no drift: every field Pinotage manages is as k8s/ and the ledger say"]
    lines = [f"{what}: {len(diffs)} field{'s' if len(diffs) > 1 else ''} drifted (live -> k8s/ and the ledger):"]
    lines += [f"  {d.field}: {d.live} -> {d.wanted}" for d in diffs]
    return lines
