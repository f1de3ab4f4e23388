"""What the Jenkins double holds when a test seeds it: nodes, labels, clouds, credentials, users.

These run against the double only: a real Jenkins cannot be seeded from a test. Each is
read through python-jenkins or plain HTTP, as Pinotage and its peers read a real one.
"""

from __future__ import annotations

import secrets
import socket

import pytest
import requests

from tests.fakes.jenkins import Cloud, Credential, FakeJenkins, Job, Node, PodTemplate, User
from tests.fakes.jenkins.handler import JenkinsHandler

pytestmark = pytest.mark.integration

TOKEN = "11" + secrets.token_hex(16)
SECRETS = ("hunter2-registry", "ghp_" + "x" * 36)


@pytest.fixture
def seeded():
    """A Jenkins set up as production: no controller executors, a hypervisor agent, a pod template."""
    with FakeJenkins(users=[User("deployer", TOKEN),
                            User("viewer", TOKEN[::-1], frozenset({"Overall/Read", "Job/Read"}))],
                     crumbs=True, controller_executors=0,
                     nodes=[Node("hv1", labels=("hypervisor",), executors=2)],
                     clouds=[Cloud("kubernetes", (PodTemplate("pinotage", ("pinotage",)),))],
                     credentials=[Credential("dockerhub", username="bot", secret=SECRETS[0], description="Docker Hub"),
                                  Credential("github-token", kind="string", secret=SECRETS[1]),
                                  Credential("folder-only", store="team")]) as fake:
        yield fake


def get(fake: FakeJenkins, path: str, user: str = "deployer", token: str = TOKEN) -> requests.Response:
    return requests.get(fake.url + path, auth=(user, token), timeout=10)


def test_nodes_labels_and_clouds(seeded):
    import jenkins

    client = jenkins.Jenkins(seeded.url, "deployer", TOKEN)
    assert client.get_nodes() == [{"name": "Built-In Node", "offline": False}, {"name": "hv1", "offline": False}]
    assert client.get_node_info("(built-in)")["numExecutors"] == 0
    assert client.get_info()["numExecutors"] == 0
    agent = client.get_node_info("hv1")
    assert [label["name"] for label in agent["assignedLabels"]] == ["hypervisor", "hv1"]
    assert "<label>hypervisor</label>" in client.get_node_config("hv1")
    assert not client.node_exists("hv2")
    computers = get(seeded, "/computer/api/json?tree=computer[displayName,numExecutors]").json()
    assert computers["computer"] == [
        {"_class": "hudson.model.Hudson$MasterComputer", "displayName": "Built-In Node", "numExecutors": 0},
        {"_class": "hudson.slaves.SlaveComputer", "displayName": "hv1", "numExecutors": 2}]
    pinotage = get(seeded, "/label/pinotage/api/json").json()
    assert [cloud["name"] for cloud in pinotage["clouds"]] == ["kubernetes"] and pinotage["nodes"] == []
    hypervisor = get(seeded, "/label/hypervisor/api/json").json()
    assert hypervisor["clouds"] == [] and hypervisor["totalExecutors"] == 2
    assert get(seeded, "/label/nothing/api/json").json()["offline"] is True


def test_credentials_are_listed_by_id_and_never_shown(seeded):
    import jenkins

    answers = []
    for path in ("/credentials/store/system/domain/_/api/json?tree=credentials[id]",
                 "/manage/credentials/store/system/domain/_/api/json?tree=credentials[id]"):
        response = get(seeded, path)
        answers.append(response.text)
        assert [c["id"] for c in response.json()["credentials"]] == ["dockerhub", "github-token"]
    one = get(seeded, "/credentials/store/system/domain/_/credential/dockerhub/api/json")
    answers.append(one.text)
    assert one.json()["typeName"] == "Username with password" and one.json()["displayName"] == "bot/****** (Docker Hub)"
    assert get(seeded, "/credentials/store/system/domain/_/credential/nope/api/json").status_code == 404
    client = jenkins.Jenkins(seeded.url, "deployer", TOKEN)
    client.create_folder("team")
    assert [c["id"] for c in client.list_credentials("team")] == ["folder-only"]
    assert client.credential_exists("folder-only", "team") and not client.credential_exists("dockerhub", "team")
    assert not any(secret in answer for answer in answers for secret in SECRETS)
    refused = get(seeded, "/credentials/store/system/domain/_/api/json", "viewer", TOKEN[::-1])
    assert refused.status_code == 403 and "viewer is missing the Credentials/View permission" in refused.text


@pytest.mark.parametrize("method, path, user, status, missing", [
    ("GET", "/job/j/config.xml", "viewer", 403, "Job/Configure"),
    ("POST", "/job/j/config.xml", "viewer", 403, "Job/Configure"),
    ("POST", "/createItem?name=k", "viewer", 403, "Job/Create"),
    ("POST", "/job/j/doDelete", "viewer", 403, "Job/Delete"),
    ("POST", "/job/j/build", "viewer", 403, "Job/Build"),
    ("GET", "/job/j/api/json", "blind", 404, ""),
    ("GET", "/job/j/api/json", "discoverer", 403, "Job/Read"),
    ("GET", "/api/json", "nobody", 403, "Overall/Read"),
    ("GET", "/job/j/config.xml", "deployer", 200, ""),
], ids=["read-config", "write-config", "create", "delete", "build", "no-job-read-hides-the-job",
        "discover-without-read", "no-overall-read", "administrator"])
def test_permissions_as_jenkins_checks_them(method, path, user, status, missing):
    users = [User("deployer", TOKEN), User("viewer", "v" + TOKEN, {"Overall/Read", "Job/Read"}),
             User("blind", "b" + TOKEN, {"Overall/Read"}), User("discoverer", "d" + TOKEN, {"Overall/Read", "Job/Discover"}),
             User("nobody", "n" + TOKEN, set())]
    tokens = {u.name: u.token for u in users}
    with FakeJenkins(users=users) as fake:
        fake.jobs["j"] = Job("<project/>")
        before = fake.jobs["j"].config
        response = requests.request(method, f"{fake.url}{path}", data=b"<project><description>x</description></project>",
                                    headers={"Content-Type": "application/xml"}, auth=(user, tokens[user]),
                                    timeout=10, allow_redirects=False)
        assert response.status_code == status
        if missing:
            assert f"{user} is missing the {missing} permission" in response.text
        if status != 200:
            assert sorted(fake.jobs) == ["j"] and fake.jobs["j"].config == before and not fake.jobs["j"].builds


def test_a_session_request_needs_a_crumb_a_token_request_does_not():
    with FakeJenkins(users=[User("deployer", TOKEN)], crumbs=True) as fake:
        fake.allow_password("deployer", "correct horse")
        browser = requests.Session()
        login = browser.post(f"{fake.url}/j_spring_security_check", allow_redirects=False, timeout=10,
                             data={"j_username": "deployer", "j_password": "correct horse"})
        assert login.status_code == 302 and browser.cookies
        assert browser.get(f"{fake.url}/me/api/json", timeout=10).json()["id"] == "deployer"
        xml = {"Content-Type": "application/xml"}
        refused = browser.post(f"{fake.url}/createItem?name=a", data=b"<project/>", headers=xml, timeout=10)
        assert refused.status_code == 403 and "No valid crumb" in refused.text
        crumb = browser.get(f"{fake.url}/crumbIssuer/api/json", timeout=10).json()
        taken = browser.post(f"{fake.url}/createItem?name=a", data=b"<project/>", timeout=10,
                             headers={**xml, crumb["crumbRequestField"]: crumb["crumb"]})
        assert taken.status_code == 200
        by_token = requests.post(f"{fake.url}/createItem?name=b", data=b"<project/>", headers=xml,
                                 auth=("deployer", TOKEN), timeout=10)
        assert by_token.status_code == 200
        wrong = requests.post(f"{fake.url}/j_spring_security_check", allow_redirects=False, timeout=10,
                              data={"j_username": "deployer", "j_password": "wrong"})
        assert wrong.headers["Location"].endswith("/loginError") and not wrong.cookies
        assert sorted(fake.jobs) == ["a", "b"]


def test_the_double_answers_without_waiting_for_the_client_s_ack(monkeypatch):
    """Jetty sets TCP_NODELAY on each accepted socket; so does the double. Without it each answer's
    body, written after its headers, waits for the client's delayed ACK (~40 ms on loopback), which
    made every request ~45 ms and any benchmark counting requests unfair to the tool making more."""
    seen = []
    setup = JenkinsHandler.setup

    def recording_setup(handler):
        setup(handler)
        seen.append(handler.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    monkeypatch.setattr(JenkinsHandler, "setup", recording_setup)
    with FakeJenkins(users=[User("deployer", TOKEN)]) as fake:
        assert get(fake, "/api/json").status_code == 200
    assert seen and all(seen)
