"""`pinotage jobs update` and `diff` against Jenkins: the test double, or a real Jenkins.

Set PINOTAGE_TEST_JENKINS_URL (with PINOTAGE_TEST_JENKINS_USER and
PINOTAGE_TEST_JENKINS_TOKEN) to run the same tests against a real Jenkins; the
jobs they make carry a random prefix and are deleted afterwards (see
jenkins_target). The double runs with CSRF crumbs on. The tests
that need to reach inside the server (rotating its crumb, deleting every
leftover managed job) run against the double only.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import cli, jobs
from pipeline.errors import JenkinsError
from pipeline.jenkins import JenkinsClient
from tests.fakes.jenkins import FakeJenkins
from tests.integration.jenkins_target import jenkins_target

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
JOBS_YAML = """
- job-template:
    name: '{prefix}{job}'
    description: a Pinotage test job
    builders:
      - shell: 'pinotage {command}'

- project:
    name: pinotage-test
    prefix: '{prefix}'
    jobs:
      - '{prefix}{job}':
          job: build
          command: build --state s.json
      - '{prefix}{job}':
          job: smoke
          command: smoke --state s.json
      - '{prefix}{job}':
          job: history
          command: history --limit 3
"""


@pytest.fixture
def jenkins_server():
    """A Jenkins to write jobs to: the double with token auth and CSRF crumbs on, or a real one."""
    with jenkins_target() as server:
        yield server


@pytest.fixture
def jobs_dir(tmp_path, jenkins_server) -> Path:
    folder = tmp_path / "jobs"
    folder.mkdir()
    (folder / "test.yaml").write_text(JOBS_YAML.replace("'{prefix}'", repr(jenkins_server.prefix)))
    return folder


def run(argv: list[str], environ: dict[str, str], capsys) -> tuple[int, str, str]:
    code = cli.main(argv, environ)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def summary(err: str) -> tuple[int, int, int, int]:
    match = re.search(r"(\d+) created, (\d+) reconfigured, (\d+) deleted, (\d+) unchanged", err)
    assert match, err
    return tuple(int(n) for n in match.groups())


def test_update_creates_then_writes_nothing(jenkins_server, jobs_dir, environ, capsys):
    env = jenkins_server.environ(environ)
    code, _, err = run(["jobs", "update", "--jobs-dir", str(jobs_dir)], env, capsys)
    assert (code, summary(err)) == (0, (3, 0, 0, 0))
    names = {f"{jenkins_server.prefix}{n}" for n in ("build", "smoke", "history")}
    assert names <= set(jenkins_server.client().job_names())
    before = jenkins_server.posts()

    code, _, err = run(["jobs", "update", "--jobs-dir", str(jobs_dir)], env, capsys)
    assert (code, summary(err)) == (0, (0, 0, 0, 3))
    if jenkins_server.fake:
        assert jenkins_server.posts() == before, "an update with nothing changed sent a write"


def test_diff_shows_a_ui_edit_and_update_fixes_only_that_job(jenkins_server, jobs_dir, environ, capsys):
    env = jenkins_server.environ(environ)
    assert run(["jobs", "update", "--jobs-dir", str(jobs_dir)], env, capsys)[0] == 0
    assert run(["jobs", "diff", "--jobs-dir", str(jobs_dir)], env, capsys)[0] == 0

    # An edit in the UI: Jenkins saves the whole config, in its own layout.
    name = f"{jenkins_server.prefix}smoke"
    client = jenkins_server.client()
    edited = re.sub(r"^<\?xml[^>]*\?>", "<?xml version='1.1' encoding='UTF-8'?>", client.job_config(name))
    edited = edited.replace("pinotage smoke --state s.json", "pinotage smoke --state s.json; true")
    client.reconfigure(name, edited.encode())

    code, out, err = run(["jobs", "diff", "--jobs-dir", str(jobs_dir)], env, capsys)
    assert code == 1
    assert "-      <command>pinotage smoke --state s.json; true</command>" in out and f"jenkins/{name}" in out
    assert "1 of 3 jobs differ" in err

    before = jenkins_server.posts()
    code, _, err = run(["jobs", "update", "--jobs-dir", str(jobs_dir)], env, capsys)
    assert (code, summary(err)) == (0, (0, 1, 0, 2))
    if jenkins_server.fake:
        [write] = jenkins_server.fake.writes()[before:]
        assert write.path == f"/job/{name}/config.xml"
    assert run(["jobs", "diff", "--jobs-dir", str(jobs_dir)], env, capsys)[0] == 0


def test_diff_lists_a_missing_job(jenkins_server, jobs_dir, environ, capsys):
    code, out, _ = run(["jobs", "diff", "--jobs-dir", str(jobs_dir)], jenkins_server.environ(environ), capsys)
    assert code == 1
    assert f"+ {jenkins_server.prefix}build: not in Jenkins" in out


def test_update_deletes_only_its_own_leftovers(jenkins_server, jobs_dir, environ, capsys):
    if not jenkins_server.fake:
        pytest.skip("--delete-old would delete every Pinotage job on a shared Jenkins")
    env = jenkins_server.environ(environ)
    old = jobs_dir / "old.yaml"
    old.write_text("- job:\n    name: retired\n    builders: [{shell: 'pinotage history'}]\n")
    assert run(["jobs", "update", "--jobs-dir", str(jobs_dir)], env, capsys)[0] == 0
    jenkins_server.client().create("hand-made", b"<project><description>made in the UI</description></project>")
    old.unlink()

    code, _, err = run(["jobs", "update", "--jobs-dir", str(jobs_dir)], env, capsys)
    assert (code, summary(err)) == (0, (0, 0, 0, 3)), "deleted without --delete-old"
    code, _, err = run(["jobs", "update", "--jobs-dir", str(jobs_dir), "--delete-old"], env, capsys)
    assert (code, summary(err)) == (0, (0, 0, 1, 3))
    assert sorted(jenkins_server.fake.jobs) == ["build", "hand-made", "history", "smoke"]


# Which Jenkins each row stands for:
#   token-exempt:      Jenkins 2.96+ as installed: a POST authenticated with an API token needs no crumb,
#                      so a crumb gone stale does no harm (python-jenkins still sends the one it holds);
#   crumbs-for-tokens: a POST that must carry a valid crumb even with a token (a Jenkins checking every
#                      POST, or a session-authenticated request): a stale crumb is refused once, refetched.
@pytest.mark.parametrize("crumbs_for_tokens, stale_crumb, expected_posts, expected_fetches", [
    (False, False, [("/createItem", 200)], 1),
    (False, True, [("/createItem", 200)], 1),
    (True, False, [("/createItem", 200)], 1),
    (True, True, [("/createItem", 403), ("/createItem", 200)], 2),
], ids=["token-exempt-fresh-crumb", "token-exempt-crumb-gone-stale", "crumbs-for-tokens-fresh-crumb",
        "crumbs-for-tokens-crumb-gone-stale"])
def test_update_sends_crumbs_and_refetches_a_stale_one(jobs_dir, crumbs_for_tokens, stale_crumb, expected_posts,
                                                        expected_fetches):
    token = "11" + secrets.token_hex(16)
    with FakeJenkins(user="deployer", token=token, crumbs=True, crumbs_for_tokens=crumbs_for_tokens) as fake:
        client = JenkinsClient(fake.url, "deployer", token)
        rendered = jobs.render(jobs_dir)
        assert client.job_config(rendered[0].name) is None  # a read: python-jenkins takes its crumb now
        if stale_crumb:
            fake.rotate_crumb()
        client.create(rendered[0].name, rendered[0].xml)
        posts = [(r.path, r.status) for r in fake.writes()]
        crumb_fetches = sum(r.path == "/crumbIssuer/api/json" for r in fake.requests)
        assert rendered[0].name in fake.jobs
    assert posts == expected_posts
    assert crumb_fetches == expected_fetches
    assert all(r.headers.get("jenkins-crumb") for r in fake.writes())


def test_update_refetches_a_stale_crumb_only_once(jobs_dir):
    token = "11" + secrets.token_hex(16)
    # crumbs_for_tokens: this Jenkins checks the crumb of every POST (see the table above)
    with FakeJenkins(user="deployer", token=token, crumbs=True, crumbs_for_tokens=True) as fake:
        fake.issue_stale_crumbs = True  # as behind a proxy that loses the session the crumb belongs to
        client = JenkinsClient(fake.url, "deployer", token)
        with pytest.raises(JenkinsError, match="after fetching a fresh crumb"):
            client.create("x", b"<project/>")
        assert [r.status for r in fake.writes()] == [403, 403]
        assert "x" not in fake.jobs


@pytest.mark.parametrize("token_kind, code, expected", [
    ("wrong", 1, "could not"),
    ("password", 2, "does not look like a Jenkins API token"),
    ("missing", 2, "writing jobs needs jenkins.user and PINOTAGE_JENKINS_TOKEN"),
], ids=["wrong-token", "password-instead-of-token", "no-token"])
def test_update_auth_errors(jenkins_server, jobs_dir, environ, capsys, token_kind, code, expected):
    token = {"wrong": "11" + secrets.token_hex(16), "password": "hunter2-Secret!", "missing": ""}[token_kind]
    got, out, err = run(["jobs", "update", "--jobs-dir", str(jobs_dir)],
                        jenkins_server.environ(environ, token=token), capsys)
    assert got == code
    assert expected in err
    if token:
        assert token not in out + err
    if jenkins_server.fake:
        assert jenkins_server.fake.writes() == []


def test_fake_runs_on_its_own_and_prints_its_url():
    token = "11" + secrets.token_hex(16)
    process = subprocess.Popen([sys.executable, "-m", "tests.fakes.jenkins", "--port", "0", "--user", "u",
                                "--token", token, "--crumbs"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        client = JenkinsClient(url, "u", token)
        assert client.version() == "2.580.1"
        client.create("from-cli", b"<project><description/></project>")
        assert client.job_names() == ["from-cli"]
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.parametrize("method, path, body, headers, status", [
    ("GET", "/job/nope/api/json", None, {}, 404),
    ("GET", "/no/such/endpoint", None, {}, 404),
    ("PUT", "/job/build/config.xml", b"<project/>", {}, 405),
    ("POST", "/createItem?name=build", b"<project/>", {"Content-Type": "application/xml"}, 400),
    ("POST", "/createItem?name=new", b"<project/>", {}, 400),
    ("POST", "/createItem?name=new", b"<spaceship/>", {"Content-Type": "application/xml"}, 500),
    ("POST", "/job/build/buildWithParameters", None, {}, 400),
    ("POST", "/job/params/build", None, {}, 400),
    ("GET", "/crumbIssuer/api/json", None, {}, 404),
    ("GET", "/wsagents/", None, {"Upgrade": "websocket"}, 400),
    ("POST", "/job/build/config.xml", b"<flow-definition/>", {"Content-Type": "application/xml"}, 500),
    ("POST", "/job/build/createItem?name=x", b"<project/>", {"Content-Type": "application/xml"}, 404),
    ("GET", "/job/build/job/x/api/json", None, {}, 404),
    ("POST", "/createItem?name=x&mode=no.such.Type", None, {}, 400),
    ("GET", "/view/nope/api/json", None, {}, 404),
    ("POST", "/createView?name=all", b"<hudson.model.ListView/>", {"Content-Type": "application/xml"}, 400),
    ("POST", "/createView?name=v", b"<spaceship/>", {"Content-Type": "application/xml"}, 500),
    ("POST", "/view/all/doDelete", None, {}, 400),
    ("GET", "/computer/nope/api/json", None, {}, 404),
    ("GET", "/credentials/store/nope/domain/_/api/json", None, {}, 404),
    ("POST", "/credentials/store/system/domain/_/createCredentials", b"<x/>", {}, 405),
], ids=["unknown-job", "unknown-endpoint", "unknown-method", "duplicate-job", "no-xml-content-type",
        "unknown-item-type", "params-to-plain-job", "plain-build-of-parameterized-job", "crumbs-off",
        "bad-websocket-handshake", "config-changes-item-type", "create-inside-a-job", "job-inside-a-job",
        "unknown-mode", "unknown-view", "duplicate-view", "unknown-view-type", "delete-primary-view",
        "unknown-node", "unknown-credentials-store", "create-credentials"])
def test_fake_refuses_what_jenkins_refuses(method, path, body, headers, status):
    import requests

    with FakeJenkins() as fake:
        client = JenkinsClient(fake.url)
        client.create("build", b"<project/>")
        client.create("params", b"<project><properties><hudson.model.ParametersDefinitionProperty>"
                                b"<parameterDefinitions><hudson.model.StringParameterDefinition><name>N</name>"
                                b"<defaultValue>2</defaultValue></hudson.model.StringParameterDefinition>"
                                b"</parameterDefinitions></hudson.model.ParametersDefinitionProperty>"
                                b"</properties></project>")
        response = requests.request(method, fake.url + path, data=body, headers=headers, timeout=10)
        assert response.status_code == status
        assert response.headers["X-Jenkins"] == "2.580.1"


@pytest.mark.parametrize("user, crumbs_for_tokens, crumb, status", [
    ("u", False, "", 200),
    ("u", True, "", 403),
    ("u", True, "valid", 200),
    ("", False, "", 403),
    ("", False, "valid", 200),
    ("u", False, "wrong", 200),
], ids=["token-request-exempt", "token-request-when-tokens-need-crumbs", "token-request-with-crumb",
        "anonymous-needs-a-crumb", "anonymous-with-crumb", "token-request-with-a-wrong-crumb-is-still-exempt"])
def test_fake_checks_crumbs_as_jenkins_does(user, crumbs_for_tokens, crumb, status):
    import requests

    token = "11" + secrets.token_hex(16)
    with FakeJenkins(user=user, token=token if user else "", crumbs=True, crumbs_for_tokens=crumbs_for_tokens) as fake:
        auth = (user, token) if user else None
        headers = {"Content-Type": "application/xml"}
        if crumb:
            issued = requests.get(fake.url + "/crumbIssuer/api/json", auth=auth, timeout=10).json()
            headers[issued["crumbRequestField"]] = issued["crumb"] if crumb == "valid" else "0" * 32
        response = requests.post(fake.url + "/createItem?name=new", data=b"<project/>", headers=headers, auth=auth,
                                 timeout=10)
        assert response.status_code == status
        assert ("No valid crumb" in response.text) is (status == 403)
        assert ("new" in fake.jobs) is (status == 200)


def test_fake_builds_queues_and_reports_like_jenkins():
    import jenkins
    import requests

    with FakeJenkins(user="u", token="11" + "a" * 32, crumbs=True) as fake:
        server = jenkins.Jenkins(fake.url, "u", "11" + "a" * 32)
        for job in jobs.render(ROOT / "jobs"):
            server.create_job(job.name, job.xml.decode())
        queued = server.build_job("rebuild-cluster", {"NODE_COUNT": "3"})
        number = server.get_queue_item(queued)["executable"]["number"]
        info = server.get_build_info("rebuild-cluster", number)
        parameters = {p["name"]: p["value"] for a in info["actions"] if "parameters" in a for p in a["parameters"]}
        assert parameters == {"REBUILD_BOX": "false", "NODE_COUNT": "3", "KUBERNETES_VERSION": "1.31.4"}
        assert "Finished: SUCCESS" in server.get_build_console_output("rebuild-cluster", number)
        assert server.get_job_info("rebuild-cluster")["nextBuildNumber"] == 2
        server.build_job("rebuild-box")
        with pytest.raises(requests.HTTPError, match="405"):
            server.build_job("presentation")  # a multibranch project is not a buildable job


def test_a_user_without_job_configure_can_neither_diff_nor_update(jenkins_server, jobs_dir, environ, capsys):
    if not jenkins_server.reader:
        pytest.skip("set PINOTAGE_TEST_JENKINS_READER_USER and _TOKEN to a user with Overall/Read, Job/Read only")
    assert run(["jobs", "update", "--jobs-dir", str(jobs_dir)], jenkins_server.environ(environ), capsys)[0] == 0
    (jobs_dir / "test.yaml").write_text((jobs_dir / "test.yaml").read_text().replace("--limit 3", "--limit 4"))
    user, token = jenkins_server.reader
    before = jenkins_server.posts()
    for action in ("diff", "update"):
        code, out, err = run(["jobs", action, "--jobs-dir", str(jobs_dir)],
                             jenkins_server.environ(environ, token=token, user=user), capsys)
        assert code == 1, err
        assert "[403]" in err and "may configure jobs" in err, err
        assert token not in out + err
    if jenkins_server.fake:
        assert jenkins_server.posts() == before, "a refused user's update sent a write"


def test_the_repository_jobs_survive_jenkins_saving_them(environ, capsys):
    """jobs/ as Jenkins saves it (here at once, and again as from the UI): diff is clean, update writes nothing."""
    token = "11" + secrets.token_hex(16)
    with FakeJenkins(user="deployer", token=token, crumbs=True) as fake:
        env = {**environ, "PINOTAGE_JENKINS_URL": fake.url, "PINOTAGE_JENKINS_USER": "deployer",
               "PINOTAGE_JENKINS_TOKEN": token}
        jobs_dir = str(ROOT / "jobs")
        code, _, err = run(["jobs", "update", "--jobs-dir", jobs_dir], env, capsys)
        assert code == 0, err
        client = JenkinsClient(fake.url, "deployer", token)
        for name in client.job_names():
            live = client.job_config(name)
            assert live.startswith("<?xml version='1.1' encoding='UTF-8'?>") and 'plugin="' in live
            client.reconfigure(name, live.encode())  # saved again, as from the UI
        fake.clear_requests()
        code, out, err = run(["jobs", "diff", "--jobs-dir", jobs_dir], env, capsys)
        assert code == 0, out
        code, _, err = run(["jobs", "update", "--jobs-dir", jobs_dir], env, capsys)
        assert code == 0 and summary(err)[:3] == (0, 0, 0), err
        assert fake.writes() == []


def test_the_seed_user_s_permissions_in_casc_are_enough_to_update(jobs_dir, environ, capsys):
    """The pinotage-seed user, with exactly the matrix docker/jenkins/casc.yaml grants it, updates jobs."""
    import yaml

    from tests.fakes.jenkins import User

    casc = yaml.safe_load((ROOT / "docker" / "jenkins" / "casc.yaml").read_text())
    [granted] = [entry["user"]["permissions"] for entry in casc["jenkins"]["authorizationStrategy"]["globalMatrix"]
                 ["entries"] if entry.get("user", {}).get("name") == "pinotage-seed"]
    token = "11" + secrets.token_hex(16)
    with FakeJenkins(users=[User("pinotage-seed", token, frozenset(granted))], crumbs=True) as fake:
        env = {**environ, "PINOTAGE_JENKINS_URL": fake.url, "PINOTAGE_JENKINS_USER": "pinotage-seed",
               "PINOTAGE_JENKINS_TOKEN": token}
        old = jobs_dir / "old.yaml"
        old.write_text("- job:\n    name: retired\n    builders: [{shell: 'pinotage history'}]\n")
        assert run(["jobs", "update", "--jobs-dir", str(jobs_dir)], env, capsys)[0] == 0
        old.unlink()
        (jobs_dir / "test.yaml").write_text((jobs_dir / "test.yaml").read_text().replace("--limit 3", "--limit 4"))
        code, _, err = run(["jobs", "update", "--jobs-dir", str(jobs_dir), "--delete-old"], env, capsys)
        assert (code, summary(err)) == (0, (0, 1, 1, 2)), err
        assert [r.status for r in fake.writes() if r.status >= 400] == []
