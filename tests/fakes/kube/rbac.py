"""RBAC as the API server's authorizer decides it, SelfSubjectAccessReview and SelfSubjectRulesReview.

Roles and ClusterRoles grant; RoleBindings (to a Role or a ClusterRole, within their namespace)
and ClusterRoleBindings (cluster-wide) bind them to Users, Groups and ServiceAccounts. A
ServiceAccount is in the groups ``system:serviceaccounts``, ``system:serviceaccounts:<ns>`` and
``system:authenticated``; the admin is in ``system:masters``, which may do anything. Every
authenticated user may create a SelfSubjectAccessReview, as the default ``system:basic-user``
binding allows. Nothing else is granted by default.
"""

from __future__ import annotations

from tests.fakes.kube.store import KINDS, ApiError, Store

ADMIN = "kubernetes-admin"
SELF_REVIEWS = ("selfsubjectaccessreviews", "selfsubjectrulesreviews")
# what the default system:basic-user and system:discovery ClusterRoles grant every authenticated user
BASIC_USER_RULES = [{"verbs": ["create"], "apiGroups": ["authorization.k8s.io"], "resources": list(SELF_REVIEWS)}]
DISCOVERY_PATHS = ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*",
                   "/readyz", "/version", "/version/"]
SERVICE_ACCOUNT = "system:serviceaccount:"


def groups_of(user: str) -> list[str]:
    """Return the groups the authenticator puts a user in."""
    if user == ADMIN:
        return ["system:masters", "system:authenticated"]
    if user.startswith(SERVICE_ACCOUNT):
        namespace = user[len(SERVICE_ACCOUNT):].partition(":")[0]
        return ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"]
    return ["system:authenticated"]


def _binds(binding: dict, user: str, groups: list[str]) -> bool:
    binding_ns = binding["metadata"].get("namespace", "")
    for subject in binding.get("subjects") or ():
        kind, name = subject.get("kind"), subject.get("name")
        if kind == "User" and name == user:
            return True
        if kind == "Group" and name in groups:
            return True
        if kind == "ServiceAccount" and user == f"{SERVICE_ACCOUNT}{subject.get('namespace') or binding_ns}:{name}":
            return True
    return False


def _grants(rule: dict, verb: str, group: str, resource: str, name: str) -> bool:
    return (_matches(rule.get("apiGroups"), group) and _matches(rule.get("resources"), resource)
            and _matches(rule.get("verbs"), verb)
            and (not rule.get("resourceNames") or name in rule["resourceNames"]))


def _matches(allowed, value: str) -> bool:
    return bool(allowed) and ("*" in allowed or value in allowed)


def decide(store: Store, user: str, verb: str, group: str, resource: str, namespace: str,
           name: str) -> tuple[bool, str]:
    """Return (allowed, reason) as RBAC does; reason names the binding that allowed it."""
    groups = groups_of(user)
    if "system:masters" in groups:
        return True, ""
    if group == "authorization.k8s.io" and resource in SELF_REVIEWS and verb == "create":
        return True, 'RBAC: allowed by ClusterRoleBinding "system:basic-user" of ClusterRole "system:basic-user"'
    cluster_roles = {r["metadata"]["name"]: r for r in store.find(KINDS["clusterroles"])}
    bindings = [(b, cluster_roles.get(b.get("roleRef", {}).get("name")))
                for b in store.find(KINDS["clusterrolebindings"])
                if b.get("roleRef", {}).get("kind") == "ClusterRole"]
    if namespace:
        roles = {r["metadata"]["name"]: r for r in store.find(KINDS["roles"], namespace)}
        for b in store.find(KINDS["rolebindings"], namespace):
            ref = b.get("roleRef", {})
            bindings.append((b, (roles if ref.get("kind") == "Role" else cluster_roles).get(ref.get("name"))
                             if ref.get("kind") in ("Role", "ClusterRole") else None))
    for binding, role in bindings:
        if role is None or not _binds(binding, user, groups):
            continue
        if any(_grants(rule, verb, group, resource, name) for rule in role.get("rules") or ()):
            where = f'{binding["kind"]} "{binding["metadata"]["name"]}' + (
                f'/{namespace}"' if binding["kind"] == "RoleBinding" else '"')
            return True, f'RBAC: allowed by {where} of {role["kind"]} "{role["metadata"]["name"]}" to {user}'
    return False, ""


def review(store: Store, user: str, body: dict) -> dict:
    """Answer a SelfSubjectAccessReview for user."""
    spec = body.get("spec") or {}
    attributes = spec.get("resourceAttributes")
    if attributes is not None:
        resource = attributes.get("resource", "")
        if attributes.get("subresource"):
            resource += "/" + attributes["subresource"]
        allowed, reason = decide(store, user, attributes.get("verb", ""), attributes.get("group", ""), resource,
                                 attributes.get("namespace", ""), attributes.get("name", ""))
    else:  # non-resource URLs: discovery and health endpoints are open to every authenticated user
        path = (spec.get("nonResourceAttributes") or {}).get("path", "")
        open_paths = ("/api", "/apis", "/version", "/healthz", "/livez", "/readyz", "/openapi")
        allowed = "system:masters" in groups_of(user) or any(path == p or path.startswith(p + "/") for p in open_paths)
        reason = ""
    status = {"allowed": allowed}
    if reason:
        status["reason"] = reason
    return {"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": None}, "spec": spec, "status": status}


def rules_review(store: Store, user: str, body: dict) -> dict:
    """Answer a SelfSubjectRulesReview: every rule bound to user in spec.namespace, as the authorizer lists them."""
    spec = body.get("spec") or {}
    namespace = spec.get("namespace") or ""
    if not namespace:
        raise ApiError(400, "BadRequest", "no namespace on request")
    groups = groups_of(user)
    if "system:masters" in groups:
        resource_rules = [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]
    else:
        resource_rules = [dict(rule) for rule in BASIC_USER_RULES]
        cluster_roles = {r["metadata"]["name"]: r for r in store.find(KINDS["clusterroles"])}
        roles = {r["metadata"]["name"]: r for r in store.find(KINDS["roles"], namespace)}
        bindings = [*store.find(KINDS["clusterrolebindings"]), *store.find(KINDS["rolebindings"], namespace)]
        for binding in bindings:
            ref = binding.get("roleRef") or {}
            role = (roles if ref.get("kind") == "Role" else cluster_roles).get(ref.get("name"))
            if role is None or not _binds(binding, user, groups):
                continue
            for rule in role.get("rules") or ():
                if rule.get("resources"):
                    resource_rules.append({key: list(rule[key]) for key in
                                           ("verbs", "apiGroups", "resources", "resourceNames") if rule.get(key)})
    return {"kind": "SelfSubjectRulesReview", "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": None}, "spec": spec,
            "status": {"resourceRules": resource_rules,
                       "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": DISCOVERY_PATHS}],
                       "incomplete": False}}
