"""The API server's semantics the fake models, held to the same assertions as a real cluster.

Runs against the fake (tests/fakes/kube, in-memory kubelet) unless PINOTAGE_TEST_KUBECONFIG
names a real cluster's admin kubeconfig; every request goes through the official Python client,
so the same test passes or fails on both: shared field ownership in server-side apply, dryRun,
/status and /scale, status ignored on writes to the main resource, an immutable selector, Lease
validation, watch expiry as an ERROR event in a 200 stream, and bookmarks.
"""

from __future__ import annotations

import json
import os
import secrets

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """Yield (kubernetes ApiClient as the admin, the FakeKube or None)."""
    import kubernetes

    real = os.environ.get("PINOTAGE_TEST_KUBECONFIG")
    if real:
        client = kubernetes.config.new_client_from_config(config_file=real, persist_config=False)
        yield client, None
        client.close()
        return
    from tests.fakes.kube import FakeKube

    fake = FakeKube(token=secrets.token_urlsafe(12), pod_start_s=0.1, bookmark_s=0.5).start()
    path = fake.kubeconfig(tmp_path_factory.mktemp("kube") / "admin.yaml")
    client = kubernetes.config.new_client_from_config(config_file=str(path), persist_config=False)
    yield client, fake
    client.close()
    fake.stop()
    path.unlink()


@pytest.fixture
def namespace(api):
    from kubernetes import client

    core = client.CoreV1Api(api[0])
    name = f"pinotage-contract-{secrets.token_hex(4)}"
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


def _send(api, method: str, path: str, body, content_type: str, query: dict):
    client = api[0]
    prepared = client.param_serialize(method, path, query_params=list(query.items()), body=body,
                                      header_params={"Content-Type": content_type, "Accept": "application/json"},
                                      auth_settings=["BearerToken"])
    return client.call_api(*prepared)


def call(api, method: str, path: str, body=None, *, content_type: str = "application/json",
         **query) -> tuple[int, dict]:
    """Make one request with the client's credentials; return (code, JSON body)."""
    response = _send(api, method, path, body, content_type, query)
    return response.status, json.loads(response.read() or b"{}")


def watch_events(api, path: str, **query) -> tuple[int, list[dict]]:
    """Watch path until the server ends the stream; return (HTTP code, events)."""
    response = _send(api, "GET", path, None, "application/json", {"watch": "true", **query})
    return response.status, [json.loads(line) for line in response.read().splitlines() if line.strip()]


def _cm(name: str, **data) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def _apply(api, namespace: str, name: str, manager: str, **data) -> tuple[int, dict]:
    return call(api, "PATCH", f"/api/v1/namespaces/{namespace}/configmaps/{name}", _cm(name, **data),
                content_type="application/apply-patch+yaml", fieldManager=manager)


def _owned(obj: dict) -> dict[str, set[str]]:
    return {m["manager"]: set(m["fieldsV1"].get("f:data", {})) for m in obj["metadata"]["managedFields"]}


def test_a_field_applied_by_two_managers_keeps_its_value_until_both_drop_it(api, namespace):
    assert _apply(api, namespace, "shared", "alice", x="1", a="1")[0] == 201
    code, both = _apply(api, namespace, "shared", "bob", x="1", b="2")
    assert code == 200, both
    assert _owned(both) == {"alice": {"f:x", "f:a"}, "bob": {"f:x", "f:b"}}
    code, clash = _apply(api, namespace, "shared", "carol", x="9")
    assert (code, clash["reason"]) == (409, "Conflict")
    assert 'conflict with "alice"' in clash["message"] and 'conflict with "bob"' in clash["message"]
    _, dropped_by_bob = _apply(api, namespace, "shared", "bob", b="2")
    assert dropped_by_bob["data"] == {"x": "1", "a": "1", "b": "2"}, "alice still applies x"
    _, dropped_by_both = _apply(api, namespace, "shared", "alice", a="1")
    assert dropped_by_both["data"] == {"a": "1", "b": "2"}


def test_dry_run_answers_the_write_and_stores_nothing(api, namespace):
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    code, created = call(api, "POST", base, _cm("dry", k="v"), dryRun="All")
    assert (code, created["data"]) == (201, {"k": "v"})
    assert call(api, "GET", f"{base}/dry")[0] == 404
    _, live = call(api, "POST", base, _cm("dry", k="v"))
    code, patched = call(api, "PATCH", f"{base}/dry", {"data": {"k": "w"}},
                         content_type="application/merge-patch+json", dryRun="All")
    assert (code, patched["data"]) == (200, {"k": "w"})
    assert call(api, "DELETE", f"{base}/dry", dryRun="All")[0] == 200
    _, after = call(api, "GET", f"{base}/dry")
    assert (after["data"], after["metadata"]["resourceVersion"]) == ({"k": "v"}, live["metadata"]["resourceVersion"])


def test_status_is_written_only_through_the_status_subresource(api, namespace):
    base = f"/api/v1/namespaces/{namespace}/services"
    ingress = {"loadBalancer": {"ingress": [{"ip": "192.0.2.7"}]}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"ports": [{"port": 80}], "selector": {"app": "web"}}, "status": ingress}
    code, created = call(api, "POST", base, service)
    assert code == 201 and created.get("status", {}).get("loadBalancer", {}) == {}
    code, status = call(api, "PATCH", f"{base}/web/status", {"status": ingress},
                        content_type="application/merge-patch+json")
    assert (code, status["status"]) == (200, ingress)
    code, main = call(api, "PATCH", f"{base}/web", {"metadata": {"labels": {"tier": "front"}},
                                                      "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.9"}]}}},
                      content_type="application/merge-patch+json")
    assert (code, main["metadata"]["labels"], main["status"]) == (200, {"tier": "front"}, ingress)


def _deployment(name: str, replicas: int, app: str = "web") -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": app}},
                     "template": {"metadata": {"labels": {"app": app}},
                                  "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1"}]}}}}


def test_scale_subresource_reads_and_sets_replicas(api, namespace):
    base = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    assert call(api, "POST", base, _deployment("web", 0))[0] == 201
    code, scale = call(api, "GET", f"{base}/web/scale")
    assert (code, scale["kind"], scale["apiVersion"], scale["spec"]) == (200, "Scale", "autoscaling/v1",
                                                                         {"replicas": 0})
    assert scale["status"]["selector"] == "app=web"
    code, scaled = call(api, "PATCH", f"{base}/web/scale", {"spec": {"replicas": 3}},
                        content_type="application/merge-patch+json")
    assert (code, scaled["spec"]["replicas"]) == (200, 3)
    _, live = call(api, "GET", f"{base}/web")
    assert (live["spec"]["replicas"], live["metadata"]["generation"]) == (3, 2)


def test_a_deployments_selector_is_immutable(api, namespace):
    base = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    _, created = call(api, "POST", base, _deployment("web", 0))
    changed = _deployment("web", 0, app="other")
    changed["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"]
    code, refused = call(api, "PUT", f"{base}/web", changed)
    assert (code, refused["reason"]) == (422, "Invalid")
    assert "field is immutable" in refused["message"]
    assert "spec.selector" in {c["field"] for c in refused["details"]["causes"]}


@pytest.mark.parametrize("spec, field", [
    ({"holderIdentity": "a", "leaseDurationSeconds": 0}, "spec.leaseDurationSeconds"),
    ({"holderIdentity": "a", "leaseDurationSeconds": 15, "leaseTransitions": -1}, "spec.leaseTransitions"),
], ids=["zero-duration", "negative-transitions"])
def test_lease_validation(api, namespace, spec, field):
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "lock"}, "spec": spec}
    code, refused = call(api, "POST", f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases", lease)
    assert (code, refused["reason"]) == (422, "Invalid")
    assert [c["field"] for c in refused["details"]["causes"]] == [field]


def test_a_watch_from_an_expired_version_is_an_error_event_in_a_200_stream(api, namespace):
    fake = api[1]
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    _, first = call(api, "POST", base, _cm("churn", n="0"))
    window = 5
    if fake is not None:
        fake.store.event_window = window  # a small watch cache, so a few writes expire the first version
    try:
        for n in range(window + 2):
            call(api, "PATCH", f"{base}/churn", {"data": {"n": str(n)}}, content_type="application/merge-patch+json")
        old = "1" if fake is None else first["metadata"]["resourceVersion"]
        code, events = watch_events(api, base, resourceVersion=old, timeoutSeconds="5")
    finally:
        if fake is not None:
            fake.store.event_window = 20000
    assert code == 200
    assert [e["type"] for e in events] == ["ERROR"]
    status = events[0]["object"]
    assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Expired")
    assert status["message"].startswith("too old resource version")


def test_an_idle_watch_that_asks_for_bookmarks_gets_one(api, namespace):
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    _, listed = call(api, "GET", base)
    code, events = watch_events(api, base, resourceVersion=listed["metadata"]["resourceVersion"],
                                allowWatchBookmarks="true", timeoutSeconds="3")
    assert code == 200 and events, "no event at all"
    assert {e["type"] for e in events} == {"BOOKMARK"}
    assert all(int(e["object"]["metadata"]["resourceVersion"]) >= int(listed["metadata"]["resourceVersion"])
               for e in events)
    assert events[0]["object"]["kind"] == "ConfigMap"


def test_no_bookmark_unless_asked(api, namespace):
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    _, listed = call(api, "GET", base)
    code, events = watch_events(api, base, resourceVersion=listed["metadata"]["resourceVersion"], timeoutSeconds="1")
    assert (code, events) == (200, [])


def test_unknown_kinds_and_verbs_are_refused(api):
    code, answer = call(api, "GET", "/apis/widgets.example.com/v1/namespaces/default/widgets")
    assert (code, answer["kind"]) == (404, "Status")
    code, answer = call(api, "GET", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")
    assert (code, answer["reason"]) == (405, "MethodNotAllowed")


def test_unknown_fields_are_refused_as_the_api_server_refuses_them(api, namespace):
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    typo = {**_cm("typo", k="v"), "dta": {"k": "v"}}
    code, refused = call(api, "POST", base, typo, fieldValidation="Strict")
    assert (code, refused["reason"]) == (400, "BadRequest")
    assert refused["message"] == 'strict decoding error: unknown field "dta"'
    code, created = call(api, "POST", base, typo)  # the default (Warn) accepts and drops the field
    assert code == 201 and "dta" not in created
    # an apply is refused whatever fieldValidation says: Kubernetes 1.32 answers 500 (kubernetes#122480)
    code, applied = call(api, "PATCH", f"{base}/typo", typo, content_type="application/apply-patch+yaml",
                         fieldManager="alice")
    assert code == 500
    assert applied["message"] == (f"failed to create typed patch object ({namespace}/typo; v1, Kind=ConfigMap): "
                                  ".dta: field not declared in schema")
