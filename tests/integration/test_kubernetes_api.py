"""The Kubernetes API as the deployer sees it: connection from config, and the server's answers.

Runs against the fake (tests/fakes/kube, in-memory kubelet) unless PINOTAGE_TEST_KUBECONFIG names a real cluster;
the answers checked here are the API server's documented ones (Status kind, reason, code), so
they hold for both, which is what keeps the fake honest.
"""

from __future__ import annotations

import json
import os
import secrets
import urllib.error
import urllib.request

import pytest
import yaml

from pipeline import config as pinotage_config
from pipeline import kube
from pipeline.errors import BadInput
from tests.conftest import ROOT

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Yield (admin kubeconfig path, fake or None)."""
    real = os.environ.get("PINOTAGE_TEST_KUBECONFIG")
    if real:
        yield real, None
        return
    from tests.fakes.kube import FakeKube

    fake = FakeKube(token=secrets.token_urlsafe(12), pod_start_s=0.1).start()
    path = fake.kubeconfig(tmp_path_factory.mktemp("kube") / "admin.yaml")
    yield str(path), fake
    fake.stop()
    path.unlink()


def _load(**settings):
    return pinotage_config.load(environ={}, overrides=[f"{k}={v}" for k, v in settings.items()], cwd=str(ROOT))


@pytest.mark.parametrize("how", ["config-field", "KUBECONFIG"])
def test_connect_reads_the_kubeconfig_and_uses_the_configured_namespace(server, how):
    from kubernetes import client

    path, _ = server
    if how == "config-field":
        cluster = kube.connect(_load(kubeconfig=path, **{"deploy.namespace": "elsewhere"}), {})
    else:
        cluster = kube.connect(_load(**{"deploy.namespace": "elsewhere"}), {"KUBECONFIG": path})
    assert cluster.namespace == "elsewhere"  # never the kubeconfig context's namespace
    assert client.VersionApi(cluster.api).get_code().major == "1"
    assert path in cluster.source


@pytest.mark.parametrize("settings, environ, expected", [
    ({"kubeconfig": "/nonexistent/kubeconfig"}, {}, "kubeconfig: /nonexistent/kubeconfig: no such file"),
    ({}, {"KUBECONFIG": "/nonexistent/a"}, "KUBECONFIG: /nonexistent/a: no such file"),
    ({"deploy.kube_context": "nope"}, "admin", "cannot use context 'nope'"),
    ({}, {}, "no Kubernetes credentials"),
], ids=["missing-config-file", "missing-env-file", "unknown-context", "nothing-at-all"])
def test_connect_reports_bad_input_in_one_line(server, settings, environ, expected):
    path, _ = server
    environ = {"KUBECONFIG": path} if environ == "admin" else environ
    with pytest.raises(BadInput) as e:
        kube.connect(_load(**settings), environ)
    assert expected in e.value.message
    assert "\n" not in e.value.message


def _call(server, method: str, path: str, body=None, *, content_type="application/json", token=None):
    """Make one request through the official client, with the kubeconfig's credentials or token; return (code, JSON)."""
    from kubernetes import config

    kubeconfig, _ = server
    client = config.new_client_from_config(config_file=kubeconfig, persist_config=False)
    headers = {"Content-Type": content_type, "Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        prepared = client.param_serialize(method, path, body=body, header_params=headers,
                                          auth_settings=[] if token is not None else ["BearerToken"])
        response = client.call_api(*prepared)
        return response.status, json.loads(response.read() or b"{}")
    finally:
        client.close()


DEPLOYMENT = yaml.safe_load((ROOT / "k8s/presentation/deployment.yaml").read_text())

REAL_DIFFERS = {  # where a real API server serves what the fake refuses: these rows run against the fake only
    "json-patch-unsupported", "delete-collection-refused", "post-to-a-name-refused", "dry-run-value-unsupported"}

ANSWERS = [
    # id, method, path, body, content type, expected code, expected reason
    ("unknown-resource", "GET", "/apis/apps/v1/namespaces/default/widgets", None, "application/json", 404, "NotFound"),
    ("missing-object", "GET", "/apis/apps/v1/namespaces/default/deployments/nope", None, "application/json", 404,
     "NotFound"),
    ("json-patch-unsupported", "PATCH", "/apis/apps/v1/namespaces/default/deployments/nope", [{"op": "add"}],
     "application/json-patch+json", 415, "UnsupportedMediaType"),
    ("apply-without-manager", "PATCH", "/apis/apps/v1/namespaces/default/deployments/presentation",
     {**DEPLOYMENT, "metadata": {"name": "presentation"}}, "application/apply-patch+yaml", 422, "Invalid"),
    ("invalid-deployment", "POST", "/apis/apps/v1/namespaces/default/deployments",
     {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bad"}, "spec": {"template": {}}},
     "application/json", 422, "Invalid"),
    ("kind-mismatch", "POST", "/apis/apps/v1/namespaces/default/deployments",
     {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}}, "application/json", 400, "BadRequest"),
    ("no-such-namespace", "POST", "/api/v1/namespaces/nowhere/configmaps",
     {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}, "application/json", 404, "NotFound"),
    ("bad-label-selector", "GET", "/api/v1/namespaces/default/pods?labelSelector=a%20%3D%3D%3D", None,
     "application/json", 400, "BadRequest"),
    ("unsupported-field-selector", "GET", "/api/v1/namespaces/default/pods?fieldSelector=spec.color%3Dred", None,
     "application/json", 400, "BadRequest"),
    ("delete-collection-refused", "DELETE", "/api/v1/namespaces/default/pods", None, "application/json", 405,
     "MethodNotAllowed"),
    ("post-to-a-name-refused", "POST", "/api/v1/namespaces/default/configmaps/x",
     {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}, "application/json", 405, "MethodNotAllowed"),
    ("dry-run-value-unsupported", "POST", "/api/v1/namespaces/default/configmaps?dryRun=Some",
     {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}, "application/json", 422, "Invalid"),
]


@pytest.mark.parametrize("method, path, body, content_type, code, reason", [a[1:] for a in ANSWERS],
                         ids=[a[0] for a in ANSWERS])
def test_api_answers_with_a_status_object(server, request, method, path, body, content_type, code, reason):
    if server[1] is None and request.node.callspec.id in REAL_DIFFERS:
        pytest.skip("a real API server serves this; the fake refuses it (docs/test-doubles.md)")
    got, answer = _call(server, method, path, body, content_type=content_type)
    assert (got, answer.get("kind"), answer.get("reason"), answer.get("code")) == (code, "Status", reason, code)
    assert answer["status"] == "Failure" and answer["message"]


def test_wrong_token_is_unauthorized(server):
    got, answer = _call(server, "GET", "/api/v1/namespaces", token="not-the-token")
    assert (got, answer["reason"]) == (401, "Unauthorized")


def test_create_twice_and_stale_update_conflict(server):
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c-{secrets.token_hex(3)}"}, "data": {"a": "1"}}
    code, created = _call(server, "POST", "/api/v1/namespaces/default/configmaps", cm)
    assert code == 201
    code, again = _call(server, "POST", "/api/v1/namespaces/default/configmaps", cm)
    assert (code, again["reason"]) == (409, "AlreadyExists")
    name = cm["metadata"]["name"]
    fresh = {**created, "data": {"a": "2"}}
    code, updated = _call(server, "PUT", f"/api/v1/namespaces/default/configmaps/{name}", fresh)
    assert code == 200 and updated["metadata"]["resourceVersion"] != created["metadata"]["resourceVersion"]
    code, stale = _call(server, "PUT", f"/api/v1/namespaces/default/configmaps/{name}", {**created, "data": {"a": "3"}})
    assert (code, stale["reason"]) == (409, "Conflict")
    assert "the object has been modified" in stale["message"]
    assert _call(server, "DELETE", f"/api/v1/namespaces/default/configmaps/{name}")[0] == 200


def test_watch_resumes_from_a_resource_version(server):
    from kubernetes import client, config, watch

    kubeconfig, _ = server
    api = config.new_client_from_config(config_file=kubeconfig, persist_config=False)
    core = client.CoreV1Api(api)
    name = f"w-{secrets.token_hex(3)}"
    created = core.create_namespaced_config_map("default", {"apiVersion": "v1", "kind": "ConfigMap",
                                                            "metadata": {"name": name}, "data": {"n": "0"}})
    for n in (1, 2):
        core.patch_namespaced_config_map(name, "default", {"data": {"n": str(n)}})
    core.delete_namespaced_config_map(name, "default")
    seen = []
    stream = watch.Watch().stream(core.list_namespaced_config_map, "default", field_selector=f"metadata.name={name}",
                                  resource_version=created.metadata.resource_version, timeout_seconds=2)
    for event in stream:
        seen.append((event["type"], (event["object"].data or {}).get("n")))
        if event["type"] == "DELETED":
            break
    assert seen == [("MODIFIED", "1"), ("MODIFIED", "2"), ("DELETED", "2")]
    api.close()


def test_protobuf_is_read_only_for_access_reviews_and_token_requests(server):
    """kubectl's typed clients send protobuf; the fake reads the two kinds kubectl needs and refuses others."""
    kubeconfig, fake = server
    if fake is None:
        pytest.skip("a real API server reads every protobuf body")

    def field(number: int, payload: bytes) -> bytes:
        return bytes([number << 3 | 2, len(payload)]) + payload

    def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
        return b"k8s\x00" + field(1, field(1, api_version.encode()) + field(2, kind.encode())) + field(2, raw)

    token = yaml.safe_load(open(kubeconfig))["users"][0]["user"]["token"]

    def post(path: str, body: bytes) -> tuple[int, dict]:
        request = urllib.request.Request(fake.url + path, data=body, method="POST", headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/vnd.kubernetes.protobuf"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    attributes = field(2, b"get") + field(3, b"apps") + field(5, b"deployments") + field(1, b"default")
    code, review = post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                        envelope("authorization.k8s.io/v1", "SelfSubjectAccessReview", field(2, field(1, attributes))))
    assert (code, review["status"]["allowed"], review["spec"]["resourceAttributes"]["resource"]) == (
        201, True, "deployments")
    code, refused = post("/api/v1/namespaces/default/configmaps",
                         envelope("v1", "ConfigMap", field(1, field(1, b"x"))))
    assert (code, refused["reason"]) == (415, "UnsupportedMediaType")
