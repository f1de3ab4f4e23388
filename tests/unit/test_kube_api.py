"""The Kubernetes target's own REST client: what each call puts on the wire, and what the API server makes of it.

A recording HTTP server on loopback shows the method, path, query, headers and body of each call
made through a client that ``pipeline.kube.connect`` built from a kubeconfig (so the bearer token
and default headers are the kubeconfig's); the Kubernetes double then serves the same calls, and
refuses any path, verb, content type or query parameter it does not understand.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import pytest
import yaml

from pipeline import config as pinotage_config
from pipeline import kube
from pipeline.targets.kubernetes.api import APPLY, JSON, MERGE, KubeApi, path, read_or_none
from tests.fakes import send_json

TOKEN = "t0ken-for-the-recorder"
DEPLOYMENT = "/apis/apps/v1/namespaces/ns/deployments/web"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/ns/leases"


class Recorder(BaseHTTPRequestHandler):
    """Record every request; answer 404 for a name "missing", an event stream for a watch, else an echo."""

    calls: list[dict]

    def _answer(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        query = dict(parse_qsl(url.query))
        self.calls.append({"method": self.command, "path": url.path, "query": query, "body": body,
                           "accept": self.headers.get("Accept"), "content_type": self.headers.get("Content-Type"),
                           "authorization": self.headers.get("Authorization")})
        if url.path.endswith("/missing"):
            send_json(self, 404, {"kind": "Status", "reason": "NotFound", "message": "not there", "code": 404})
        elif query.get("watch") == "true":
            lines = b"".join(json.dumps({"type": t, "object": {"metadata": {"name": n}}}).encode() + b"\n"
                             for t, n in (("ADDED", "a"), ("DELETED", "b")))
            self.send_response(200)
            self.send_header("Content-Length", str(len(lines)))
            self.end_headers()
            self.wfile.write(lines)
        else:
            send_json(self, 201 if self.command == "POST" else 200, {"echo": body, "items": []})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def recorder():
    handler = type("Handler", (Recorder,), {"calls": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server, handler.calls
    finally:
        server.shutdown()
        server.server_close()


def connect(tmp_path, server: str, token: str) -> KubeApi:
    """Build the client as a deploy does: pipeline.kube from a kubeconfig file."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": server}}], "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}))
    config = pinotage_config.load(environ={}, overrides=[f"kubeconfig={kubeconfig}", "deploy.namespace=ns"],
                                  cwd=str(tmp_path))
    return KubeApi(kube.connect(config, {}).api)


@pytest.mark.parametrize("call, method, url_path, query, content_type, body", [
    (lambda api: api.get(DEPLOYMENT), "GET", DEPLOYMENT, {}, None, None),
    (lambda api: api.list("/api/v1/namespaces/ns/pods", {"labelSelector": "app=web,tier=front"}),
     "GET", "/api/v1/namespaces/ns/pods", {"labelSelector": "app=web,tier=front"}, None, None),
    (lambda api: api.create(LEASES, {"kind": "Lease"}), "POST", LEASES, {}, JSON, {"kind": "Lease"}),
    (lambda api: api.replace(LEASES + "/l", {"kind": "Lease"}), "PUT", LEASES + "/l", {}, JSON, {"kind": "Lease"}),
    (lambda api: api.patch(DEPLOYMENT, {"kind": "Deployment"}, APPLY,
                           {"fieldManager": "pinotage", "force": True, "dryRun": "All"}),
     "PATCH", DEPLOYMENT, {"fieldManager": "pinotage", "force": "true", "dryRun": "All"}, APPLY,
     {"kind": "Deployment"}),
    (lambda api: api.patch("/api/v1/namespaces/ns/services/s", {"spec": {}}, MERGE),
     "PATCH", "/api/v1/namespaces/ns/services/s", {}, MERGE, {"spec": {}}),
    (lambda api: api.delete(DEPLOYMENT, {"propagationPolicy": "Background"}),
     "DELETE", DEPLOYMENT, {"propagationPolicy": "Background"}, None, None),
], ids=["get", "list", "create", "replace", "apply", "merge-patch", "delete"])
def test_each_call_sends_what_the_api_server_expects(tmp_path, recorder, call, method, url_path, query,
                                                     content_type, body):
    server, calls = recorder
    calls.clear()
    answer = call(connect(tmp_path, f"http://127.0.0.1:{server.server_address[1]}", TOKEN))
    [sent] = calls
    assert sent == {"method": method, "path": url_path, "query": query, "body": body, "accept": JSON,
                    "content_type": content_type, "authorization": f"Bearer {TOKEN}"}
    assert answer == {"echo": body, "items": []}


def test_a_watch_is_an_open_stream_of_events_with_its_query(tmp_path, recorder):
    from kubernetes.watch.watch import iter_resp_lines

    server, calls = recorder
    calls.clear()
    api = connect(tmp_path, f"http://127.0.0.1:{server.server_address[1]}", TOKEN)
    response = api.watch("/api/v1/namespaces/ns/events", {"fieldSelector": "involvedObject.kind=Pod",
                                                          "resourceVersion": "7", "allowWatchBookmarks": True,
                                                          "timeoutSeconds": 290})
    events = [json.loads(line)["type"] for line in iter_resp_lines(response) if line]
    response.release_conn()
    assert events == ["ADDED", "DELETED"]
    assert calls[0]["query"] == {"fieldSelector": "involvedObject.kind=Pod", "resourceVersion": "7",
                                 "allowWatchBookmarks": "true", "timeoutSeconds": "290", "watch": "true"}


def test_a_refusal_is_the_clients_api_exception_with_the_answer(tmp_path, recorder):
    from kubernetes.client import ApiException

    server, _ = recorder
    api = connect(tmp_path, f"http://127.0.0.1:{server.server_address[1]}", TOKEN)
    with pytest.raises(ApiException) as e:
        api.get(path("apps/v1", "deployments", "ns", "missing"))
    assert e.value.status == 404 and e.value.reason == "Not Found"
    assert json.loads(e.value.body)["message"] == "not there"
    assert read_or_none(api, path("v1", "configmaps", "ns", "missing"), "configmap/missing") is None


@pytest.mark.parametrize("args, expected", [
    (("apps/v1", "deployments", "ns", "web"), "/apis/apps/v1/namespaces/ns/deployments/web"),
    (("v1", "configmaps", "ns"), "/api/v1/namespaces/ns/configmaps"),
    (("coordination.k8s.io/v1", "leases", "a b", "x/y"), "/apis/coordination.k8s.io/v1/namespaces/a%20b/leases/x%2Fy"),
], ids=["named", "core-collection", "quoted"])
def test_paths(args, expected):
    assert path(*args) == expected


def test_the_double_serves_every_call(tmp_path):
    """Each verb against the Kubernetes double, which refuses what a real API server would not accept."""
    from kubernetes.client import ApiException
    from kubernetes.watch.watch import iter_resp_lines

    from tests.fakes.kube import FakeKube

    with FakeKube(token="admin-kube-api-test") as fake:
        api = connect(tmp_path, fake.url, "admin-kube-api-test")
        configmaps, named = path("v1", "configmaps", "default"), path("v1", "configmaps", "default", "c")
        created = api.create(configmaps, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                                          "data": {"n": "1"}})
        found = api.get(named)
        found["data"]["n"] = "2"
        assert api.replace(named, found)["data"] == {"n": "2"}
        assert api.patch(named, {"data": {"m": "3"}}, MERGE)["data"] == {"n": "2", "m": "3"}
        applied = api.patch(named, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                                    "data": {"n": "4"}}, APPLY, {"fieldManager": "pinotage", "force": True})
        assert applied["data"]["n"] == "4"
        with pytest.raises(ApiException) as conflict:
            api.replace(named, found)  # an old resourceVersion
        assert conflict.value.status == 409
        listed = api.list(configmaps, {"fieldSelector": "metadata.name=c"})
        assert [item["metadata"]["name"] for item in listed["items"]] == ["c"]
        response = api.watch(configmaps, {"fieldSelector": "metadata.name=c",
                                          "resourceVersion": created["metadata"]["resourceVersion"],
                                          "timeoutSeconds": 1})
        seen = [json.loads(line)["type"] for line in iter_resp_lines(response) if line]
        response.release_conn()
        assert seen == ["MODIFIED"] * 3
        api.delete(named, {"propagationPolicy": "Background"})
        assert read_or_none(api, named, "configmap/c") is None
