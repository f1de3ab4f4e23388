"""Unknown fields, found against the kind's schema (the 1.32 schemas ``kubernetes-validate`` ships).

The API server refuses a field its schema does not declare in two ways, both modelled here:
a create, update or non-apply patch sent with ``fieldValidation=Strict`` (kubectl's default) is a
400 ``strict decoding error: unknown field "spec.replica"``; a server-side apply is refused
whatever ``fieldValidation`` says, with Kubernetes 1.32's answer: a 500 Status without a reason,
``failed to create typed patch object (ns/name; apps/v1, Kind=Deployment): .spec.replica: field
not declared in schema`` (kubernetes/kubernetes#122480). Without Strict, other writes keep the
unknown fields out of the stored object, as the server's decoder drops them (the real one also
sends a warning header, which this double does not).
"""

from __future__ import annotations

from tests.fakes.kube import discovery
from tests.fakes.kube.store import ApiError, Kind, Object, bad_request


def _resolve(schema: dict) -> dict:
    defs = discovery._raw_definitions()
    while "$ref" in schema and isinstance(schema["$ref"], str):
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _walk(value, schema: dict, path: str, found: list[str], *, prune: bool) -> None:
    schema = _resolve(schema)
    if isinstance(value, dict):
        properties = schema.get("properties")
        if properties is not None:
            for key in list(value):
                where = f"{path}.{key}" if path else key
                if key in properties:
                    _walk(value[key], properties[key], where, found, prune=prune)
                elif not schema.get("x-kubernetes-preserve-unknown-fields"):
                    found.append(where)
                    if prune:
                        del value[key]
        elif isinstance(schema.get("additionalProperties"), dict):
            for key, item in value.items():
                _walk(item, schema["additionalProperties"], f"{path}.{key}" if path else key, found, prune=prune)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _walk(item, schema["items"], f"{path}[{i}]", found, prune=prune)


def unknown(kind: Kind, obj: Object, *, prune: bool = False) -> list[str]:
    """Return the paths of obj's fields the kind's schema does not declare (removing them when prune)."""
    name = discovery._schema_names().get(kind.resource)
    if not name:
        return []
    found: list[str] = []
    _walk(obj, discovery._raw_definitions()[name], "", found, prune=prune)
    return found


def check_write(kind: Kind, obj: Object, query: dict) -> None:
    """Refuse (Strict) or drop (otherwise) the unknown fields of a create, update or non-apply patch."""
    found = unknown(kind, obj, prune=query.get("fieldValidation") != "Strict")
    if found and query.get("fieldValidation") == "Strict":
        raise bad_request("strict decoding error: " + ", ".join(f'unknown field "{f}"' for f in found))


def check_apply(kind: Kind, namespace: str, name: str, patch: Object) -> None:
    """Refuse an apply configuration holding a field the schema does not declare, as 1.32 does."""
    found = unknown(kind, patch)
    if found:
        where = f"{namespace}/{name}" if namespace else name
        error = ApiError(500, "", f"failed to create typed patch object ({where}; {kind.api_version}, "
                                  f"Kind={kind.kind}): .{found[0]}: field not declared in schema")
        raise error
