"""Jenkins on the cluster: docker/jenkins (image, plugins, JCasC) and k8s/jenkins (manifests)."""

from __future__ import annotations

import ipaddress
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from pipeline import jobs

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s" / "jenkins"
DOCKER = ROOT / "docker" / "jenkins"
KUBERNETES_VERSION = "1.31.0"
MINIMUM_LTS = (2, 426, 3)  # CVE-2024-23897: arbitrary file read through the CLI
# Plugins the jobs or the Jenkinsfile need that come in as dependencies of those listed.
DEPENDENCIES = {"branch-api", "cloudbees-folder", "github", "workflow-job", "credentials"}
# Jenkinsfile steps and options -> the plugin that provides them.
STEPS = {"milestone(": "pipeline-milestone-step", "timestamps()": "timestamper",
         "withCredentials(": "credentials-binding", "disableConcurrentBuilds()": "workflow-job",
         "pipeline {": "workflow-aggregator"}


def documents() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            out += [(f"{path.name}:{doc['kind']}", doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return out


def one(kind: str) -> dict:
    [doc] = [doc for _, doc in documents() if doc["kind"] == kind]
    return doc


def plugins() -> dict[str, str]:
    lines = [line.split("#")[0].strip() for line in (DOCKER / "plugins.txt").read_text().splitlines()]
    return dict(line.split(":", 1) for line in lines if line)


@pytest.mark.parametrize("doc", [d for _, d in documents()], ids=[n for n, _ in documents()])
def test_manifest_validates(doc):
    import kubernetes_validate

    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest():
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def test_deployment_keeps_jenkins_home_on_the_pvc_with_its_service_account():
    pod = one("Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    claim = volumes[mounts["/var/jenkins_home"]]["persistentVolumeClaim"]["claimName"]
    assert claim == one("PersistentVolumeClaim")["metadata"]["name"]
    assert pod["serviceAccountName"] == one("ServiceAccount")["metadata"]["name"]
    assert one("Deployment")["spec"]["strategy"]["type"] == "Recreate"


def test_service_is_jenkins_service_and_reaches_the_pod():
    service = one("Service")
    assert service["metadata"]["name"] == "jenkins-service"
    labels = one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    nginx = (ROOT / "scripts/nginx/jenkins.conf").read_text()
    assert service["spec"]["type"] == "ClusterIP"
    port = {p["name"]: p["port"] for p in service["spec"]["ports"]}["http"]
    assert re.findall(r"^\s*server ([\d.]+:\d+);", nginx, re.M) == [f"{service['spec']['clusterIP']}:{port}"]
    from pipeline import config

    subnet = ipaddress.ip_network(config.ClusterConfig().service_subnet)
    assert ipaddress.ip_address(service["spec"]["clusterIP"]) in subnet


def test_image_is_a_fixed_lts():
    version = re.search(r"ARG JENKINS_IMAGE=\S*jenkins/jenkins:(\d+)\.(\d+)\.(\d+)-lts",
                        (DOCKER / "Dockerfile").read_text())
    assert version, "the Dockerfile must pin a Jenkins LTS version"
    assert tuple(int(n) for n in version.groups()) >= MINIMUM_LTS


def test_the_controller_image_carries_plugins_and_jcasc_and_the_agent_image_the_tools():
    controller = (DOCKER / "Dockerfile").read_text()
    for needed in ("jenkins-plugin-cli", "CASC_JENKINS_CONFIG"):
        assert needed in controller, needed
    assert "pinotage --version" not in controller and "apt-get install" not in controller, "the controller builds nothing"
    agent = (ROOT / "docker/ci-agent/Dockerfile").read_text()
    for tool in ("git", "python3", "--require-hashes", "pinotage --version"):
        assert tool in agent, tool


def test_every_plugin_is_pinned():
    listed = plugins()
    assert listed and all(re.fullmatch(r"[\w.-]+", v) and v != "latest" for v in listed.values()), listed


def test_plugins_cover_the_jobs_and_the_jenkinsfile():
    needed = set()
    for job in jobs.render(ROOT / "jobs"):
        needed |= {e.get("plugin").split("@")[0] for e in ET.fromstring(job.xml).iter() if e.get("plugin")}
        text = job.xml.decode()
        needed |= {name for marker, name in (("timestamper", "timestamper"), ("build__timeout", "build-timeout"),
                                             ("credentialsbinding", "credentials-binding"),
                                             ("hudson.plugins.git", "git")) if marker in text}
    jenkinsfile = (ROOT / "Jenkinsfile").read_text()
    needed |= {plugin for step, plugin in STEPS.items() if step in jenkinsfile}
    assert needed - set(plugins()) - DEPENDENCIES == set()


def test_casc_sets_the_security_realm_and_the_url_without_secrets():
    casc = yaml.safe_load((DOCKER / "casc.yaml").read_text())
    assert casc["jenkins"]["securityRealm"]["local"]["allowsSignup"] is False
    users = casc["jenkins"]["securityRealm"]["local"]["users"]
    assert [u["id"] for u in users] == ["admin", "pinotage-seed"]
    for user in users:  # from the environment or the mounted Secret, never the file
        assert re.fullmatch(r"\$\{(readFile:/run/secrets/pinotage/[\w-]+|[A-Z_]+)\}", user["password"]), user["id"]
    assert casc["unclassified"]["location"]["url"] == "${PINOTAGE_JENKINS_URL}"
    assert casc["security"]["apiToken"]["creationOfLegacyTokenEnabled"] is False
    assert "crumbIssuer" in casc["jenkins"]


def test_every_variable_casc_reads_is_set_by_the_deployment_from_a_secret_or_a_value():
    casc = (DOCKER / "casc.yaml").read_text()
    needed = set(re.findall(r"\$\{([A-Z_]+)\}", casc))  # ${NAME:-default} has a default and is left out
    [container] = one("Deployment")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert needed - set(env) == set()
    for name in ("PINOTAGE_GITHUB_WEBHOOK_SECRET", "GITHUB_APP_PRIVATE_KEY", "JENKINS_ADMIN_PASSWORD"):
        assert "secretKeyRef" in env[name]["valueFrom"], f"{name} must come from a Secret"


def test_casc_takes_the_webhook_secret_for_the_github_plugin():
    casc = yaml.safe_load((DOCKER / "casc.yaml").read_text())
    [config] = casc["unclassified"]["gitHubPluginConfig"]["hookSecretConfigs"]
    declared = {body["id"]: (kind, body) for domain in casc["credentials"]["system"]["domainCredentials"]
                for entry in domain["credentials"] for kind, body in entry.items()}
    kind, body = declared[config["credentialsId"]]
    assert (kind, body["secret"]) == ("string", "${PINOTAGE_GITHUB_WEBHOOK_SECRET}")
    assert "github" in plugins() and "github-branch-source" in plugins()
