"""How Pinotage's python-jenkins session reads job configs: through the user's proxy, many at once.

The session reads the proxy settings once instead of once per request; these tests hold it to
requests' own rules: HTTP_PROXY is used, NO_PROXY is honoured. The proxy is a forwarding proxy on
loopback that relays to the Jenkins double and records what it relayed.
"""

from __future__ import annotations

import http.client
import logging
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
import requests

from pipeline import jenkins
from pipeline.jenkins import JenkinsClient
from tests.fakes.jenkins import FakeJenkins

pytestmark = pytest.mark.integration

TOKEN = "11" + secrets.token_hex(16)
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


class ForwardingProxy(BaseHTTPRequestHandler):
    """An HTTP forward proxy for loopback targets only: relays the request, records its absolute URL."""

    protocol_version = "HTTP/1.1"
    relayed: list[str]

    def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's name
        pass

    def relay(self) -> None:
        target = urlsplit(self.path)
        if target.scheme != "http" or target.hostname != "127.0.0.1":
            self.send_error(403, "this proxy relays to 127.0.0.1 only")
            return
        self.relayed.append(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
        path = target.path + (f"?{target.query}" if target.query else "")
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "connection")}
        upstream.request(self.command, path, body or None, headers)
        answer = upstream.getresponse()
        content = answer.read()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("connection", "transfer-encoding", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)
        upstream.close()

    do_GET = do_POST = relay


@pytest.fixture
def proxy():
    handler = type("Proxy", (ForwardingProxy,), {"relayed": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler.relayed
    server.shutdown()
    server.server_close()


@pytest.fixture
def fake():
    with FakeJenkins(user="deployer", token=TOKEN, crumbs=True) as fake:
        for name in ("a", "b", "c"):
            JenkinsClient(fake.url, "deployer", TOKEN).create(name, f"<project><description>{name}</description>"
                                                                    "</project>".encode())
        fake.clear_requests()
        yield fake


@pytest.fixture
def no_proxy_settings(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


def test_reads_go_through_the_proxy_the_environment_names(fake, proxy, no_proxy_settings):
    url, relayed = proxy
    no_proxy_settings.setenv("HTTP_PROXY", url)
    live = jenkins.live_configs(JenkinsClient(fake.url, "deployer", TOKEN), ["a", "b", "c", "missing"])
    assert {name: xml and "<description>" in xml for name, xml in live.items()} == \
        {"a": True, "b": True, "c": True, "missing": None}
    assert {f"{fake.url}/job/{name}/config.xml" for name in ("a", "b", "c", "missing")} <= set(relayed)
    assert len(relayed) == len(fake.requests)  # every request the double answered came through the proxy


def test_no_proxy_sends_reads_straight_to_jenkins(fake, proxy, no_proxy_settings):
    url, relayed = proxy
    no_proxy_settings.setenv("HTTP_PROXY", url)
    no_proxy_settings.setenv("NO_PROXY", "localhost,127.0.0.1")
    live = jenkins.live_configs(JenkinsClient(fake.url, "deployer", TOKEN), ["a", "b"])
    assert all(live.values()) and relayed == []


def test_many_reads_fetch_one_crumb_and_keep_their_connections(fake, no_proxy_settings, caplog, monkeypatch):
    monkeypatch.setattr(jenkins, "READ_CONCURRENCY", 16)  # more readers than urllib3's 10 pooled connections
    names = [f"job-{i}" for i in range(3 * jenkins.READ_CONCURRENCY)]
    with caplog.at_level(logging.WARNING, logger="urllib3"):
        live = jenkins.live_configs(JenkinsClient(fake.url, "deployer", TOKEN), ["a", *names])
    assert live["a"] and not any(live[name] for name in names)
    assert sum(r.path == "/crumbIssuer/api/json" for r in fake.requests) == 1
    assert [r.path for r in fake.requests if r.path.endswith("config.xml")].count("/job/a/config.xml") == 1
    assert "pool is full" not in caplog.text  # no connection opened and dropped


def test_a_config_keeps_characters_beyond_ascii(fake, no_proxy_settings):
    client = JenkinsClient(fake.url, "deployer", TOKEN)
    client.reconfigure("a", "<project><description>Déploiement ✓ 部署</description></project>".encode())
    assert "<description>Déploiement ✓ 部署</description>" in client.job_config("a")


@pytest.mark.parametrize("content_type, body, expected", [
    ("application/xml", "<?xml version='1.1' encoding='UTF-8'?><a>é ✓</a>".encode(), "utf-8"),
    ("application/xml", "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a>é</a>".encode("latin-1"), "ISO-8859-1"),
    ("application/xml", "<a>é</a>".encode(), "utf-8"),
    ("application/xml;charset=windows-1252", "<a>é</a>".encode("cp1252"), "windows-1252"),
], ids=["declared-utf-8", "declared-latin-1", "no-declaration", "charset-in-header"])
def test_a_config_is_decoded_as_it_declares(content_type, body, expected):
    response = requests.Response()
    response.status_code, response._content = 200, body
    response.headers["Content-Type"] = content_type
    response.encoding = requests.utils.get_encoding_from_headers(response.headers)
    response.request = requests.Request("GET", "http://127.0.0.1:1/job/a/config.xml").prepare()
    jenkins.xml_encoding(response)
    assert response.encoding.lower() == expected.lower()
    assert response.text.endswith("é</a>") or response.text.endswith("é ✓</a>")


# --- reading Pinotage's jobs while jobs/ renders (pipeline.jenkins_prefetch) ---------------------

MANAGED = "<project><description>made by Pinotage\n&lt;!-- managed by pinotage: jobs/ --&gt;</description></project>"


def test_the_child_reads_only_the_jobs_carrying_the_mark(fake):
    from pipeline.jenkins_prefetch import Prefetch
    from pipeline.jobs import MANAGED_MARK

    client = JenkinsClient(fake.url, "deployer", TOKEN)
    for name in ("ours-1", "ours-2"):
        client.create(name, MANAGED.encode())
    fake.clear_requests()
    early = Prefetch(fake.url, "deployer", MANAGED_MARK, {"PINOTAGE_JENKINS_TOKEN": TOKEN})
    try:
        read = early.result()
    finally:
        early.close()
    assert sorted(read) == ["ours-1", "ours-2"] and all("made by Pinotage" in xml for xml in read.values())
    assert sorted(r.path for r in fake.requests if r.path.endswith("config.xml")) == \
        ["/job/ours-1/config.xml", "/job/ours-2/config.xml"]  # the foreign a, b and c are not read


def test_configs_read_already_are_not_read_again(fake):
    live = jenkins.live_configs(JenkinsClient(fake.url, "deployer", TOKEN), ["a", "b", "c"], {"a": "<project/>"})
    assert live["a"] == "<project/>" and "<description>b</description>" in live["b"]
    assert sorted(r.path for r in fake.requests if r.path.endswith("config.xml")) == \
        ["/job/b/config.xml", "/job/c/config.xml"]


def test_an_update_reads_each_job_once_and_restores_a_hand_edit(tmp_path, environ, capsys):
    from pipeline import cli

    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir()
    (jobs_dir / "jobs.yaml").write_text("".join(f"- job:\n    name: job-{i}\n    builders: [{{shell: 'pinotage history"
                                                f" --limit {i + 1}'}}]\n" for i in range(12)))
    with FakeJenkins(user="deployer", token=TOKEN, crumbs=True) as fake:
        env = {**environ, "PINOTAGE_JENKINS_URL": fake.url, "PINOTAGE_JENKINS_USER": "deployer",
               "PINOTAGE_JENKINS_TOKEN": TOKEN, "XDG_CACHE_HOME": str(tmp_path / "cache")}
        assert cli.main(["jobs", "update", "--jobs-dir", str(jobs_dir)], env) == 0
        assert cli.main(["jobs", "update", "--jobs-dir", str(jobs_dir)], env) == 0  # remembers 12 same pairs
        assert (tmp_path / "cache" / "pinotage" / "jobs-same-pairs").stat().st_size == 12 * 32
        client = JenkinsClient(fake.url, "deployer", TOKEN)
        client.reconfigure("job-5", client.job_config("job-5").replace("pinotage history", "rm -rf /").encode())
        (jobs_dir / "jobs.yaml").write_text((jobs_dir / "jobs.yaml").read_text() +
                                            "- job:\n    name: job-new\n    builders: [{shell: 'pinotage history'}]\n")
        fake.clear_requests()
        assert cli.main(["jobs", "update", "--jobs-dir", str(jobs_dir)], env) == 0
        reads = [r.path for r in fake.requests if r.method == "GET" and r.path.endswith("/config.xml")]
        assert sorted(reads) == sorted(f"/job/{name}/config.xml" for name in [f"job-{i}" for i in range(12)] +
                                       ["job-new"])
        assert [r.path for r in fake.writes()] == ["/createItem", "/job/job-5/config.xml"]
        assert "rm -rf" not in client.job_config("job-5")
    assert "1 created, 1 reconfigured, 0 deleted, 11 unchanged" in capsys.readouterr().err


def test_a_password_in_the_token_variable_is_never_sent(tmp_path, environ, capsys):
    from pipeline import cli

    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir()
    (jobs_dir / "jobs.yaml").write_text("- job:\n    name: j\n    builders: [{shell: 'pinotage history'}]\n")
    with FakeJenkins(user="deployer", token=TOKEN, crumbs=True) as fake:
        env = {**environ, "PINOTAGE_JENKINS_URL": fake.url, "PINOTAGE_JENKINS_USER": "deployer",
               "PINOTAGE_JENKINS_TOKEN": "hunter2-Secret!"}
        assert cli.main(["jobs", "diff", "--jobs-dir", str(jobs_dir)], env) == 2
        assert fake.requests == []
    assert "does not look like a Jenkins API token" in capsys.readouterr().err
