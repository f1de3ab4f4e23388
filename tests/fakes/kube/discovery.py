"""Discovery and OpenAPI documents for the fake API server, so kubectl can find its way.

Legacy discovery (``/api``, ``/apis``, ``/api/v1``, ``/apis/<group>/<version>``) lists exactly
the resources the fake serves. ``/openapi/v3`` and its group-version documents are built from
the JSON schemas the ``kubernetes-validate`` package ships for the server's version, with the
paths, operations and ``x-kubernetes-group-version-kind`` extensions kubectl looks for. An
aggregated-discovery request gets the legacy answer (plain ``application/json``), which clients
accept as a server without aggregated discovery.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from pathlib import Path

from tests.fakes.kube.store import KINDS, ApiError, Kind

SCHEMA_VERSION = "1.32.0"

# resource -> (singular, short names, categories, subresources served)
DETAILS = {
    "namespaces": ("namespace", ["ns"], [], []),
    "pods": ("pod", ["po"], ["all"], ["status"]),
    "services": ("service", ["svc"], ["all"], ["status"]),
    "configmaps": ("configmap", ["cm"], [], []),
    "secrets": ("secret", [], [], []),
    "serviceaccounts": ("serviceaccount", ["sa"], [], ["token"]),
    "events": ("event", ["ev"], [], []),
    "deployments": ("deployment", ["deploy"], ["all"], ["status", "scale"]),
    "replicasets": ("replicaset", ["rs"], ["all"], ["status", "scale"]),
    "leases": ("lease", [], [], []),
    "roles": ("role", [], [], []),
    "rolebindings": ("rolebinding", [], [], []),
    "clusterroles": ("clusterrole", [], [], []),
    "clusterrolebindings": ("clusterrolebinding", [], [], []),
    "storageclasses": ("storageclass", ["sc"], [], []),
    "selfsubjectaccessreviews": ("selfsubjectaccessreview", [], [], []),
    "selfsubjectrulesreviews": ("selfsubjectrulesreview", [], [], []),
}
OBJECT_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
SUBRESOURCE_KINDS = {"scale": ("autoscaling", "v1", "Scale"), "token": ("authentication.k8s.io", "v1", "TokenRequest")}
REVIEW_ONLY = {"selfsubjectaccessreviews", "selfsubjectrulesreviews"}  # create-only, nothing stored


def group_versions() -> list[tuple[str, str]]:
    """List (group, version) pairs served, core first, in a stable order."""
    seen: list[tuple[str, str]] = []
    for kind in KINDS.values():
        if (kind.group, kind.version) not in seen:
            seen.append((kind.group, kind.version))
    return sorted(seen, key=lambda gv: (gv[0] != "", gv))


def answer(path: str, server_address: str) -> dict | None:
    """Return the discovery or OpenAPI document at path, None when path is not one, or raise 404."""
    parts = [p for p in path.split("/") if p]
    if parts == ["api"]:
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}
    if parts == ["apis"]:
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group(g, v) for g, v in group_versions() if g]}
    if parts == ["api", "v1"]:
        return resource_list("", "v1")
    if len(parts) == 2 and parts[0] == "apis":
        versions = [(g, v) for g, v in group_versions() if g == parts[1]]
        if not versions:
            raise _missing()
        return {"kind": "APIGroup", "apiVersion": "v1", **_group(*versions[0])}
    if len(parts) == 3 and parts[0] == "apis":
        if (parts[1], parts[2]) not in group_versions():
            raise _missing()
        return resource_list(parts[1], parts[2])
    if parts[:2] == ["openapi", "v3"]:
        return openapi_v3("/".join(parts[2:]))
    return None


def _missing() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


def _group(group: str, version: str) -> dict:
    gv = {"groupVersion": f"{group}/{version}", "version": version}
    return {"name": group, "versions": [gv], "preferredVersion": gv}


def resource_list(group: str, version: str) -> dict:
    """Return the APIResourceList of one group version."""
    resources = []
    for kind in KINDS.values():
        if (kind.group, kind.version) != (group, version):
            continue
        singular, short, categories, subresources = DETAILS[kind.resource]
        verbs = ["create"] if kind.resource in REVIEW_ONLY else OBJECT_VERBS
        entry = {"name": kind.resource, "singularName": singular, "namespaced": kind.namespaced, "kind": kind.kind,
                 "verbs": verbs}
        if short:
            entry["shortNames"] = short
        if categories:
            entry["categories"] = categories
        resources.append(entry)
        for sub in subresources:
            sub_group, sub_version, sub_kind = SUBRESOURCE_KINDS.get(sub, (kind.group, kind.version, kind.kind))
            sub_entry = {"name": f"{kind.resource}/{sub}", "singularName": "", "namespaced": kind.namespaced,
                         "kind": sub_kind, "verbs": ["create"] if sub == "token" else ["get", "patch", "update"]}
            if sub in SUBRESOURCE_KINDS:
                sub_entry.update(group=sub_group, version=sub_version)
            resources.append(sub_entry)
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources}


# --- OpenAPI v3 -------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _raw_definitions() -> dict[str, dict]:
    import kubernetes_validate

    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{SCHEMA_VERSION}-local"
    return json.loads((root / "_definitions.json").read_text())["$defs"]


@functools.lru_cache(maxsize=1)
def _definitions() -> dict[str, dict]:
    defs = {name: _to_openapi(schema) for name, schema in _raw_definitions().items()}
    for resource, name in _schema_names().items():
        kind = KINDS[resource]
        for suffix, kind_name in (("", kind.kind), ("List", kind.kind + "List")):
            if name and name + suffix in defs:
                defs[name + suffix]["x-kubernetes-group-version-kind"] = [
                    {"group": kind.group, "version": kind.version, "kind": kind_name}]
    return defs


def _to_openapi(schema):
    """Turn a kubernetes-validate JSON schema into an OpenAPI 3.0 one: refs, single types."""
    if isinstance(schema, list):
        return [_to_openapi(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "$ref" and isinstance(value, str):
            out[key] = value.replace("#/$defs/", "#/components/schemas/")
        elif key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            out[key] = types[0] if len(types) == 1 else types
        else:
            out[key] = _to_openapi(value)
    return out


def _schema_name(kind: Kind) -> str | None:
    """Find the definition whose apiVersion and kind enums name this kind."""
    for name, schema in _raw_definitions().items():
        props = schema.get("properties") or {}
        if (props.get("kind", {}).get("enum") == [kind.kind]
                and props.get("apiVersion", {}).get("enum") == [kind.api_version]):
            return name
    return None


@functools.lru_cache(maxsize=None)
def _schema_names() -> dict[str, str]:
    return {resource: _schema_name(kind) for resource, kind in KINDS.items()}


def _closure(names: list[str]) -> dict[str, dict]:
    defs = _definitions()
    found: dict[str, dict] = {}
    pending = list(names)
    while pending:
        name = pending.pop()
        if name in found or name not in defs:
            continue
        found[name] = defs[name]
        text = json.dumps(defs[name])
        for part in text.split('"#/components/schemas/')[1:]:
            pending.append(part.split('"', 1)[0])
    return found


def _gvk(kind: Kind) -> dict:
    return {"group": kind.group, "version": kind.version, "kind": kind.kind}


def _operation(kind: Kind, action: str, schema: str, params: list[str], code: str = "200") -> dict:
    ref = {"$ref": f"#/components/schemas/{schema}"}
    op = {"operationId": f"{action}{kind.kind}", "tags": [kind.group or "core"],
          "x-kubernetes-action": action, "x-kubernetes-group-version-kind": _gvk(kind),
          "parameters": [{"name": p, "in": "query", "schema": {"type": "string"}, "uniqueItems": True}
                         for p in params],
          "responses": {code: {"description": "OK", "content": {"application/json": {"schema": ref}}}}}
    if action in ("post", "put", "patch"):
        op["requestBody"] = {"content": {t: {"schema": ref if action != "patch" else {"type": "object"}}
                                         for t in (["application/apply-patch+yaml", "application/merge-patch+json",
                                                    "application/strategic-merge-patch+json"]
                                                   if action == "patch" else ["*/*"])}, "required": True}
    return op


WRITE_PARAMS = ["dryRun", "fieldManager", "fieldValidation", "pretty"]
LIST_PARAMS = ["allowWatchBookmarks", "continue", "fieldSelector", "labelSelector", "limit", "pretty",
               "resourceVersion", "resourceVersionMatch", "timeoutSeconds", "watch"]


def _paths(group: str, version: str) -> tuple[dict, list[str]]:
    prefix = f"/apis/{group}/{version}" if group else "/api/v1"
    paths, schemas = {}, ["io.k8s.apimachinery.pkg.apis.meta.v1.Status",
                          "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"]
    for kind in KINDS.values():
        name = _schema_names().get(kind.resource)
        if (kind.group, kind.version) != (group, version) or not name:
            continue
        schemas.append(name)
        base = f"{prefix}/namespaces/{{namespace}}/{kind.resource}" if kind.namespaced else f"{prefix}/{kind.resource}"
        if kind.resource in REVIEW_ONLY:
            paths[base] = {"post": _operation(kind, "post", name, WRITE_PARAMS, "201")}
            continue
        list_name = name + "List"
        schemas.append(list_name)
        paths[base] = {"get": _operation(kind, "list", list_name, LIST_PARAMS),
                       "post": _operation(kind, "post", name, WRITE_PARAMS, "201")}
        paths[base + "/{name}"] = {
            "get": _operation(kind, "get", name, ["pretty"]),
            "put": _operation(kind, "put", name, WRITE_PARAMS),
            "patch": _operation(kind, "patch", name, WRITE_PARAMS + ["force"]),
            "delete": _operation(kind, "delete", "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
                                 ["dryRun", "gracePeriodSeconds", "propagationPolicy", "pretty"])}
    return paths, schemas


@functools.lru_cache(maxsize=None)
def _document(gv_path: str) -> str:
    for group, version in group_versions():
        if gv_path == (f"apis/{group}/{version}" if group else "api/v1"):
            paths, schemas = _paths(group, version)
            doc = {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": f"v{SCHEMA_VERSION}"},
                   "paths": paths, "components": {"schemas": copy.deepcopy(_closure(schemas))}}
            return json.dumps(doc)
    raise _missing()


def openapi_v3(gv_path: str) -> dict:
    """Return the /openapi/v3 index (gv_path empty) or one group version's document."""
    if not gv_path:
        out = {}
        for group, version in group_versions():
            key = f"apis/{group}/{version}" if group else "api/v1"
            digest = hashlib.sha512(_document(key).encode()).hexdigest()[:32].upper()
            out[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
        return {"paths": out}
    return json.loads(_document(gv_path))
