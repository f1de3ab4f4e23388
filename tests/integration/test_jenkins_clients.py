"""The real clients against the Jenkins double (or a real Jenkins, see jenkins_target).

jenkins-jobs (update, update --delete-old, delete, test) and python-jenkins work with
folders and views; a config.xml comes back as Jenkins writes it on save, and Pinotage's
compare takes that round trip as no change while a real edit still shows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from pipeline import jobs
from tests.integration.jenkins_target import jenkins_target

pytestmark = pytest.mark.integration

JJB = str(Path(sys.executable).with_name("jenkins-jobs"))


@pytest.fixture
def jenkins_server():
    with jenkins_target() as server:
        yield server


def jjb_yaml(prefix: str, *, with_old: bool = True) -> str:
    """Return JJB YAML for a folder with a job in it, a pipeline job, and a list view of it."""
    old = f"""
- job:
    name: {prefix}old
    description: retired soon
    builders: [{{shell: 'pinotage history'}}]
- view:
    name: {prefix}old-view
    view-type: list
    job-name: [{prefix}old]
""" if with_old else ""
    return f"""
- job:
    name: {prefix}team
    project-type: folder
    description: a folder of jobs
- job:
    name: {prefix}team/build
    description: a job in a folder
    builders:
      - shell: 'echo "it''s built" > out && pinotage build --state s.json'
- job:
    name: {prefix}pipe
    project-type: pipeline
    dsl: |
      node {{{{ sh 'pinotage smoke --state s.json' }}}}
- view:
    name: {prefix}ours
    view-type: list
    description: the jobs we keep
    job-name: [{prefix}pipe]
""" + old


def run_jjb(server, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}  # JJB's cache goes to HOME
    result = subprocess.run([JJB, "--conf", server.jjb_ini(tmp_path), *args], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def test_jjb_update_delete_old_and_delete_with_folders_and_views(jenkins_server, tmp_path):
    prefix = jenkins_server.prefix
    definitions = tmp_path / "jobs.yaml"
    definitions.write_text(jjb_yaml(prefix))
    run_jjb(jenkins_server, tmp_path, "update", str(definitions))
    client = jenkins_server.python_jenkins()
    names = {job["fullname"] for job in client.get_all_jobs()}
    assert {f"{prefix}team", f"{prefix}team/build", f"{prefix}pipe", f"{prefix}old"} <= names
    assert {f"{prefix}ours", f"{prefix}old-view"} <= {view["name"] for view in client.get_views()}
    assert [job["name"] for job in client.get_jobs(view_name=f"{prefix}ours")] == [f"{prefix}pipe"]
    client.create_job(f"{prefix}hand-made", "<project><description>made in the UI</description></project>")

    definitions.write_text(jjb_yaml(prefix, with_old=False))
    result = run_jjb(jenkins_server, tmp_path, "update", "--delete-old", str(definitions))
    assert "Number of jobs deleted: 1" in result.stderr and "Number of views deleted: 1" in result.stderr
    names = {job["fullname"] for job in client.get_all_jobs()}
    assert f"{prefix}old" not in names and f"{prefix}hand-made" in names, "deleted a job JJB does not manage"
    assert not client.view_exists(f"{prefix}old-view")
    assert client.view_exists(f"{prefix}ours")

    run_jjb(jenkins_server, tmp_path, "delete", f"{prefix}team")
    names = {job["fullname"] for job in client.get_all_jobs()}
    assert f"{prefix}team" not in names and f"{prefix}team/build" not in names
    client.delete_job(f"{prefix}hand-made")


def test_jjb_output_comes_back_jenkins_shaped_and_compares_equal(jenkins_server, tmp_path):
    """A config.xml Jenkins saved reads differently from what JJB sent, yet compares the same."""
    prefix = jenkins_server.prefix
    definitions = tmp_path / "jobs.yaml"
    definitions.write_text(jjb_yaml(prefix, with_old=False))
    out = tmp_path / "out"
    run_jjb(jenkins_server, tmp_path, "test", "--config-xml", "-o", str(out), str(definitions))
    run_jjb(jenkins_server, tmp_path, "update", str(definitions))
    client = jenkins_server.python_jenkins()
    if jenkins_server.fake:
        client.reconfig_job(f"{prefix}pipe", client.get_job_config(f"{prefix}pipe"))  # a save, as from the UI
    for name in (f"{prefix}team/build", f"{prefix}pipe"):
        sent = (out / name / "config.xml").read_text()
        live = client.get_job_config(name)
        if jenkins_server.fake:
            assert live.startswith("<?xml version='1.1' encoding='UTF-8'?>") and live != sent
        assert jobs.normalise(live, ours=sent.encode()) == jobs.normalise(sent), name
    if jenkins_server.fake:
        saved = client.get_job_config(f"{prefix}pipe")
        assert '<flow-definition plugin="workflow-job@' in saved and "sh &apos;pinotage smoke" in saved
        assert "<!--" not in saved.replace("&lt;!--", "")


def test_python_jenkins_folders(jenkins_server):
    prefix = jenkins_server.prefix
    client = jenkins_server.python_jenkins()
    client.create_folder(f"{prefix}outer")
    client.create_folder(f"{prefix}outer/inner")
    client.create_job(f"{prefix}outer/inner/deep", "<project><description>three down</description></project>")
    assert client.job_exists(f"{prefix}outer/inner/deep")
    assert not client.job_exists(f"{prefix}outer/nope")
    found = [job["fullname"] for job in client.get_all_jobs() if job["fullname"].startswith(f"{prefix}outer")]
    assert found == [f"{prefix}outer", f"{prefix}outer/inner", f"{prefix}outer/inner/deep"]
    assert [job["fullname"] for job in client.get_all_jobs(folder_depth=0)
            if job["fullname"].startswith(f"{prefix}outer")] == [f"{prefix}outer"]
    assert "three down" in client.get_job_config(f"{prefix}outer/inner/deep")
    tree = client.jenkins_open(requests.Request("GET", f"{jenkins_server.url}/api/json?tree=jobs[name,jobs]"))
    [outer] = [job for job in json.loads(tree)["jobs"] if job["name"] == f"{prefix}outer"]
    assert outer["jobs"] == [{"_class": "com.cloudbees.hudson.plugins.folder.Folder"}]  # asked for no field of it
    client.copy_job(f"{prefix}outer/inner/deep", f"{prefix}outer/inner/copy")
    assert "three down" in client.get_job_config(f"{prefix}outer/inner/copy")
    assert client.get_job_info(f"{prefix}outer/inner/deep")["fullName"] == f"{prefix}outer/inner/deep"
    import jenkins

    with pytest.raises(jenkins.JenkinsException):
        client.create_job(f"{prefix}outer/inner/deep", "<project/>")  # already there
    client.delete_job(f"{prefix}outer")
    assert not client.job_exists(f"{prefix}outer/inner/deep")


def test_python_jenkins_views(jenkins_server):
    prefix = jenkins_server.prefix
    client = jenkins_server.python_jenkins()
    client.create_job(f"{prefix}listed", "<project><description/></project>")
    view = (f"<hudson.model.ListView><name>ignored</name><description>d</description><jobNames>"
            f"<comparator class=\"hudson.util.CaseInsensitiveComparator\"/><string>{prefix}listed</string>"
            f"</jobNames></hudson.model.ListView>")
    client.create_view(f"{prefix}v", view)
    assert client.view_exists(f"{prefix}v")
    assert f"<name>{prefix}v</name>" in client.get_view_config(f"{prefix}v")  # the name it was created under
    assert [job["name"] for job in client.get_jobs(view_name=f"{prefix}v")] == [f"{prefix}listed"]
    client.create_view(f"{prefix}by-regex", f"<hudson.model.ListView><includeRegex>{prefix}list.*</includeRegex>"
                                             f"</hudson.model.ListView>")
    assert [job["name"] for job in client.get_jobs(view_name=f"{prefix}by-regex")] == [f"{prefix}listed"]
    client.delete_view(f"{prefix}by-regex")
    client.reconfig_view(f"{prefix}v", view.replace("<description>d</description>", "<description>e</description>"))
    assert "<description>e</description>" in client.get_view_config(f"{prefix}v")
    client.delete_view(f"{prefix}v")
    assert not client.view_exists(f"{prefix}v")
    client.delete_job(f"{prefix}listed")
