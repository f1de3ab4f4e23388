"""Patches and server-side apply for the fake API server: merge, strategic merge, field ownership.

Ownership is kept per leaf path (keyed lists, such as containers by name, contribute one step per
item) as the set of managers that own it, and rendered as ``metadata.managedFields`` (FieldsV1).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from tests.fakes.kube.store import Object, bad_request, now_rfc3339


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply a JSON merge patch (RFC 7386)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _list_key(items: list) -> str | None:
    """Name the merge key of a list of objects (containers, ports, volumes…), or None for an atomic list."""
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    for key in ("name", "containerPort", "type", "mountPath", "ip"):
        if all(key in i for i in items):
            return key
    return None


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Apply a strategic merge patch: a merge patch whose keyed lists merge item by item."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    orders = {key.split("/", 1)[1]: value for key, value in patch.items() if key.startswith(ORDER_DIRECTIVE)}
    for key, value in patch.items():
        if key.startswith(ORDER_DIRECTIVE):
            continue
        if key.startswith("$"):
            raise bad_request(f"the fake API server does not understand the directive {key}")
        if value is None:
            out.pop(key, None)
        elif isinstance(value, list) and isinstance(out.get(key), list) and _list_key(value + out[key]):
            merge_key = _list_key(value + out[key])
            merged = list(out[key])
            for item in value:
                found = next((i for i, old in enumerate(merged) if old.get(merge_key) == item.get(merge_key)), None)
                if found is None:
                    merged.append(copy.deepcopy(item))
                else:
                    merged[found] = strategic_merge_patch(merged[found], item)
            out[key] = merged
        else:
            out[key] = strategic_merge_patch(out.get(key), value)
    for key, order in orders.items():
        out[key] = _in_order(out.get(key), order, key)
    return out


ORDER_DIRECTIVE = "$setElementOrder/"


def _in_order(items: Any, order: Any, key: str) -> list:
    """Sort a merged keyed list as a ``$setElementOrder`` directive lists it (kubectl sends one with each list)."""
    merge_key = _list_key(list(order or []) + list(items or [])) if isinstance(order, list) else None
    if not isinstance(items, list) or merge_key is None:
        raise bad_request(f"$setElementOrder/{key}: expected a list of the items' merge keys")
    wanted = [entry.get(merge_key) for entry in order]
    placed = sorted((i for i in items if i.get(merge_key) in wanted), key=lambda i: wanted.index(i.get(merge_key)))
    return placed + [i for i in items if i.get(merge_key) not in wanted]


SKIPPED_PATHS = {("metadata", "resourceVersion"), ("metadata", "managedFields"), ("metadata", "uid"),
                 ("metadata", "creationTimestamp"), ("metadata", "generation"), ("apiVersion",), ("kind",),
                 ("metadata", "name"), ("metadata", "namespace")}


def leaves(value: Any, prefix: tuple = ()) -> dict[tuple, Any]:
    """Flatten an object to {path: value}; keyed lists contribute ("k", key, value) path steps."""
    out: dict[tuple, Any] = {}
    if isinstance(value, dict) and value:
        for key, item in value.items():
            path = prefix + (key,)
            if path in SKIPPED_PATHS or prefix == ("status",) or path == ("status",):
                continue
            out.update(leaves(item, path))
    elif isinstance(value, list) and _list_key(value):
        merge_key = _list_key(value)
        for item in value:
            out.update(leaves(item, prefix + (("k", merge_key, item[merge_key]),)))
    else:
        out[prefix] = copy.deepcopy(value)
    return out


def _get_path(obj: Any, path: tuple) -> tuple[bool, Any]:
    for step in path:
        if isinstance(step, tuple):
            if not isinstance(obj, list):
                return False, None
            obj = next((i for i in obj if isinstance(i, dict) and i.get(step[1]) == step[2]), None)
            if obj is None:
                return False, None
        else:
            if not isinstance(obj, dict) or step not in obj:
                return False, None
            obj = obj[step]
    return True, obj


def _set_path(obj: dict, path: tuple, value: Any) -> None:
    for i, step in enumerate(path[:-1]):
        following = path[i + 1]
        if isinstance(step, tuple):
            item = next((x for x in obj if isinstance(x, dict) and x.get(step[1]) == step[2]), None)
            if item is None:
                item = {step[1]: step[2]}
                obj.append(item)
            obj = item
        else:
            if not isinstance(obj.get(step), (dict, list)):
                obj[step] = [] if isinstance(following, tuple) else {}
            obj = obj[step]
    last = path[-1]
    if isinstance(last, tuple):
        item = next((x for x in obj if isinstance(x, dict) and x.get(last[1]) == last[2]), None)
        if item is None:
            obj.append(copy.deepcopy(value) if isinstance(value, dict) else {last[1]: last[2]})
    else:
        obj[last] = copy.deepcopy(value)


def _remove_path(obj: dict, path: tuple) -> None:
    parents = [obj]
    for step in path[:-1]:
        found, child = _get_path(parents[-1], (step,))
        if not found:
            return
        parents.append(child)
    last = path[-1]
    container = parents[-1]
    if isinstance(last, tuple):
        container[:] = [i for i in container if not (isinstance(i, dict) and i.get(last[1]) == last[2])]
    elif isinstance(container, dict):
        container.pop(last, None)
    # drop list items left holding only their key, and objects left empty
    for depth in range(len(parents) - 1, 0, -1):
        child, parent, step = parents[depth], parents[depth - 1], path[depth - 1]
        if isinstance(step, tuple):
            if isinstance(child, dict) and set(child) <= {step[1]}:
                parent[:] = [i for i in parent if i is not child]
        elif isinstance(child, (dict, list)) and not child and isinstance(parent, dict):
            parent.pop(step, None)


def apply(live: Object | None, applied: Object, manager: str, *, force: bool, owners: dict[tuple, tuple],
          previous: set[tuple], api_version: str) -> tuple[Object, dict[tuple, tuple], set[tuple], list[str]]:
    """Server-side apply: return (object, owners, paths this manager now applies, conflicts).

    A field may have several owners: every manager that applied the value it holds. A manager
    that stops applying a field gives up its share; the field goes only when no one owns it.
    """
    new_paths = leaves(applied)
    result = copy.deepcopy(live) if live is not None else {"metadata": {}}
    conflicts = []
    for path, value in new_paths.items():
        found, current = _get_path(result, path)
        if found and current != value and not force:
            conflicts += [f'conflict with "{other}" using {api_version}: .{_show_path(path)}'
                          for other in owners.get(path, ()) if other != manager]
    if conflicts:
        return result, owners, previous, conflicts
    owners = dict(owners)
    for path in previous - set(new_paths):
        holders = owners.get(path, ())
        rest = tuple(m for m in holders if m != manager)
        if manager in holders and not rest:
            _remove_path(result, path)
            owners.pop(path, None)
        elif rest:
            owners[path] = rest
    for path, value in new_paths.items():
        found, current = _get_path(result, path)
        shared = set(owners.get(path, ())) | {manager} if found and current == value else {manager}
        _set_path(result, path, value)
        owners[path] = tuple(sorted(shared))
    for meta_field in ("name", "namespace"):
        if meta_field in applied.get("metadata", {}):
            result["metadata"][meta_field] = applied["metadata"][meta_field]
    return result, owners, set(new_paths), []


def record_update(before: Object | None, after: Object, manager: str,
                  owners: dict[tuple, tuple]) -> dict[tuple, tuple]:
    """Give the manager of a non-apply write the fields it changed, taking them from their owners."""
    old = leaves(before) if before else {}
    owners = dict(owners)
    for path, value in leaves(after).items():
        if old.get(path, object()) != value:
            owners[path] = (manager,)
    for path in set(old) - set(leaves(after)):
        owners.pop(path, None)
    return owners


def managed_fields(owners: dict[tuple, tuple], api_version: str, operations: dict[str, str]) -> list[Object]:
    """Render ownership as metadata.managedFields entries (FieldsV1), one per manager."""
    by_manager: dict[str, dict] = {}
    for path, holders in sorted(owners.items(), key=lambda item: repr(item[0])):
        for manager in holders:
            node = by_manager.setdefault(manager, {})
            for step in path:
                if isinstance(step, tuple):
                    name = "k:" + json.dumps({step[1]: step[2]}, separators=(",", ":"))
                else:
                    name = f"f:{step}"
                node = node.setdefault(name, {})
    return [{"manager": manager, "operation": operations.get(manager, "Update"), "apiVersion": api_version,
             "time": now_rfc3339(), "fieldsType": "FieldsV1", "fieldsV1": fields}
            for manager, fields in by_manager.items()]


def _show_path(path: tuple) -> str:
    return ".".join(f"[{s[1]}=\"{s[2]}\"]" if isinstance(s, tuple) else s for s in path)
