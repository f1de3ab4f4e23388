"""What the API server does to an object between decoding it and storing it: defaults, validation
and admission, as far as the kinds the fake serves need them.

- defaults (``prepare``): the fields the real defaulting functions set on Services, Deployments,
  ReplicaSets and pods (probes included), and the validation of the fields the controllers rely on;
- immutable fields (``check_update``): a Deployment's or ReplicaSet's ``spec.selector``;
- Lease validation: name, ``leaseDurationSeconds`` > 0, ``leaseTransitions`` >= 0, MicroTime stamps;
- Pod Security admission (``pod_security``): a pod in a namespace labelled
  ``pod-security.kubernetes.io/enforce`` is checked against that level's rules and refused with
  the API server's 403 message. Only pods are refused, as in Kubernetes: a Deployment is
  admitted and its ReplicaSet fails to create pods (the controller reports ``ReplicaFailure``).
"""

from __future__ import annotations

import copy
import re
import uuid

from tests.fakes.kube import store as st
from tests.fakes.kube.store import KINDS, ApiError, Kind, Object, Store

ENFORCE = "pod-security.kubernetes.io/enforce"
ENFORCE_VERSION = "pod-security.kubernetes.io/enforce-version"
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}
VOLUME_FIELDS = RESTRICTED_VOLUMES | {"hostPath", "nfs", "iscsi", "glusterfs", "rbd", "cephfs", "awsElasticBlockStore",
                                      "gcePersistentDisk", "azureDisk", "azureFile", "fc", "flexVolume", "gitRepo"}
def prepare(kind: Kind, namespace: str, obj: Object) -> Object:
    """Default and validate an object of a kind the controllers act on, as the API server does."""
    obj = copy.deepcopy(obj)
    meta = obj.setdefault("metadata", {})
    name = meta.get("name", "")
    if kind.resource == "namespaces":
        obj["status"] = {"phase": "Active"}
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
    if kind.resource == "services":
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("clusterIP", f"10.96.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}")
        for i, port in enumerate(spec.get("ports") or ()):
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
            if spec["type"] == "NodePort":
                port.setdefault("nodePort", 30000 + uuid.uuid4().int % 2768)
                if not 30000 <= port["nodePort"] <= 32767:
                    raise st.invalid(kind, name, [("FieldValueInvalid", f"spec.ports[{i}].nodePort",
                                                   f"Invalid value: {port['nodePort']}: provided port is not in "
                                                   "the valid range. The range of valid ports is 30000-32767")])
    if kind.resource in ("deployments", "replicasets"):
        _prepare_workload(kind, name, obj)
    if kind.resource == "pods":
        _default_pod_spec(obj.setdefault("spec", {}))
    if kind.resource == "leases":
        _validate_lease(kind, obj)
    return obj


def _prepare_workload(kind: Kind, name: str, obj: Object) -> None:
    """Default and validate a Deployment or ReplicaSet (its pod template included)."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    if kind.resource == "deployments":
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
        if strategy.get("type") == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxUnavailable", "25%")
            rolling.setdefault("maxSurge", "25%")
            if rolling["maxUnavailable"] in (0, "0%") and rolling["maxSurge"] in (0, "0%"):
                raise st.invalid(kind, name, [("FieldValueInvalid", "spec.strategy.rollingUpdate.maxUnavailable",
                                               "Invalid value: 0: may not be 0 when `maxSurge` is 0")])
    template = spec.get("template") or {}
    pod = template.get("spec") or {}
    causes = []
    selector = (spec.get("selector") or {}).get("matchLabels")
    if not selector:
        causes.append(("FieldValueRequired", "spec.selector", "Required value"))
    elif not selector.items() <= ((template.get("metadata") or {}).get("labels") or {}).items():
        causes.append(("FieldValueInvalid", "spec.template.metadata.labels",
                       "Invalid value: `selector` does not match template `labels`"))
    if not pod.get("containers"):
        causes.append(("FieldValueRequired", "spec.template.spec.containers", "Required value"))
    for i, container in enumerate(pod.get("containers") or ()):
        for field in ("name", "image"):
            if not container.get(field):
                causes.append(("FieldValueRequired", f"spec.template.spec.containers[{i}].{field}",
                               "Required value"))
    if spec["replicas"] < 0:
        causes.append(("FieldValueInvalid", "spec.replicas", "Invalid value: must be greater than or equal "
                                                            "to 0"))
    if causes:
        raise st.invalid(kind, name, causes)
    _default_pod_spec(pod)


def _default_pod_spec(pod: Object) -> None:
    pod.setdefault("restartPolicy", "Always")
    pod.setdefault("terminationGracePeriodSeconds", 30)
    pod.setdefault("dnsPolicy", "ClusterFirst")
    pod.setdefault("schedulerName", "default-scheduler")
    pod.setdefault("securityContext", {})
    for container in pod.get("containers") or ():
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("resources", {})
        image = container.get("image", "")
        latest = ":" not in image.rsplit("/", 1)[-1] and "@" not in image or image.endswith(":latest")
        container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if container.get(probe):
                _default_probe(container[probe])


def _default_probe(probe: Object) -> None:
    for field, value in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1),
                         ("failureThreshold", 3)):
        probe.setdefault(field, value)
    if "httpGet" in probe:
        probe["httpGet"].setdefault("scheme", "HTTP")


def _validate_lease(kind: Kind, lease: Object) -> None:
    name = lease["metadata"].get("name", "")
    spec = lease.get("spec") or {}
    causes = []
    if name and not DNS_SUBDOMAIN.match(name):
        causes.append(("FieldValueInvalid", "metadata.name", f'Invalid value: "{name}": a lowercase RFC 1123 '
                       "subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start "
                       "and end with an alphanumeric character"))
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and (not isinstance(duration, int) or duration <= 0):
        causes.append(("FieldValueInvalid", "spec.leaseDurationSeconds",
                       f"Invalid value: {duration}: must be greater than 0"))
    transitions = spec.get("leaseTransitions")
    if transitions is not None and (not isinstance(transitions, int) or transitions < 0):
        causes.append(("FieldValueInvalid", "spec.leaseTransitions",
                       f"Invalid value: {transitions}: must be greater than or equal to 0"))
    if causes:
        raise st.invalid(kind, name, causes)
    for field in ("acquireTime", "renewTime"):
        value = spec.get(field)
        if value is not None and not (isinstance(value, str) and MICRO_TIME.match(value)):
            raise st.bad_request(f'Lease in version "v1" cannot be handled as a Lease: parsing time "{value}" as '
                                 '"2006-01-02T15:04:05.000000Z07:00": cannot parse')


def check_update(kind: Kind, old: Object, new: Object) -> None:
    """Refuse a change to a field the API server holds immutable (422, as it answers)."""
    if kind.resource in ("deployments", "replicasets"):
        before, after = (old.get("spec") or {}).get("selector"), (new.get("spec") or {}).get("selector")
        if before != after:
            labels = ", ".join(f'"{k}":"{v}"' for k, v in sorted(((after or {}).get("matchLabels") or {}).items()))
            raise st.invalid(kind, new["metadata"]["name"], [(
                "FieldValueInvalid", "spec.selector",
                f"Invalid value: v1.LabelSelector{{MatchLabels:map[string]string{{{labels}}}, "
                "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable")])


# --- Pod Security admission ------------------------------------------------------------

def _names(containers: list[Object]) -> str:
    quoted = ", ".join(f'"{c.get("name")}"' for c in containers)
    return f"container{'s' if len(containers) > 1 else ''} {quoted}"


def _baseline(spec: Object, containers: list[Object]) -> dict[str, tuple[str, list[str]]]:
    """Return {check id: (forbidden reason, details)} for the baseline level's checks that fail."""
    found: dict[str, tuple[str, list[str]]] = {}
    host = [f"{f}=true" for f in ("hostNetwork", "hostPID", "hostIPC") if spec.get(f)]
    if host:
        found["hostNamespaces"] = ("host namespaces", [", ".join(host)])
    privileged = [c for c in containers if (c.get("securityContext") or {}).get("privileged")]
    if privileged:
        found["privileged"] = ("privileged", [f"{_names(privileged)} must not set securityContext.privileged=true"])
    host_paths = [v["name"] for v in spec.get("volumes") or () if "hostPath" in v]
    if host_paths:
        found["hostPathVolumes"] = ("hostPath volumes", [", ".join(f'"{n}"' for n in host_paths)])
    ports = [f'{_names([c])} uses hostPort {p["hostPort"]}' for c in containers for p in c.get("ports") or ()
             if p.get("hostPort")]
    if ports:
        found["hostPorts"] = ("hostPort", ports)
    return found


def _restricted(spec: Object, containers: list[Object]) -> dict[str, tuple[str, list[str]]]:
    found = _baseline(spec, containers)
    pod_context = spec.get("securityContext") or {}
    context = {id(c): c.get("securityContext") or {} for c in containers}
    escalating = [c for c in containers if context[id(c)].get("allowPrivilegeEscalation") is not False]
    if escalating:
        found["allowPrivilegeEscalation"] = ("allowPrivilegeEscalation != false", [
            f"{_names(escalating)} must set securityContext.allowPrivilegeEscalation=false"])
    capabilities = []
    no_drop = [c for c in containers if "ALL" not in ((context[id(c)].get("capabilities") or {}).get("drop") or ())]
    if no_drop:
        capabilities.append(f'{_names(no_drop)} must set securityContext.capabilities.drop=["ALL"]')
    for c in containers:
        added = [a for a in (context[id(c)].get("capabilities") or {}).get("add") or () if a != "NET_BIND_SERVICE"]
        if added:
            quoted = ", ".join(f'"{a}"' for a in added)
            capabilities.append(f"{_names([c])} must not include {quoted} in securityContext.capabilities.add")
    if capabilities:
        found["capabilities_restricted"] = ("unrestricted capabilities", capabilities)
    volumes = [(v["name"], next((k for k in v if k in VOLUME_FIELDS), "")) for v in spec.get("volumes") or ()]
    bad_volumes = [(n, t) for n, t in volumes if t and t not in RESTRICTED_VOLUMES]
    if bad_volumes:
        found["restrictedVolumes"] = ("restricted volume types", [
            f'volume "{n}" uses restricted volume type "{t}"' for n, t in bad_volumes])
    non_root = [c for c in containers if context[id(c)].get("runAsNonRoot") is not True
                and not (pod_context.get("runAsNonRoot") is True and context[id(c)].get("runAsNonRoot") is None)]
    if pod_context.get("runAsNonRoot") is False:
        found["runAsNonRoot"] = ("runAsNonRoot != true", ["pod must not set securityContext.runAsNonRoot=false"])
    elif non_root:
        found["runAsNonRoot"] = ("runAsNonRoot != true", [
            f"pod or {_names(non_root)} must set securityContext.runAsNonRoot=true"])
    root = (["pod must not set runAsUser=0"] if pod_context.get("runAsUser") == 0 else []) + [
        f"{_names([c])} must not set runAsUser=0" for c in containers if context[id(c)].get("runAsUser") == 0]
    if root:
        found["runAsUser"] = ("runAsUser=0", root)
    seccomp_ok = {"RuntimeDefault", "Localhost"}
    pod_seccomp = (pod_context.get("seccompProfile") or {}).get("type")
    unconfined = [c for c in containers if ((context[id(c)].get("seccompProfile") or {}).get("type")
                                            or pod_seccomp) not in seccomp_ok]
    if unconfined:
        who = f"pod or {_names(unconfined)}" if not pod_seccomp else _names(unconfined)
        found["seccompProfile_restricted"] = ("seccompProfile", [
            f'{who} must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"'])
    return found


def pod_security(store: Store, namespace: str, pod: Object) -> None:
    """Refuse (403) a pod that breaks its namespace's enforced Pod Security level."""
    try:
        labels = store.get(KINDS["namespaces"], "", namespace)["metadata"].get("labels") or {}
    except ApiError:
        return
    level = labels.get(ENFORCE, "privileged")
    if level == "privileged":
        return
    if level not in ("baseline", "restricted"):
        return  # the namespace's label was refused when it was written (see check_namespace)
    spec = pod.get("spec") or {}
    containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
    found = (_restricted if level == "restricted" else _baseline)(spec, containers)
    if not found:
        return
    version = labels.get(ENFORCE_VERSION, "latest")
    text = ", ".join(f"{reason} ({'; '.join(details)})" for _, (reason, details) in sorted(found.items()))
    name = pod["metadata"].get("name", "")
    raise ApiError(403, "Forbidden", f'pods "{name}" is forbidden: violates PodSecurity "{level}:{version}": {text}',
                   {"name": name, "kind": "pods"})


def check_namespace(namespace: Object) -> None:
    """Refuse a Pod Security label whose level is not one of the three (as the admission plugin does)."""
    level = (namespace["metadata"].get("labels") or {}).get(ENFORCE)
    if level is not None and level not in ("privileged", "baseline", "restricted"):
        raise st.invalid(KINDS["namespaces"], namespace["metadata"].get("name", ""), [(
            "FieldValueInvalid", f"metadata.labels[{ENFORCE}]",
            f'Invalid value: "{level}": must be one of privileged, baseline, restricted')])
