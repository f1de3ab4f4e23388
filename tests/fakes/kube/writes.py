"""The fake API server's writes: create, update, patch (merge, strategic merge, server-side apply),
delete, and the subresources (``/status``, ``/scale``, ServiceAccount tokens, access reviews).

As in the API server, a write to the main resource of a kind with a status subresource keeps the
stored status (a create starts from none), and ``/status`` changes the status only; every write
passes through ``admission.py`` (defaults, validation, immutable fields, Pod Security).
"""

from __future__ import annotations

import copy
import json
import time

from tests.fakes.kube import admission, patches, rbac, schema
from tests.fakes.kube import store as st
from tests.fakes.kube.store import KINDS, ApiError, Kind, Object

HAS_STATUS = {"deployments", "replicasets", "pods", "services"}
APPLY = "application/apply-patch+yaml"


class Writes:
    """The writing verbs, mixed into the HTTP handler."""

    # --- main resource ----------------------------------------------------------

    def create(self, kind: Kind, namespace, name, query, user):
        _, body = self.body()
        self._check_kind(kind, body)
        schema.check_write(kind, body, query)
        if namespace and body.get("metadata", {}).get("namespace", namespace) != namespace:
            raise st.bad_request("the namespace of the provided object does not match the namespace sent on "
                                 "the request")
        body = self._admit(kind, namespace, None, body)
        with self.api.store.cond:
            created = self.api.store.create(kind, namespace, body)
            key = (kind.resource, namespace, created["metadata"]["name"])
            manager = query.get("fieldManager") or _manager(self.headers)
            self.api.store.owners[key] = patches.record_update(None, created, manager, {})
            self.api.operations.setdefault(key, {})[manager] = "Update"
            return 201, self._with_managed_fields(kind, key, created)

    def update(self, kind: Kind, namespace, name, query, user):
        _, body = self.body()
        self._check_kind(kind, body)
        if body.get("metadata", {}).get("name") != name:
            raise st.bad_request("the name of the object does not match the name on the URL")
        schema.check_write(kind, body, query)
        with self.api.store.cond:
            before = self.api.store.get(kind, namespace, name)
            if not body["metadata"].get("resourceVersion"):
                raise st.invalid(kind, name, [("FieldValueInvalid", "metadata.resourceVersion",
                                               "Invalid value: 0x0: must be specified for an update")])
            return 200, self._replace(kind, namespace, name, before, self._admit(kind, namespace, before, body),
                                      query.get("fieldManager") or _manager(self.headers))

    def patch(self, kind: Kind, namespace, name, query, user):
        content_type, patch = self.body()
        if not isinstance(patch, dict):
            raise st.bad_request("the patch must be an object")
        if content_type == APPLY:
            return self._apply(kind, namespace, name, query, patch, user)
        if "force" in query:
            raise st.invalid(kind, name, [("FieldValueForbidden", "force",
                                           "Forbidden: may not be specified for non-apply patch")])
        with self.api.store.cond:
            live = self.api.store.get(kind, namespace, name)
            result = _patched(live, patch, content_type)
            schema.check_write(kind, result, query)
            sent_rv = patch.get("metadata", {}).get("resourceVersion")
            result["metadata"]["resourceVersion"] = sent_rv or live["metadata"]["resourceVersion"]
            return 200, self._replace(kind, namespace, name, live, self._admit(kind, namespace, live, result),
                                      query.get("fieldManager") or _manager(self.headers))

    def _apply(self, kind: Kind, namespace: str, name: str, query: dict, patch: Object, user: str):
        key = (kind.resource, namespace, name)
        manager = query.get("fieldManager", "")
        if not manager:
            raise st.invalid(kind, name, [("FieldValueRequired", "fieldManager",
                                           "Required value: is required for apply patch")])
        self._check_kind(kind, patch)
        if patch.get("metadata", {}).get("name", name) != name:
            raise st.bad_request("the name of the object does not match the name on the URL")
        schema.check_apply(kind, namespace, name, patch)
        store = self.api.store
        with store.cond:
            live = store.get(kind, namespace, name) if store.exists(kind, namespace, name) else None
            sent_rv = patch.get("metadata", {}).get("resourceVersion")
            if sent_rv and (live is None or sent_rv != live["metadata"]["resourceVersion"]):
                raise st.conflict(kind, name)
            result, owners, paths, conflicts = patches.apply(
                live, patch, manager, force=query.get("force") == "true", owners=store.owners.get(key, {}),
                previous=store.applied.get(key, {}).get(manager, set()), api_version=kind.api_version)
            if conflicts:
                raise ApiError(409, "Conflict", f"Apply failed with {len(conflicts)} conflict"
                                                f"{'s' if len(conflicts) > 1 else ''}: {'; '.join(conflicts)}",
                               {"causes": [{"reason": "FieldManagerConflict", "message": c} for c in conflicts]})
            result.setdefault("metadata", {})["name"] = name
            result = self._admit(kind, namespace, live, result)
            if live is None:
                # an apply that creates is authorized as a create too, with the name (as the API server
                # does); the request log shows that check as a create request of its own
                self._authorize(user, "create", kind, kind.resource, namespace, name)
                self._record([user, "create", kind.group, kind.resource, namespace, name], 201)
                saved, code = store.create(kind, namespace, result), 201
            else:
                result["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
                saved, code = store.replace(kind, namespace, name, result), 200
            store.owners[key] = owners
            store.applied.setdefault(key, {})[manager] = paths
            self.api.operations.setdefault(key, {})[manager] = "Apply"
            return code, self._with_managed_fields(kind, key, saved)

    def delete(self, kind: Kind, namespace, name, query, user):
        options = _delete_options(self.raw_body, query)
        store = self.api.store
        with store.cond:
            if kind.resource == "namespaces":
                obj = store.get(kind, "", name)
                for (resource, ns, obj_name) in list(store.objects):
                    if ns == name and KINDS[resource].namespaced:
                        store.delete(KINDS[resource], ns, obj_name)
                store.delete(kind, "", name)
                obj["status"] = {"phase": "Terminating"}
                obj["metadata"]["deletionTimestamp"] = st.now_rfc3339()
                return 200, obj
            if options.get("propagationPolicy") == "Orphan" or options.get("orphanDependents") is True:
                self._orphan(store.get(kind, namespace, name))
            obj = store.delete(kind, namespace, name)
        return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                     "details": {"name": name, "group": kind.group, "kind": kind.resource,
                                 "uid": obj["metadata"]["uid"]}}

    def _orphan(self, owner: Object) -> None:
        uid = owner["metadata"]["uid"]
        for (resource, ns, name), obj in list(self.api.store.objects.items()):
            refs = obj["metadata"].get("ownerReferences") or []
            if any(r.get("uid") == uid for r in refs):
                fresh = copy.deepcopy(obj)
                fresh["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
                self.api.store.replace(KINDS[resource], ns, name, fresh)

    # --- subresources ------------------------------------------------------------

    def status_get(self, kind: Kind, namespace, name, query, user):
        return 200, self.api.store.get(kind, namespace, name)

    def status_update(self, kind: Kind, namespace, name, query, user):
        _, body = self.body()
        self._check_kind(kind, body)
        with self.api.store.cond:
            live = self.api.store.get(kind, namespace, name)
            return 200, self._write_status(kind, namespace, name, live, body, query)

    def status_patch(self, kind: Kind, namespace, name, query, user):
        content_type, patch = self.body()
        if content_type == APPLY:
            raise ApiError(415, "UnsupportedMediaType", "the fake API server does not serve apply on /status")
        with self.api.store.cond:
            live = self.api.store.get(kind, namespace, name)
            result = _patched(live, patch, content_type)
            result["metadata"]["resourceVersion"] = patch.get("metadata", {}).get("resourceVersion") or \
                live["metadata"]["resourceVersion"]
            return 200, self._write_status(kind, namespace, name, live, result, query)

    def _write_status(self, kind, namespace, name, live, body, query) -> Object:
        fresh = copy.deepcopy(live)
        fresh["status"] = body.get("status") or {}
        fresh["metadata"]["resourceVersion"] = body.get("metadata", {}).get("resourceVersion") or \
            live["metadata"]["resourceVersion"]
        saved = self.api.store.replace(kind, namespace, name, fresh)
        return self._with_managed_fields(kind, (kind.resource, namespace, name), saved)

    def scale_get(self, kind: Kind, namespace, name, query, user):
        return 200, _scale(self.api.store.get(kind, namespace, name))

    def scale_update(self, kind: Kind, namespace, name, query, user):
        _, body = self.body()
        if body.get("kind") != "Scale":
            raise st.bad_request(f"the API version in the data ({body.get('apiVersion')}) and kind "
                                 f"({body.get('kind')}) do not match the request (autoscaling/v1, Scale)")
        return self._set_scale(kind, namespace, name, body)

    def scale_patch(self, kind: Kind, namespace, name, query, user):
        content_type, patch = self.body()
        if content_type == APPLY:
            raise ApiError(415, "UnsupportedMediaType", "the fake API server does not serve apply on /scale")
        with self.api.store.cond:
            return self._set_scale(kind, namespace, name,
                                   _patched(_scale(self.api.store.get(kind, namespace, name)), patch, content_type))

    def _set_scale(self, kind: Kind, namespace: str, name: str, scale: Object):
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise st.invalid(Kind("autoscaling", "v1", "scale", "Scale"), name, [
                ("FieldValueInvalid", "spec.replicas", f"Invalid value: {replicas}: must be greater than or equal "
                                                       "to 0")])
        with self.api.store.cond:
            live = self.api.store.get(kind, namespace, name)
            sent = (scale.get("metadata") or {}).get("resourceVersion")
            if sent and sent != live["metadata"]["resourceVersion"]:
                raise st.conflict(kind, name)
            fresh = copy.deepcopy(live)
            fresh["spec"]["replicas"] = replicas
            saved = self.api.store.replace(kind, namespace, name, fresh)
            self._owned_by(kind, namespace, name, live, saved, _manager(self.headers))
            return 200, _scale(saved)

    def token(self, kind: Kind, namespace, name, query, user):
        _, body = self.body()
        if body.get("kind") != "TokenRequest":
            raise st.bad_request("expected a TokenRequest")
        self.api.store.get(kind, namespace, name)  # 404 for an unknown ServiceAccount
        seconds = int((body.get("spec") or {}).get("expirationSeconds") or 3600)
        token = self.api.mint_token(namespace, name)
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds))
        return 201, {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                     "metadata": {"name": name, "namespace": namespace, "creationTimestamp": st.now_rfc3339()},
                     "spec": {**(body.get("spec") or {}), "expirationSeconds": seconds},
                     "status": {"token": token, "expirationTimestamp": expires}}

    def review(self, kind: Kind, namespace, name, query, user):
        _, body = self.body()
        self._check_kind(kind, body)
        if kind.resource == "selfsubjectrulesreviews":
            return 201, rbac.rules_review(self.api.store, user, body)
        return 201, rbac.review(self.api.store, user, body)

    # --- helpers --------------------------------------------------------------

    def _admit(self, kind: Kind, namespace: str, live: Object | None, obj: Object) -> Object:
        """Default, validate and admit obj as the new state of live (None: a create)."""
        obj = admission.prepare(kind, namespace, obj)
        if kind.resource in HAS_STATUS:
            if live is not None:
                obj["status"] = copy.deepcopy(live.get("status") or {})
            elif kind.resource == "pods":
                obj["status"] = {"phase": "Pending", "qosClass": "Burstable"}
            else:
                obj.pop("status", None)
        if live is not None:
            admission.check_update(kind, live, obj)
        if kind.resource == "namespaces":
            admission.check_namespace(obj)
        if kind.resource == "pods" and live is None:
            admission.pod_security(self.api.store, namespace, obj)
        return obj

    def _replace(self, kind, namespace, name, before, after, manager) -> Object:
        updated = self.api.store.replace(kind, namespace, name, after)
        self._owned_by(kind, namespace, name, before, updated, manager)
        return self._with_managed_fields(kind, (kind.resource, namespace, name), updated)

    def _check_kind(self, kind: Kind, body) -> None:
        if not isinstance(body, dict):
            raise st.bad_request("the body must be an object")
        # as the API server's decoder does: a missing apiVersion or kind is the request's
        body.setdefault("apiVersion", kind.api_version)
        body.setdefault("kind", kind.kind)
        if body["kind"] != kind.kind or body["apiVersion"] != kind.api_version:
            raise st.bad_request(f"the API version in the data ({body['apiVersion']}) and kind "
                                 f"({body['kind']}) do not match the request ({kind.api_version}, {kind.kind})")

    def _owned_by(self, kind, namespace, name, before, after, manager) -> None:
        key = (kind.resource, namespace, name)
        self.api.store.owners[key] = patches.record_update(before, after, manager, self.api.store.owners.get(key, {}))
        self.api.operations.setdefault(key, {}).setdefault(manager, "Update")

    def _with_managed_fields(self, kind: Kind, key: tuple, obj: Object) -> Object:
        """Show ownership in the answer (and in later reads) as metadata.managedFields."""
        fields = patches.managed_fields(self.api.store.owners.get(key, {}), kind.api_version,
                                        self.api.operations.get(key, {}))
        stored = self.api.store.objects.get(key)
        if stored is not None:
            stored["metadata"]["managedFields"] = fields
        obj["metadata"]["managedFields"] = fields
        return obj


def _patched(live: Object, patch: Object, content_type: str) -> Object:
    if content_type == "application/merge-patch+json":
        return patches.merge_patch(live, patch)
    if content_type == "application/strategic-merge-patch+json":
        return patches.strategic_merge_patch(live, patch)
    raise ApiError(415, "UnsupportedMediaType", f"the fake API server does not support the patch type {content_type}")


def _scale(obj: Object) -> Object:
    meta = obj["metadata"]
    selector = ",".join(f"{k}={v}" for k, v in sorted(((obj["spec"].get("selector") or {}).get("matchLabels")
                                                       or {}).items()))
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")},
            "spec": {"replicas": obj["spec"].get("replicas", 1)},
            "status": {"replicas": (obj.get("status") or {}).get("replicas", 0), "selector": selector}}


def _delete_options(raw: bytes, query: dict) -> dict:
    options = {}
    if raw:
        try:
            options = json.loads(raw)
        except ValueError as e:
            raise st.bad_request(f"error decoding DeleteOptions: {e}") from e
    if "propagationPolicy" in query:
        options["propagationPolicy"] = query["propagationPolicy"]
    policy = options.get("propagationPolicy")
    if policy not in (None, "Orphan", "Background", "Foreground"):
        raise st.invalid(Kind("meta.k8s.io", "v1", "", "DeleteOptions"), "", [(
            "FieldValueNotSupported", "propagationPolicy",
            f'Unsupported value: "{policy}": supported values: "Foreground", "Background", "Orphan", "nil"')])
    return options


def _manager(headers) -> str:
    """Name a manager from the User-Agent, as the API server does when fieldManager is absent."""
    agent = headers.get("User-Agent") or "unknown"
    return agent.split("/")[0][:128]
