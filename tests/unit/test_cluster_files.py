"""The cluster's files: kubeadm configs against the kubeadm API's fields, manifests against the
Kubernetes schemas, and the rules every script and manifest keeps."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path

import pytest
import yaml

from pipeline import config as config_module
from pipeline.cluster import facts, steps, topology

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES_VERSION = "1.31.0"  # the same pinned version as tests/unit/test_manifests.py
ADDON_MANIFESTS = ("k8s/smoke", "k8s/sharelatex", "k8s/logging", "k8s/network", "k8s/storage")

# The kubeadm.k8s.io/v1beta4 fields, written from the kubeadm configuration API reference
# (https://kubernetes.io/docs/reference/config-api/kubeadm-config.v1beta4/). A dict is an object
# with exactly those optional fields; a list of one item is a list of that; a type is a leaf.
ARG = {"name": str, "value": str}
ENV = {"name": str, "value": str}
TAINT = {"key": str, "value": str, "effect": str, "timeAdded": str}
NODE_REGISTRATION = {"name": str, "criSocket": str, "taints": [TAINT], "kubeletExtraArgs": [ARG],
                     "ignorePreflightErrors": [str], "imagePullPolicy": str, "imagePullSerial": bool}
API_ENDPOINT = {"advertiseAddress": str, "bindPort": int}
TIMEOUTS = {k: str for k in ("controlPlaneComponentHealthCheck", "kubeletHealthCheck", "kubernetesAPICall",
                             "etcdAPICall", "tlsBootstrap", "discovery", "upgradeManifests")}
CONTROL_PLANE_COMPONENT = {"extraArgs": [ARG], "extraVolumes": [{"name": str, "hostPath": str, "mountPath": str,
                                                                 "readOnly": bool, "pathType": str}],
                           "extraEnvs": [ENV]}
KUBEADM_V1BETA4 = {
    "InitConfiguration": {
        "apiVersion": str, "kind": str,
        "bootstrapTokens": [{"token": str, "description": str, "ttl": str, "expires": str, "usages": [str],
                             "groups": [str]}],
        "dryRun": bool, "nodeRegistration": NODE_REGISTRATION, "localAPIEndpoint": API_ENDPOINT,
        "certificateKey": str, "skipPhases": [str], "patches": {"directory": str}, "timeouts": TIMEOUTS,
    },
    "ClusterConfiguration": {
        "apiVersion": str, "kind": str,
        "etcd": {"local": {"imageRepository": str, "imageTag": str, "dataDir": str, "extraArgs": [ARG],
                           "extraEnvs": [ENV], "serverCertSANs": [str], "peerCertSANs": [str]},
                 "external": {"endpoints": [str], "caFile": str, "certFile": str, "keyFile": str}},
        "networking": {"serviceSubnet": str, "podSubnet": str, "dnsDomain": str},
        "kubernetesVersion": str, "controlPlaneEndpoint": str,
        "apiServer": {**CONTROL_PLANE_COMPONENT, "certSANs": [str]},
        "controllerManager": CONTROL_PLANE_COMPONENT, "scheduler": CONTROL_PLANE_COMPONENT,
        "dns": {"imageRepository": str, "imageTag": str, "disabled": bool}, "proxy": {"disabled": bool},
        "certificatesDir": str, "imageRepository": str, "featureGates": dict, "clusterName": str,
        "encryptionAlgorithm": str, "certificateValidityPeriod": str, "caCertificateValidityPeriod": str,
    },
    "JoinConfiguration": {
        "apiVersion": str, "kind": str, "dryRun": bool, "nodeRegistration": NODE_REGISTRATION, "caCertPath": str,
        "discovery": {"bootstrapToken": {"token": str, "apiServerEndpoint": str, "caCertHashes": [str],
                                         "unsafeSkipCAVerification": bool},
                      "file": {"kubeConfigPath": str}, "tlsBootstrapToken": str},
        "controlPlane": {"localAPIEndpoint": API_ENDPOINT, "certificateKey": str},
        "skipPhases": [str], "patches": {"directory": str}, "timeouts": TIMEOUTS,
    },
}
REQUIRED = {"JoinConfiguration": ("discovery",)}


def schema_problems(value, schema, where="") -> list[str]:
    """List where value breaks the field schema above: unknown fields and wrong types."""
    if isinstance(schema, dict) and schema is not dict:
        if not isinstance(value, dict):
            return [f"{where or '.'}: expected an object, got {type(value).__name__}"]
        problems = []
        for key, item in value.items():
            if key not in schema:
                problems.append(f"{where}.{key}: not a field of the kubeadm API")
            else:
                problems += schema_problems(item, schema[key], f"{where}.{key}")
        return problems
    if isinstance(schema, list):
        if not isinstance(value, list):
            return [f"{where}: expected a list, got {type(value).__name__}"]
        return [p for i, item in enumerate(value) for p in schema_problems(item, schema[0], f"{where}[{i}]")]
    if not isinstance(value, schema) or (schema is int and isinstance(value, bool)):
        return [f"{where}: expected {schema.__name__}, got {value!r}"]
    return []


def rendered(environ, *overrides):
    config = config_module.load(environ=environ, cwd=str(ROOT), overrides=list(overrides))
    topo = topology.topology(config)
    init_docs = list(yaml.safe_load_all(topology.render_init(config, topo)))
    join_doc = yaml.safe_load(topology.render_join(config, topo, topo.workers[1], token="abcdef.0123456789abcdef",
                                                   ca_cert_hash="sha256:" + "0" * 64,
                                                   api_server_endpoint=topo.api_server_endpoint))
    return init_docs + [join_doc]


def kubeadm_docs(environ):
    return [d for d in rendered(environ) if d["apiVersion"] == "kubeadm.k8s.io/v1beta4"]


def test_the_schema_check_catches_a_misplaced_or_mistyped_field():
    assert schema_problems({"apiVersion": "x", "kind": "JoinConfiguration", "token": "t"},
                           KUBEADM_V1BETA4["JoinConfiguration"]) == [".token: not a field of the kubeadm API"]
    assert schema_problems({"nodeRegistration": {"kubeletExtraArgs": {"node-ip": "1.2.3.4"}}},
                           KUBEADM_V1BETA4["JoinConfiguration"]) == [
        ".nodeRegistration.kubeletExtraArgs: expected a list, got dict"]  # the v1beta3 form


@pytest.mark.parametrize("kind", sorted(KUBEADM_V1BETA4), ids=str)
def test_kubeadm_configs_use_only_fields_of_the_kubeadm_api(environ, kind):
    docs = [d for d in kubeadm_docs(environ) if d["kind"] == kind]
    assert len(docs) == 1
    assert schema_problems(docs[0], KUBEADM_V1BETA4[kind]) == []
    for field in REQUIRED.get(kind, ()):
        assert field in docs[0]


def test_kubelet_configuration_uses_the_systemd_cgroup_driver_like_containerd(environ):
    kubelet = next(d for d in rendered(environ) if d["kind"] == "KubeletConfiguration")
    assert (kubelet["apiVersion"], kubelet["cgroupDriver"]) == ("kubelet.config.k8s.io/v1beta1", "systemd")


@pytest.mark.parametrize("overrides, control_ip, worker2_ip", [
    ((), "192.168.56.10", "192.168.56.12"),
    (("cluster.control_plane_ip=10.20.30.40",), "10.20.30.40", "10.20.30.42"),
], ids=["defaults", "other-network"])
def test_kubeadm_advertises_and_registers_on_the_host_only_addresses(environ, overrides, control_ip, worker2_ip):
    docs = {d["kind"]: d for d in rendered(environ, *overrides)}
    init, cluster, join = docs["InitConfiguration"], docs["ClusterConfiguration"], docs["JoinConfiguration"]
    assert init["localAPIEndpoint"]["advertiseAddress"] == control_ip
    assert init["nodeRegistration"]["kubeletExtraArgs"] == [{"name": "node-ip", "value": control_ip}]
    assert cluster["controlPlaneEndpoint"] == f"{control_ip}:6443"
    assert join["nodeRegistration"]["kubeletExtraArgs"] == [{"name": "node-ip", "value": worker2_ip}]
    assert join["nodeRegistration"]["name"] == "worker2"
    assert join["discovery"]["bootstrapToken"]["apiServerEndpoint"] == f"{control_ip}:6443"


def test_the_pod_subnet_matches_the_network_addon(environ):
    cluster = next(d for d in kubeadm_docs(environ) if d["kind"] == "ClusterConfiguration")
    image, network = steps.flannel_facts((ROOT / steps.FLANNEL_MANIFEST).read_text())
    assert cluster["networking"]["podSubnet"] == network == config_module.ClusterConfig().pod_subnet
    assert not ipaddress.IPv4Network(network).overlaps(ipaddress.IPv4Network(cluster["networking"]["serviceSubnet"]))
    assert re.fullmatch(r"docker\.io/flannel/flannel:v\d+\.\d+\.\d+", image), "flannel must be pinned"


def test_flannel_uses_the_host_only_interface():
    daemonset = next(d for d in yaml.safe_load_all((ROOT / steps.FLANNEL_MANIFEST).read_text())
                     if d["kind"] == "DaemonSet")
    container = daemonset["spec"]["template"]["spec"]["containers"][0]
    assert f"--iface={topology.HOST_ONLY_INTERFACE}" in container["args"]


def test_kubeadm_configs_hold_no_token():
    for name in ("init.yaml", "join.yaml"):
        text = (ROOT / "scripts/kubeadm" / name).read_text()
        assert not re.search(r"[a-z0-9]{6}\.[a-z0-9]{16}", text), f"{name} holds a bootstrap token"
    assert "token: ${token}" in (ROOT / "scripts/kubeadm/join.yaml").read_text()


def manifest_docs():
    for folder in ADDON_MANIFESTS:
        for path in sorted((ROOT / folder).glob("*.yaml")):
            if path.name == "kustomization.yaml":
                continue
            for index, doc in enumerate(yaml.safe_load_all(path.read_text())):
                if doc:
                    yield pytest.param(doc, id=f"{path.relative_to(ROOT)}#{index}:{doc['kind']}/{doc['metadata']['name']}")


@pytest.mark.parametrize("doc", list(manifest_docs()))
def test_addon_manifests_validate_against_the_kubernetes_schemas(doc):
    import kubernetes_validate

    assert kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True) == "1.31"


@pytest.mark.parametrize("folder", ADDON_MANIFESTS, ids=str)
def test_each_kustomization_lists_every_manifest_of_its_folder(folder):
    listed = yaml.safe_load((ROOT / folder / "kustomization.yaml").read_text())["resources"]
    present = sorted(p.name for p in (ROOT / folder).glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == present


@pytest.mark.parametrize("doc", [d for d in manifest_docs() if d.values[0]["kind"] in
                                 ("Deployment", "StatefulSet", "DaemonSet")])
def test_addon_images_are_pinned(doc):
    spec = doc["spec"]["template"]["spec"]
    for container in spec.get("initContainers", []) + spec["containers"]:
        assert re.search(r":[0-9v][\w.-]*$", container["image"]) and not container["image"].endswith(":latest")


def shipped_files():
    for folder in ("scripts", "k8s", "jobs", "docker"):
        for path in sorted((ROOT / folder).rglob("*")):
            # installed dependencies are not ours to vet
            if "node_modules" in path.parts or not path.is_file() or path.stat().st_size > 1_000_000:
                continue
            if path.suffix not in (".png", ".jpg", ".ico", ".woff2"):
                yield path
    for name in ("Jenkinsfile", "Vagrantfile"):
        if (ROOT / name).is_file():
            yield ROOT / name


@pytest.mark.parametrize("pattern, why", [
    (r"(?i)weave(works)?[-/ ]?net|weaveworks|cloud\.weave\.works", "Weave Net is discontinued"),
    (r"apt\.kubernetes\.io|packages\.cloud\.google\.com/apt", "the old Kubernetes apt repositories are gone"),
], ids=["no-weave-net", "no-apt.kubernetes.io"])
def test_no_script_or_manifest_uses_a_retired_source(pattern, why):
    offenders = [str(p.relative_to(ROOT)) for p in shipped_files()
                 if re.search(pattern, p.read_text(errors="replace"))]
    assert offenders == [], why


def test_the_provisioning_script_installs_kubernetes_from_pkgs_k8s_io_pinned_and_held():
    text = (ROOT / "scripts/packer/provision.sh").read_text()
    assert "https://pkgs.k8s.io/core:/stable:/v${k8s_minor}/deb/" in text
    for package in ("kubelet", "kubeadm", "kubectl"):
        assert f'"{package}=${{k8s_version}}-*"' in text
    assert "apt-mark hold kubelet kubeadm kubectl" in text


@pytest.mark.parametrize("output, expected", [
    ("1,,box-name,a/b\n1,,box-provider,virtualbox\n1,,box-version,1.0\n1,,box-name,c/d\n"
     "1,,box-provider,virtualbox\n1,,box-version,2.0\n", {("a/b", "1.0"), ("c/d", "2.0")}),
    ("1,,ui,info,There are no installed boxes! Use `vagrant box add` to add some.\n", set()),
], ids=["two-boxes", "none"])
def test_installed_boxes(output, expected):
    assert facts.installed_boxes(output) == expected


def test_machine_states():
    output = ("1,control,metadata,provider,virtualbox\n1,control,state,running\n"
              "1,control,state-human-short,running\n1,worker1,state,poweroff\n1,,ui,info,Current machine states:\n")
    assert facts.machine_states(output) == {"control": "running", "worker1": "poweroff"}


@pytest.mark.parametrize("output, endpoint", [
    ("kubeadm join 192.168.56.10:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:"
     + "a" * 64 + " \n", "192.168.56.10:6443"),
    ("W0101 warning line\nkubeadm join 10.0.0.1:6443 --token abcdef.0123456789abcdef \\\n"
     "\t--discovery-token-ca-cert-hash sha256:" + "a" * 64 + "\n", "10.0.0.1:6443"),
], ids=["one-line", "continued-after-a-warning"])
def test_join_ticket_reads_the_join_command(output, endpoint):
    ticket = facts.join_ticket(output)
    assert (ticket.api_server_endpoint, ticket.token, ticket.token_id) == (endpoint, "abcdef.0123456789abcdef", "abcdef")
    assert "0123456789abcdef" not in repr(ticket)


def test_join_ticket_refuses_other_output_without_quoting_it():
    from pipeline.errors import ClusterCheckFailed

    with pytest.raises(ClusterCheckFailed) as caught:
        facts.join_ticket("--token abcdef.0123456789abcdef but no join line")
    assert "0123456789abcdef" not in str(caught.value)


@pytest.mark.parametrize("output, rejected", [
    ('could not find a JWS signature in the cluster-info ConfigMap for token ID "abcdef"', True),
    ('token id "abcdef" is invalid for this cluster or it has expired. Use "kubeadm token create"', True),
    ("[ERROR Swap]: running with swap on is not supported", False),
], ids=["no-signature", "expired", "swap-on"])
def test_token_rejected(output, rejected):
    assert facts.token_rejected(output) is rejected


def test_exportable_leaves_the_callers_value_whole():
    listing = json.dumps({"items": [{"kind": "ConfigMap", "metadata": {"name": "a", "uid": "1"}, "data": {}}]})
    assert facts.exportable(listing) == [{"kind": "ConfigMap", "metadata": {"name": "a"}, "data": {}}]


def test_the_storage_step_installs_the_default_storage_class_every_claim_uses():
    docs = [d for d in yaml.safe_load_all((ROOT / "k8s/storage/local-path.yaml").read_text()) if d]
    [storage_class] = [d for d in docs if d["kind"] == "StorageClass"]
    assert storage_class["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    assert storage_class["volumeBindingMode"] == "WaitForFirstConsumer"
    [provisioner] = [d for d in docs if d["kind"] == "Deployment"]
    assert provisioner["metadata"]["namespace"] == steps.STORAGE_NAMESPACE
    assert provisioner["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v0.0.30")
    claims = []
    for path in sorted((ROOT / "k8s").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict):
                continue
            if doc.get("kind") == "PersistentVolumeClaim":
                claims.append((path.name, doc["spec"]))
            for template in (doc.get("spec") or {}).get("volumeClaimTemplates") or ():
                claims.append((path.name, template["spec"]))
    assert {"pvc.yaml", "claim.yaml"} <= {name for name, _ in claims}  # jenkins-home and the smoke test's
    assert [name for name, spec in claims if "storageClassName" in spec] == [], "every claim takes the default class"
