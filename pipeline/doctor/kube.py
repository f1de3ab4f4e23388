"""The Kubernetes area, seen as the deployer: the API, its version, the namespace, RBAC, pulls, storage, Lease.

What the deployer needs is what the repository's Role grants (the ``Role`` beside
``deploy.manifest``): each of its rules is asked of the API server as a SelfSubjectAccessReview,
and a SelfSubjectRulesReview shows anything granted beyond it (a wildcard, or secrets other than
the pull secret the Deployment names).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Callable, Iterator

from pipeline.doctor import Finding, Probe, Status, Unreachable

AREA = "kubernetes"
ROLE = "pinotage-deployer"
DOCTOR_RBAC = "doctor-rbac.yaml"  # the ClusterRole that lets the deployer read what the checks need
RESTRICTED = ("pod-security.kubernetes.io/enforce", "restricted")
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
SUPPORTED_SKEW_MINORS = 1  # kubectl supports a server one minor version older or newer than itself


def check(probe: Probe) -> Iterator[Finding]:
    """Yield the Kubernetes checks, in the order a deploy meets them."""
    from kubernetes import client

    from pipeline import kube
    from pipeline.targets.kubernetes import pull_secret

    found = probe.finding(AREA)
    cluster = kube.connect(probe.config, probe.environ)
    namespace = cluster.namespace
    try:
        version = _call("api", lambda: client.VersionApi(cluster.api).get_code(), unreachable=True)
    except Unreachable as e:
        raise Unreachable(e.check, f"{cluster.api.configuration.host}: {e.detail}", e.hint) from None
    yield found("api", Status.OK, f"{version.git_version} answers ({cluster.source})")
    yield _skew(found, version, probe.config.cluster.kubernetes_version)
    core = client.CoreV1Api(cluster.api)
    yield _namespace(found, core, namespace)
    manifests = _manifests(probe)
    rules = _role_rules(manifests)
    auth = client.AuthorizationV1Api(cluster.api)
    yield _allowed(found, auth, namespace, rules)
    yield _nothing_more(found, auth, namespace, {pull_secret.secret_name(probe.config.app)})
    yield _pull_secret(found, core, namespace, probe)
    yield _storage_class(found, client.StorageV1Api(cluster.api))
    yield _lease(found, client.CoordinationV1Api(cluster.api), namespace, f"pinotage-deploy-{probe.config.app}")


def _skew(found: Callable[..., Finding], version: Any, pinned: str) -> Finding:
    """Compare the server's minor version with cluster.kubernetes_version, which kubectl and the packages pin."""
    server_minor = int("".join(ch for ch in version.minor if ch.isdigit()) or 0)
    pinned_minor = int(pinned.split(".")[1])
    if abs(server_minor - pinned_minor) > SUPPORTED_SKEW_MINORS:
        return found("version skew", Status.FAIL,
                     f"server 1.{server_minor}, but cluster.kubernetes_version is {pinned} (kubectl and the"
                     f" cluster packages are pinned to it; they support ±{SUPPORTED_SKEW_MINORS} minor)",
                     "set cluster.kubernetes_version to the cluster's version, or upgrade the cluster")
    return found("version skew", Status.OK, f"server 1.{server_minor}, pinned {pinned}")


def _namespace(found: Callable[..., Finding], core: Any, namespace: str) -> Finding:
    ns = _call("namespace", lambda: core.read_namespace(namespace), missing=None)
    if ns is None:
        return found("namespace", Status.FAIL, f"namespace {namespace} does not exist",
                     "apply k8s/presentation (kubectl apply -k k8s/presentation) as a cluster admin")
    if ns is _FORBIDDEN:
        return found("namespace", Status.SKIPPED, f"this user may not read namespace {namespace}"
                     f" (k8s/presentation/{DOCTOR_RBAC} lets the deployer)")
    labels = ns.metadata.labels or {}
    if labels.get(RESTRICTED[0]) != RESTRICTED[1]:
        return found("namespace", Status.FAIL, f"namespace {namespace} does not enforce Pod Security restricted"
                     f" ({RESTRICTED[0]}={labels.get(RESTRICTED[0], 'unset')})",
                     f"kubectl label namespace {namespace} {RESTRICTED[0]}={RESTRICTED[1]}")
    return found("namespace", Status.OK, f"{namespace} enforces Pod Security restricted")


def _allowed(found: Callable[..., Finding], auth: Any, namespace: str, rules: list[dict]) -> Finding:
    from kubernetes import client

    if not rules:
        return found("deployer role", Status.FAIL, f"no Role {ROLE} beside deploy.manifest to check against",
                     "keep the deployer Role in the folder of deploy.manifest")
    denied, asked = [], 0
    for group, resource, name, verb in _requests(rules):
        review = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(namespace=namespace, group=group, resource=resource,
                                                            name=name or None, verb=verb)))
        answer = _call("deployer role", lambda: auth.create_self_subject_access_review(review))
        asked += 1
        if answer is _FORBIDDEN or not answer.status.allowed:
            denied.append(f"{verb} {resource}{'/' + name if name else ''}")
    if denied:
        return found("deployer role", Status.FAIL, f"denied: {', '.join(denied)}",
                     f"apply the Role and RoleBinding {ROLE} from the repository")
    return found("deployer role", Status.OK, f"all {asked} requests the deployer makes are allowed")


def _nothing_more(found: Callable[..., Finding], auth: Any, namespace: str, pull_secrets: set[str]) -> Finding:
    from kubernetes import client

    review = client.V1SelfSubjectRulesReview(spec=client.V1SelfSubjectRulesReviewSpec(namespace=namespace))
    answer = _call("least privilege", lambda: auth.create_self_subject_rules_review(review))
    if answer is _FORBIDDEN:
        return found("least privilege", Status.SKIPPED, "the API server does not list this user's rules")
    extra = []
    for rule in answer.status.resource_rules or ():
        verbs, groups, resources = rule.verbs or [], rule.api_groups or [], rule.resources or []
        if "*" in verbs or "*" in groups or "*" in resources:
            extra.append(f"a wildcard ({','.join(verbs)} on {','.join(resources)})")
        elif "secrets" in resources and not (rule.resource_names and set(rule.resource_names) <= pull_secrets):
            names = ",".join(rule.resource_names or ["any"])
            extra.append(f"secrets ({','.join(verbs)} on {names})")
    if extra:
        return found("least privilege", Status.FAIL, f"the deployer may do more than deploy: {'; '.join(extra)}",
                     "grant only the rules of the repository's Role; deploy with the deployer's kubeconfig")
    return found("least privilege", Status.OK, "no wildcard, no secret beyond the pull secret")


def _pull_secret(found: Callable[..., Finding], core: Any, namespace: str, probe: Probe) -> Finding:
    from pipeline import registry
    from pipeline.targets.kubernetes import pull_secret

    if registry.read_credentials(probe.config, probe.environ) is None:
        return found("pull secret", Status.SKIPPED, "the registry needs no login")
    name = pull_secret.secret_name(probe.config.app)
    exists = _call("pull secret", lambda: core.read_namespaced_secret(name, namespace), missing=False)
    if exists is _FORBIDDEN:  # the deployer may apply its pull secret but not read it: ask a dry run
        exists = _would_create(core, name, namespace) is False
    if not exists:
        return found("pull secret", Status.FAIL, f"secret {name} is missing in {namespace}: nodes cannot pull"
                     " the image", "the next deploy applies it; 'pinotage cluster redeploy' does too")
    return found("pull secret", Status.OK, f"{name} exists in {namespace}")


def _would_create(core: Any, name: str, namespace: str) -> bool | None:
    """Ask, by a server-side apply with dryRun=All (nothing stored), whether the Secret is missing.

    The API server answers 201 to an apply that would create, 200 to one that would change or keep
    an existing object. None: the deployer may not even apply it.
    """
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace}}
    answer = _call("pull secret", lambda: core.patch_namespaced_secret(
        name, namespace, body, dry_run="All", field_manager="pinotage-doctor",
        _content_type="application/apply-patch+yaml", _preload_content=False))  # the body holds the login: unread
    return None if answer is _FORBIDDEN else answer.status == 201


def _storage_class(found: Callable[..., Finding], storage: Any) -> Finding:
    classes = _call("storage class", lambda: storage.list_storage_class())
    if classes is _FORBIDDEN:
        return found("storage class", Status.SKIPPED, "this user may not list StorageClasses"
                     f" (k8s/presentation/{DOCTOR_RBAC} lets the deployer)")
    defaults = [c.metadata.name for c in classes.items
                if (c.metadata.annotations or {}).get(DEFAULT_CLASS) == "true"]
    if not defaults:
        return found("storage class", Status.FAIL, "no default StorageClass: claims stay Pending",
                     "pinotage cluster rebuild installs one; or mark a class with " + DEFAULT_CLASS)
    return found("storage class", Status.OK, f"default: {', '.join(defaults)}")


def _lease(found: Callable[..., Finding], coordination: Any, namespace: str, name: str) -> Finding:
    lease = _call("lease", lambda: coordination.read_namespaced_lease(name, namespace), missing=None)
    if lease is None:
        return found("lease", Status.OK, f"{name} is free (never taken)")
    if lease is _FORBIDDEN:
        return found("lease", Status.FAIL, f"the deployer may not read lease {name}",
                     f"apply the Role {ROLE} from the repository")
    spec = lease.spec
    renewed = spec.renew_time or spec.acquire_time
    expires = renewed + dt.timedelta(seconds=spec.lease_duration_seconds or 0) if renewed else None
    if not spec.holder_identity or (expires and expires < dt.datetime.now(dt.timezone.utc)):
        return found("lease", Status.OK, f"{name} is free (last held by {spec.holder_identity or 'nobody'})")
    since = spec.acquire_time.isoformat(timespec="seconds") if spec.acquire_time else "?"
    return found("lease", Status.OK, f"{name} is held by {spec.holder_identity} since {since}: a deploy is running")


# --- the repository's side -------------------------------------------------------

def _manifests(probe: Probe) -> list[dict]:
    """Read every document of the YAML files beside deploy.manifest."""
    import yaml

    folder = Path(probe.config.path(probe.config.deploy.manifest)).parent
    documents = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            documents += [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue  # not a manifest this check can read; 'pinotage deploy' reports it where it matters
    return documents


def _role_rules(documents: list[dict]) -> list[dict]:
    for document in documents:
        meta = document.get("metadata") or {}
        if document.get("kind") == "Role" and meta.get("name") == ROLE:
            return list(document.get("rules") or [])
    return []


def _requests(rules: list[dict]) -> Iterator[tuple[str, str, str, str]]:
    """Yield (group, resource, name, verb) for every request a Role's rules allow."""
    for rule in rules:
        for group in rule.get("apiGroups") or [""]:
            for resource in rule.get("resources") or ():
                for name in rule.get("resourceNames") or [""]:
                    for verb in rule.get("verbs") or ():
                        yield group, resource, name, verb


_FORBIDDEN = object()  # a 403: the user may not ask this
_ABSENT = object()  # no default for a 404: it ends the area like any other error


def _call(check: str, request: Callable[[], Any], *, missing: Any = _ABSENT, unreachable: bool = False) -> Any:
    """Send one read; a 404 returns ``missing``, a 403 ``_FORBIDDEN``; no answer ends the area."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        return request()
    except ApiException as e:
        if e.status == 404 and missing is not _ABSENT:
            return missing
        if e.status == 403 and not unreachable:
            return _FORBIDDEN
        if e.status == 401:
            raise Unreachable(check, "the API server refused the credentials (HTTP 401)",
                              "check the kubeconfig's token or certificate") from None
        raise Unreachable(check, f"the API server answered HTTP {e.status} {e.reason}") from None
    except (HTTPError, OSError) as e:
        raise Unreachable(check, f"the API server does not answer ({type(e).__name__})",
                          "check the kubeconfig's server address and that the cluster is up") from None
