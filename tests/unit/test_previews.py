"""Previews, offline: k8s/previews validates, the plan gives forks none, the objects a preview is made of, pruning."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from pipeline import config as pinotage_config
from pipeline import context as ctx
from pipeline.errors import BadInput, ConfigError
from pipeline.image import tags_for
from pipeline.preview import render

ROOT = Path(__file__).resolve().parents[2]
PREVIEWS = ROOT / "k8s" / "previews"
KUBERNETES_VERSION = pinotage_config.ClusterConfig().kubernetes_version
MANIFEST = yaml.safe_load((ROOT / "k8s/presentation/deployment.yaml").read_text())
COMMIT = "a" * 40
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def _docs() -> list[dict]:
    return [doc for path in sorted(PREVIEWS.glob("*.yaml")) if path.name != "kustomization.yaml"
            for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.mark.parametrize("doc", _docs(), ids=[f"{d['kind']}/{d['metadata']['name']}" for d in _docs()])
def test_previews_manifests_validate(doc):
    import kubernetes_validate

    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    assert doc["kind"] == "Namespace" or doc["metadata"]["namespace"] == "previews"


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((PREVIEWS / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in PREVIEWS.glob("*.yaml")
                                                        if p.name != "kustomization.yaml")
    assert kustomization["namespace"] == pinotage_config.PreviewConfig().namespace


def test_quota_holds_several_previews_mid_rollout():
    [quota] = [d for d in _docs() if d["kind"] == "ResourceQuota"]
    hard = quota["spec"]["hard"]
    resources = MANIFEST["spec"]["template"]["spec"]["containers"][0]["resources"]
    per_pod_mi = int(resources["requests"]["memory"].removesuffix("Mi"))
    surge = 2  # one pod, two while a new commit rolls out (maxSurge 1)
    assert int(hard["pods"]) >= 3 * surge
    assert int(hard["requests.memory"].removesuffix("Gi")) * 1024 >= 3 * surge * per_pod_mi


def test_preview_role_lives_in_previews_only():
    kinds = {d["kind"] for d in _docs()}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
    [role] = [d for d in _docs() if d["kind"] == "Role"]
    assert all("*" not in rule["verbs"] and "*" not in rule["resources"] for rule in role["rules"])
    assert not any("pods/exec" in rule["resources"] for rule in role["rules"])


def context(**fields) -> ctx.BuildContext:
    return ctx.BuildContext(**{"commit": COMMIT, "branch": "change", "event": "pull-request", "change_id": "42",
                               "change_target": "master", **fields})


@pytest.mark.parametrize("build, previews, steps, reads", [
    (context(), True, ("build", "smoke", "push", "preview", "status"), True),
    (context(change_fork="someone"), True, ("build", "smoke"), False),
    (context(), False, ("build", "smoke"), False),
    (context(event="branch", change_id=""), True, ("build", "smoke"), False),
], ids=["same-repo-pr", "fork-pr", "previews-off", "branch"])
def test_only_a_same_repo_pr_is_previewed(build, previews, steps, reads):
    plan = ctx.plan_for(build, "master", previews=previews)
    assert (plan.steps, plan.reads_credentials) == (steps, reads)


@pytest.mark.parametrize("event", ["branch", "default-branch", "pull-request"])
def test_run_preview_plans_no_push_and_no_credential(event):
    plan = ctx.local_preview_plan(context(event=event))
    assert (plan.steps, plan.reads_credentials) == (("build", "smoke", "serve"), False)


def test_run_preview_dry_run_says_where_it_serves(tmp_path, capsys):
    from pipeline.cli import stages

    config = pinotage_config.load(environ={}, cwd=str(ROOT), overrides=["preview.local_port=9099"])
    rows = dict(stages.dry_run(config, context(event="branch"), ctx.local_preview_plan(context(event="branch"))))
    assert rows["preview"].startswith("http://127.0.0.1:9099/ in container presentation-preview")
    assert "registry" not in rows and "deploy" not in rows


def test_jenkins_fork_variable_makes_a_fork():
    environ = {"BRANCH_NAME": "PR-42", "CHANGE_ID": "42", "BUILD_NUMBER": "1", "GIT_COMMIT": COMMIT,
               "CHANGE_FORK": "someone"}
    assert not ctx.from_jenkins(environ, default_branch="master").same_repo_pr
    del environ["CHANGE_FORK"]
    assert ctx.from_jenkins(environ, default_branch="master").same_repo_pr


def test_preview_image_carries_the_pr_tag():
    config = pinotage_config.load(environ={}, cwd=str(ROOT), overrides=["preview.enabled=true"])
    assert tags_for(context(), config)[-1] == "pr-42"
    assert "pr-42" not in tags_for(context(change_fork="someone"), config)


@pytest.mark.parametrize("url, ok", [
    ("https://{name}.previews.example.com/", True),
    ("http://{name}.{namespace}.svc.cluster.local/", True),
    ("https://previews.example.com/", False),
    ("https://{name}.{user}.example.com/", False),
    ("ftp://{name}/", False),
    ("https://{name/", False),
], ids=["wildcard-dns", "cluster-dns", "no-name", "unknown-field", "not-http", "broken-brace"])
def test_preview_url_setting(url, ok):
    load = lambda: pinotage_config.load(environ={}, cwd=str(ROOT), overrides=[f"preview.url={url}"])  # noqa: E731
    if ok:
        assert load().preview.url == url
    else:
        with pytest.raises(ConfigError):
            load()


def test_bodies_make_one_small_deployment_and_a_cluster_ip_service():
    deployment, service = render.bodies(MANIFEST, app="presentation", pr="42", namespace="previews",
                                        image="r/p@sha256:1", commit=COMMIT, url="https://p/", now=NOW,
                                        pull_secret="pinotage-pull-presentation")
    meta = deployment["metadata"]
    assert (meta["name"], meta["namespace"], deployment["spec"]["replicas"]) == ("presentation-pr-42", "previews", 1)
    assert deployment["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "presentation-pr-42"}
    assert deployment["spec"]["selector"]["matchLabels"].items() <= \
        deployment["spec"]["template"]["metadata"]["labels"].items()
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "r/p@sha256:1"
    assert pod["imagePullSecrets"] == [{"name": "pinotage-pull-presentation"}]
    assert pod["securityContext"] == MANIFEST["spec"]["template"]["spec"]["securityContext"]  # restricted, as the app
    assert meta["annotations"][render.UPDATED] == "2026-12-01T12:00:00+00:00"
    assert service["spec"] == {"type": "ClusterIP", "selector": {"app.kubernetes.io/name": "presentation-pr-42"},
                               "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}
    assert MANIFEST["metadata"]["name"] == "presentation"  # the manifest itself is left alone
    preview = render.preview_of(deployment)
    assert (preview.pr, preview.commit, preview.url, preview.image) == ("42", COMMIT, "https://p/", "r/p@sha256:1")


def test_a_name_too_long_for_a_service_is_bad_input():
    with pytest.raises(BadInput, match="longer than 63"):
        render.name_for("a" * 60, "1234")


def preview(pr: str, hours_old: float) -> render.Preview:
    return render.Preview(name=f"app-pr-{pr}", pr=pr, commit=COMMIT, image="", url="",
                          updated_at=(NOW - timedelta(hours=hours_old)).isoformat())


@pytest.mark.parametrize("state, hours_old, why", [
    ("open", 1, None),
    ("closed", 1, "pull request #7 is closed"),
    ("merged", 1, "pull request #7 is merged"),
    ("open", 200, "no new commit for 200 h (preview.max_age_h is 168)"),
    (None, 1, "pull request #7 is unknown"),
], ids=["open-and-fresh", "closed", "merged", "open-but-idle", "not-asked"])
def test_stale(state, hours_old, why):
    states = {"7": state} if state else {}
    found = render.stale([preview("7", hours_old)], states, now=NOW, max_age_s=168 * 3600)
    assert [reason for _, reason in found] == ([why] if why else [])


def test_list_table_shows_pr_commit_age_and_url():
    lines = render.table([preview("10", 30), preview("9", 0.5)], NOW)
    assert lines[0].split() == ["preview", "pr", "commit", "age", "url"]
    assert [line.split()[:4] for line in lines[1:]] == [["app-pr-9", "#9", COMMIT[:12], "30m"],
                                                        ["app-pr-10", "#10", COMMIT[:12], "1d"]]


def test_run_preview_refuses_the_apps_own_port_before_touching_the_engine():
    from pipeline.preview import local
    from pipeline.state import Image

    config = pinotage_config.load(environ={}, cwd=str(ROOT), overrides=["preview.local_port=8080"])
    with pytest.raises(BadInput, match="preview.local_port: 8080 is deploy.host_port"):
        local.serve(None, config, Image(name="r/p", tag="t"), progress=print)
