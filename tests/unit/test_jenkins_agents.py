"""Where Jenkins builds run: one throwaway pod per build in `ci` (k8s/ci, docker/ci-*), a controller
that runs none (docker/jenkins/casc.yaml), the hypervisor agent for the VM jobs, and every
credential declared in JCasC and used by the Jenkinsfile or jobs/."""

from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from pipeline import casc, jobs
from tests.conftest import ROOT

CI = ROOT / "k8s" / "ci"
TEMPLATE = CI / "agent-pod.yaml"
CASC = ROOT / "docker" / "jenkins" / "casc.yaml"
KUBERNETES_VERSION = "1.31.0"


def docs_in(folder: Path) -> list[tuple[str, dict]]:
    return [(f"{p.name}:{d['kind']}:{d['metadata']['name'] if 'name' in d['metadata'] else '-'}", d)
            for p in sorted(folder.glob("*.yaml")) if p.name != "kustomization.yaml"
            for d in yaml.safe_load_all(p.read_text()) if d]


def pod() -> dict:
    return yaml.safe_load(TEMPLATE.read_text())


def containers(spec: dict) -> dict[str, dict]:
    return {c["name"]: c for c in spec.get("initContainers", []) + spec["containers"]}


def casc_doc() -> dict:
    return yaml.safe_load(CASC.read_text())


def quantity(text) -> float:
    units = {"m": 1e-3, "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30}
    text = str(text)
    for unit, factor in units.items():
        if text.endswith(unit):
            return float(text[:-len(unit)]) * factor
    return float(text)


@pytest.mark.parametrize("doc", [d for _, d in docs_in(CI)], ids=[n for n, _ in docs_in(CI)])
def test_ci_manifests_and_the_pod_template_validate(doc):
    import kubernetes_validate

    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_kustomization_creates_everything_but_the_pod_template():
    listed = yaml.safe_load((CI / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in CI.glob("*.yaml") if p.name not in ("kustomization.yaml",
                                                                                          TEMPLATE.name))


def test_no_agent_pod_mounts_a_credential_or_a_service_account_token():
    spec = pod()["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert all(set(v) <= {"name", "emptyDir"} for v in spec["volumes"]), "only emptyDir volumes"
    assert not any("envFrom" in c or any("valueFrom" in e for e in c.get("env", ()))
                   for c in containers(spec).values())
    accounts = {d["metadata"]["name"]: d for _, d in docs_in(CI) if d["kind"] == "ServiceAccount"}
    assert accounts[spec["serviceAccountName"]]["automountServiceAccountToken"] is False
    assert accounts["default"]["automountServiceAccountToken"] is False
    bound = [s for _, d in docs_in(CI) if d["kind"] == "RoleBinding" for s in d["subjects"]]
    assert bound == [{"kind": "ServiceAccount", "name": "jenkins", "namespace": "jenkins"}]  # not the agents


def test_the_build_reaches_only_its_own_engine_over_mutual_tls():
    spec = pod()["spec"]
    found = containers(spec)
    env = {e["name"]: e["value"] for e in found["pinotage"]["env"]}
    assert env == {"DOCKER_HOST": "tcp://127.0.0.1:2376", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": "/certs/client"}
    engine = found["engine"]
    assert engine["restartPolicy"] == "Always", "a native sidecar: up before the build container starts"
    assert engine["startupProbe"]["tcpSocket"]["port"] == 2376
    mounts = {c: {m["mountPath"]: m["name"] for m in found[c]["volumeMounts"]} for c in found}
    assert found["certs"]["command"] == ["engine-certs", "/certs/server", "/certs/client"]
    assert mounts["certs"]["/certs/server"] == mounts["engine"]["/certs/server"]
    assert mounts["certs"]["/certs/client"] == mounts["pinotage"]["/certs/client"]
    assert "/certs/client" not in mounts["engine"] and "/certs/server" not in mounts["pinotage"]
    start = (ROOT / "docker/ci-engine/engine-start").read_text()
    assert "--host=tcp://127.0.0.1:2376 --tlsverify" in start


def test_no_container_is_privileged_the_engine_adds_two_capabilities_and_the_rest_is_locked_down():
    found = containers(pod()["spec"])
    assert not [name for name, c in found.items() if c["securityContext"].get("privileged")]
    engine = found["engine"]["securityContext"]
    assert engine["capabilities"] == {"add": ["SYS_ADMIN", "NET_ADMIN"]}  # what the engine proved to need
    assert engine["seccompProfile"] == engine["appArmorProfile"] == {"type": "Unconfined"}
    for name in ("certs", "pinotage"):
        context = found[name]["securityContext"]
        assert context["runAsNonRoot"] and context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
    namespaces = {d["metadata"]["name"]: d for path in (ROOT / "k8s").rglob("namespace.yaml")
                  for d in yaml.safe_load_all(path.read_text()) if d}
    privileged = {n for n, d in namespaces.items()
                  if d["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") == "privileged"}
    assert privileged == {"ci"}


def test_the_quota_admits_its_pod_count_of_builds_and_every_container_is_bounded():
    found = containers(pod()["spec"])
    assert all({"requests", "limits"} <= set(c["resources"]) for c in found.values())
    running = [c for c in found.values() if c["name"] != "certs"]  # the sidecar and the build container
    quota = next(d for _, d in docs_in(CI) if d["kind"] == "ResourceQuota")["spec"]["hard"]
    pods = int(quota["pods"])
    for key, value in quota.items():
        if "." in key:
            kind, resource = key.split(".", 1)
            need = sum(quantity(c["resources"][kind][resource]) for c in running)
            assert need * pods <= quantity(value), f"{pods} builds need {key} {need * pods}, quota {value}"
    assert any(d["kind"] == "LimitRange" for _, d in docs_in(CI))


def test_the_agent_images_start_from_the_apps_build_base():
    app = re.search(r"^ARG BUILD_BASE=(\S+)", (ROOT / "docker/presentation/Dockerfile").read_text(), re.M).group(1)
    for dockerfile, arg in (("docker/ci-agent/Dockerfile", "AGENT_BASE"), ("docker/ci-engine/Dockerfile", "ENGINE_BASE")):
        assert re.search(rf"^ARG {arg}=(\S+)", (ROOT / dockerfile).read_text(), re.M).group(1) == app
    images = {c["image"] for c in containers(pod()["spec"]).values()}
    assert images == {"pinotage/ci-engine:0.1.0", "pinotage/ci-agent:0.1.0"}


def test_engine_certs_makes_a_pod_ca_whose_certificates_verify(tmp_path):
    server, client = tmp_path / "server", tmp_path / "client"
    server.mkdir(), client.mkdir()
    done = subprocess.run([str(ROOT / "docker/ci-engine/engine-certs"), str(server), str(client)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in server.iterdir()) == ["ca.pem", "cert.pem", "key.pem"]
    assert (server / "ca.pem").read_bytes() == (client / "ca.pem").read_bytes()
    for folder, purpose in ((server, "sslserver"), (client, "sslclient")):
        verify = subprocess.run(["openssl", "verify", "-purpose", purpose, "-CAfile", str(folder / "ca.pem"),
                                 str(folder / "cert.pem")], capture_output=True, text=True)
        assert verify.returncode == 0, verify.stdout + verify.stderr
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", str(server / "cert.pem")],
                          capture_output=True, text=True).stdout
    assert "IP Address:127.0.0.1" in text
    assert oct((client / "key.pem").stat().st_mode & 0o777) == "0o400"
    assert not list(tmp_path.rglob("ca-key.pem")), "the CA key is kept nowhere"


def test_engine_certs_names_a_folder_it_cannot_write(tmp_path):
    server, client = tmp_path / "server", tmp_path / "missing"
    server.mkdir()
    done = subprocess.run([str(ROOT / "docker/ci-engine/engine-certs"), str(server), str(client)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == f"engine-certs: cannot write to {client} (an emptyDir the pod mounts)"
    assert list(server.iterdir()) == []


# --- JCasC: where builds run -----------------------------------------------------------------

def test_the_controller_runs_no_build_and_each_build_gets_a_pod_in_ci_over_websocket():
    jenkins = casc_doc()["jenkins"]
    assert jenkins["numExecutors"] == 0
    [cloud] = [c["kubernetes"] for c in jenkins["clouds"]]
    assert cloud["namespace"] == "ci" and cloud["webSocket"] is True
    assert cloud["jenkinsUrl"].startswith("http://jenkins-service.jenkins.svc")
    [template] = cloud["templates"]
    assert template["namespace"] == "ci" and template["podRetention"] == "never"
    copied = re.search(r"^COPY k8s/ci/agent-pod.yaml (\S+)$", (ROOT / "docker/jenkins/Dockerfile").read_text(), re.M)
    assert template["yaml"] == f"${{readFile:{copied.group(1)}}}"
    assert template["agentContainer"] in containers(pod()["spec"]) and template["agentInjection"] is True
    assert int(cloud["containerCapStr"]) == int(next(d for _, d in docs_in(CI) if d["kind"] == "ResourceQuota")
                                                ["spec"]["hard"]["pods"])
    plugins = (ROOT / "docker/jenkins/plugins.txt").read_text()
    assert re.search(r"^kubernetes:\d+\.v[\w]+$", plugins, re.M), "the Kubernetes plugin, pinned"


def test_every_job_runs_on_a_label_jenkins_declares_and_the_vm_jobs_on_the_hypervisor():
    jenkins = casc_doc()["jenkins"]
    [node] = [n["permanent"] for n in jenkins["nodes"]]
    assert node["launcher"] == {"inbound": {"webSocket": True}}
    labels = {node["labelString"]} | {t["label"] for c in jenkins["clouds"] for t in c["kubernetes"]["templates"]}
    where = {}
    for job in jobs.render(ROOT / "jobs"):
        node_label = ET.fromstring(job.xml).findtext("assignedNode")
        if node_label is not None:
            where[job.name] = node_label
    vm_jobs = {"rebuild-box", "rebuild-cluster"}
    assert {"jobs-seed", "drift-check"} | vm_jobs <= set(where)
    assert where == {name: "hypervisor" if name in vm_jobs else "pinotage" for name in where}
    assert set(where.values()) <= labels
    assert re.search(r"agent \{ label '(\w+)' \}", (ROOT / "Jenkinsfile").read_text()).group(1) in labels


def test_the_controller_pod_is_hardened_and_pinned():
    [deployment] = [d for d in yaml.safe_load_all((ROOT / "k8s/jenkins/deployment.yaml").read_text()) if d]
    spec = deployment["spec"]["template"]["spec"]
    [container] = spec["containers"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"]
    assert not any("hostPath" in v for v in spec["volumes"]), "no Docker socket, no host path"
    assert [p["containerPort"] for p in container["ports"]] == [8080], "no inbound agent port"
    image, _, tag = container["image"].rpartition(":")
    lts = re.search(r"jenkins/jenkins:(\d+\.\d+\.\d+)-lts", (ROOT / "docker/jenkins/Dockerfile").read_text()).group(1)
    assert tag == lts, "the controller image is tagged with the LTS it is built on"


# --- credentials: declared in JCasC, used by the Jenkinsfile and jobs/ -----------------------------

def test_the_repository_declares_exactly_the_credentials_it_uses():
    rendered = jobs.render(ROOT / "jobs")
    assert jobs.credentials_declared(rendered, ROOT / "Jenkinsfile", CASC) == []
    ids = casc.declared(casc_doc())
    assert {"pinotage-registry", "pinotage-kubeconfig", "pinotage-jenkins"} <= set(ids)
    for cid in ids:  # every value from the Secret's files or the environment, never the file itself
        body = next(b for d in casc_doc()["credentials"]["system"]["domainCredentials"] for e in d["credentials"]
                    for b in e.values() if b["id"] == cid)
        secret_fields = {k: v for k, v in body.items() if k in ("password", "secret", "secretBytes", "privateKey")}
        assert secret_fields and all(re.fullmatch(r"\$\{[^}]+\}", v) for v in secret_fields.values()), cid


@pytest.mark.parametrize("change, expected", [
    (lambda text: text.replace("id: pinotage-kubeconfig", "id: pinotage-kubecfg"),
     ["Jenkinsfile:{}: credential 'pinotage-kubeconfig' is not declared in",
      "casc.yaml: credential 'pinotage-kubecfg' is declared but neither the Jenkinsfile nor jobs/ uses it"]),
    (lambda text: text.replace("id: pinotage-jenkins\n", "id: pinotage-jenkins-old\n"),
     ["jobs/ops.yaml: job 'jobs-seed': credential 'pinotage-jenkins' is not declared in",
      "casc.yaml: credential 'pinotage-jenkins-old' is declared but neither"]),
], ids=["renamed-in-casc", "seed-credential-missing"])
def test_jobs_check_names_a_credential_missing_from_jcasc_and_one_nobody_uses(tmp_path, change, expected):
    changed = tmp_path / "casc.yaml"
    changed.write_text(change(CASC.read_text()))
    problems = jobs.credentials_declared(jobs.render(ROOT / "jobs"), ROOT / "Jenkinsfile", changed)
    problems = [p.replace(str(ROOT) + "/", "").replace(str(tmp_path) + "/", "") for p in problems]
    for prefix in expected:
        head, _, tail = prefix.partition("{}")
        assert any(p.startswith(head) and tail.split(":")[-1] in p for p in problems), (prefix, problems)
    assert len(problems) >= len(expected)
