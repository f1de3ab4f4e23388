"""The Jenkins area: the token, the version, the build agents, the credential ids, the jobs.

Every read is a GET of Jenkins' REST API through python-jenkins (``/computer/api/json``,
``/label/NAME/api/json``, the credentials store's ``api/json`` listing ids only), so a user with
Overall/Read and the jobs' Job/ExtendedRead is enough, and no credential value is ever fetched.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Iterator

from pipeline.doctor import Finding, Probe, Status, Unreachable

AREA = "jenkins"
POD_LABEL = "pinotage"  # the Kubernetes plugin's pod template the pipeline's agent label names
HYPERVISOR_LABEL = "hypervisor"  # the permanent agent on the machine that hosts the VMs
BUILT_IN = "hudson.model.Hudson$MasterComputer"
CREDENTIALS = "credentials/store/system/domain/_/api/json?tree=credentials[id]"
COMPUTERS = "computer/api/json?tree=computer[_class,displayName,numExecutors,offline,assignedLabels[name]]"
_PINNED_RE = re.compile(r"jenkins/jenkins:(\d+(?:\.\d+)+)")


def check(probe: Probe) -> Iterator[Finding]:
    """Yield the Jenkins checks."""
    from pipeline import jenkins as jenkins_client
    from pipeline import jobs
    from pipeline.errors import JenkinsError

    found = probe.finding(AREA)
    client = jenkins_client.connect(probe.config, probe.environ, need_token=True)
    try:
        user, version = client.whoami(), client.version()
    except JenkinsError as e:
        raise Unreachable("token", e.message, e.hint or "check jenkins.url and that Jenkins is up") from None
    yield found("token", Status.OK, f"user {user} signs in to {client.url}")
    yield _version(found, version, probe.root)
    computers = (client.get_json(COMPUTERS) or {}).get("computer") or []
    yield _executors(found, computers)
    yield _pod_template(found, client)
    yield _hypervisor(found, computers)
    rendered = jobs.render(probe.root / "jobs")
    yield _credentials(found, client, used_credential_ids(probe.root, rendered))
    yield _jobs(found, client, rendered)


def _version(found: Callable[..., Finding], running: str, root: Path) -> Finding:
    dockerfile = root / "docker/jenkins/Dockerfile"
    pinned = _PINNED_RE.search(dockerfile.read_text()) if dockerfile.is_file() else None
    if pinned is None:
        return found("version", Status.SKIPPED, f"Jenkins {running}; docker/jenkins/Dockerfile pins no version")
    if _numbers(running) < _numbers(pinned.group(1)):
        return found("version", Status.FAIL, f"Jenkins {running} is older than {pinned.group(1)}, which"
                     " docker/jenkins/Dockerfile pins", "upgrade the controller to the pinned LTS")
    return found("version", Status.OK, f"Jenkins {running} (pinned: {pinned.group(1)})")


def _executors(found: Callable[..., Finding], computers: list[dict]) -> Finding:
    built_in = next((c for c in computers if c.get("_class") == BUILT_IN), None)
    if built_in is None:
        return found("controller executors", Status.SKIPPED, "the built-in node is not listed")
    if built_in.get("numExecutors"):
        return found("controller executors", Status.FAIL,
                     f"the controller has {built_in['numExecutors']} executors: builds run beside JENKINS_HOME",
                     "set numExecutors: 0 (docker/jenkins/casc.yaml) so builds run in agent pods")
    return found("controller executors", Status.OK, "0: the controller runs no build")


def _pod_template(found: Callable[..., Finding], client: Any) -> Finding:
    clouds = (client.get_json(f"label/{POD_LABEL}/api/json?tree=name,clouds[name]") or {}).get("clouds") or []
    if not clouds:
        return found("pod template", Status.FAIL, f"no cloud provisions label {POD_LABEL}: builds would wait forever",
                     "configure the Kubernetes cloud and its pinotage pod template (docker/jenkins/casc.yaml)")
    return found("pod template", Status.OK, f"label {POD_LABEL} is provisioned by {len(clouds)} cloud(s)")


def _hypervisor(found: Callable[..., Finding], computers: list[dict]) -> Finding:
    agents = [c for c in computers if c.get("_class") != BUILT_IN
              and HYPERVISOR_LABEL in {label.get("name") for label in c.get("assignedLabels") or ()}]
    if not agents:
        return found("hypervisor agent", Status.FAIL, f"no agent labelled {HYPERVISOR_LABEL}: rebuild-cluster"
                     " cannot run", "declare the agent in casc.yaml and start it on the VM host (docs/jenkins.md)")
    online = [c["displayName"] for c in agents if not c.get("offline")]
    if not online:
        return found("hypervisor agent", Status.FAIL, f"{agents[0]['displayName']} is offline",
                     "start the agent on the VM host (docs/jenkins.md)")
    return found("hypervisor agent", Status.OK, f"{', '.join(online)} online")


def _credentials(found: Callable[..., Finding], client: Any, wanted: set[str]) -> Finding:
    listed = client.get_json(CREDENTIALS)
    if listed is None:
        return found("credential ids", Status.FAIL, "Jenkins has no credentials store API",
                     "install the credentials plugin (docker/jenkins/plugins.txt)")
    have = {c.get("id") for c in listed.get("credentials") or ()}
    missing = sorted(wanted - have)
    if missing:
        return found("credential ids", Status.FAIL, f"not in Jenkins' store: {', '.join(missing)}",
                     "declare them in casc.yaml (values from the jenkins-credentials Secret)")
    return found("credential ids", Status.OK, f"all {len(wanted)} ids the Jenkinsfile and jobs/ use exist")


def _jobs(found: Callable[..., Finding], client: Any, rendered: list) -> Finding:
    from pipeline import jenkins as jenkins_client
    from pipeline import jobs

    live = jenkins_client.live_configs(client, [job.name for job in rendered])
    drifted = [job.name for job in rendered if jobs.compare(job, live[job.name]).state != "same"]
    if drifted:
        return found("jobs", Status.FAIL, f"differ from jobs/: {', '.join(drifted)}",
                     "see 'pinotage jobs diff'; 'pinotage jobs update' (the seed job) applies them")
    return found("jobs", Status.OK, f"all {len(rendered)} jobs match jobs/")


def used_credential_ids(root: Path, rendered: list) -> set[str]:
    """Return the credential ids the Jenkinsfile, the rendered jobs and JCasC itself name."""
    import xml.etree.ElementTree as ET

    import yaml

    from pipeline import casc

    uses = [cid for job in rendered for cid, _ in casc.used_in_job(ET.fromstring(job.xml), job.name)]
    jenkinsfile = root / "Jenkinsfile"
    if jenkinsfile.is_file():
        uses += [cid for cid, _ in casc.used_in_jenkinsfile(jenkinsfile.read_text(), "Jenkinsfile")]
    casc_file = root / casc.CASC_FILE
    if casc_file.is_file():
        uses += casc.used_in_casc(yaml.safe_load(casc_file.read_text()))
    return set(uses)


def _numbers(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))
