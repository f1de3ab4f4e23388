"""The fake API server's reads: get, list (JSON or, when asked, a meta.k8s.io Table) and watch.

A watch streams the events after its resourceVersion. One older than the event window is
answered as the API server's watch cache answers it: a 200 stream holding one ERROR event whose
Status has code 410 (reason Expired), then the end. A watch that asked for bookmarks gets a
BOOKMARK (only ``metadata.resourceVersion``) when it has been idle ``bookmark_s``, and one just
before the server ends it at ``timeoutSeconds``.
"""

from __future__ import annotations

import json
import re
import select
import socket
import time
from datetime import datetime, timezone

from tests.fakes.kube import store as st
from tests.fakes.kube.store import ApiError, Kind, Object

WATCH_TIMEOUT_S = 1800
TABLE = "as=Table;v=v1;g=meta.k8s.io"


class Reads:
    """get, list and watch, mixed into the HTTP handler."""

    def get(self, kind: Kind, namespace, name, query, user):
        obj = self.api.store.get(kind, namespace, name)
        return 200, (_table(kind, [obj], str(obj["metadata"]["resourceVersion"])) if self._wants_table() else obj)

    def list(self, kind: Kind, namespace, name, query, user):
        labels = st.parse_label_selector(query.get("labelSelector", ""))
        fields = st.parse_field_selector(query.get("fieldSelector", ""), kind.resource)
        with self.api.store.cond:
            items = [o for o in self.api.store.find(kind, namespace or None)
                     if labels(o["metadata"].get("labels")) and fields(o)]
            rv = str(self.api.store.rv)
        start = int(query.get("continue") or 0)
        limit = int(query.get("limit") or 0)
        page = items[start:start + limit] if limit else items[start:]
        meta = {"resourceVersion": rv}
        if limit and start + limit < len(items):
            meta["continue"] = str(start + limit)
            meta["remainingItemCount"] = len(items) - start - limit
        if self._wants_table():
            table = _table(kind, page, rv)
            table["metadata"].update({k: v for k, v in meta.items() if k != "resourceVersion"})
            return 200, table
        for item in page:
            item.pop("apiVersion", None)
            item.pop("kind", None)
        return 200, {"kind": f"{kind.kind}List", "apiVersion": kind.api_version, "metadata": meta, "items": page}

    def _wants_table(self) -> bool:
        return TABLE in (self.headers.get("Accept") or "").replace(" ", "")

    def watch(self, kind: Kind, namespace, name, query, user):
        labels = st.parse_label_selector(query.get("labelSelector", ""))
        fields = st.parse_field_selector(query.get("fieldSelector", ""), kind.resource)
        timeout_s = int(query.get("timeoutSeconds") or _duration_s(query.get("timeout", "")) or WATCH_TIMEOUT_S)
        bookmarks = query.get("allowWatchBookmarks") == "true"
        raw_rv = query.get("resourceVersion", "")
        try:
            since = int(raw_rv) if raw_rv not in ("", "0") else 0
        except ValueError:
            raise st.bad_request(f"invalid resource version: {raw_rv}")
        match = lambda o: labels(o["metadata"].get("labels")) and fields(o)  # noqa: E731
        initial, expired = [], None
        with self.api.store.cond:
            if not since:
                initial = [o for o in self.api.store.find(kind, namespace or None) if match(o)]
                since = self.api.store.rv
            try:
                self.api.store.check_since(since)
            except ApiError as e:
                expired = e
            stream = self.api.store.follow(kind, namespace or None, since, time.monotonic() + timeout_s, match)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if expired is not None:
            self._chunk({"type": "ERROR", "object": expired.status()})
        else:
            self._stream(kind, initial, stream, since, bookmarks, self._wants_table())
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        return 200, None

    def _stream(self, kind: Kind, initial: list, stream, since: int, bookmarks: bool, table: bool) -> None:
        position, quiet_since = since, time.monotonic()

        def shown(obj: Object) -> Object:  # kubectl get -w asks for each event's object as a one-row Table
            return _table(kind, [obj], obj["metadata"]["resourceVersion"]) if table else obj

        try:
            for obj in initial:
                self._chunk({"type": "ADDED", "object": shown(obj)})
            for event in stream:
                if event is not None:
                    self._chunk({"type": event.type, "object": shown(event.obj)})
                    position, quiet_since = event.rv, time.monotonic()
                    continue
                if self._client_gone():
                    return
                if bookmarks and time.monotonic() - quiet_since >= self.api.bookmark_s:
                    self._bookmark(kind, position)
                    quiet_since = time.monotonic()
            if bookmarks:
                self._bookmark(kind, max(position, self.api.store.rv))
        except ApiError as e:
            self._chunk({"type": "ERROR", "object": e.status()})

    def _bookmark(self, kind: Kind, rv: int) -> None:
        self._chunk({"type": "BOOKMARK", "object": {"kind": kind.kind, "apiVersion": kind.api_version,
                                                    "metadata": {"resourceVersion": str(rv)}}})

    def _chunk(self, event: Object) -> None:
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            # the plain socket's recv: over TLS it peeks at the raw bytes (an SSLSocket refuses flags)
            return bool(readable) and socket.socket.recv(self.connection, 1, socket.MSG_PEEK) == b""
        except OSError:
            return True


def _duration_s(text: str) -> int:
    """Read a Go duration ("4s", "1m30s", "500ms") as the request's ``timeout`` parameter gives it; 0 when absent."""
    if not text:
        return 0
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise st.bad_request(f'invalid timeout "{text}"')
    seconds = sum(float(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[u] for n, u in parts)
    return max(1, round(seconds))


# --- tables (what kubectl get prints) ---------------------------------------------------

def _age(stamp: str | None) -> str:
    if not stamp:
        return "<unknown>"
    seconds = int((datetime.now(timezone.utc) - datetime.fromisoformat(stamp.replace("Z", "+00:00"))).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _pod_cells(pod: Object) -> list:
    status = pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    reason = status.get("phase", "Pending")
    for cs in statuses:
        state = cs.get("state") or {}
        reason = (state.get("waiting") or {}).get("reason") or (state.get("terminated") or {}).get("reason") or reason
    ready = sum(1 for cs in statuses if cs.get("ready"))
    return [f"{ready}/{len(pod['spec'].get('containers') or ())}", reason,
            sum(cs.get("restartCount", 0) for cs in statuses)]


COLUMNS = {  # resource -> ([(name, type)], cells(obj)) between Name and Age, as the built-in printers show
    "pods": ([("Ready", "string"), ("Status", "string"), ("Restarts", "string")], _pod_cells),
    "deployments": ([("Ready", "string"), ("Up-to-date", "integer"), ("Available", "integer")], lambda d: [
        f"{(d.get('status') or {}).get('readyReplicas', 0)}/{d['spec'].get('replicas', 1)}",
        (d.get("status") or {}).get("updatedReplicas", 0), (d.get("status") or {}).get("availableReplicas", 0)]),
    "replicasets": ([("Desired", "integer"), ("Current", "integer"), ("Ready", "integer")], lambda r: [
        r["spec"].get("replicas", 1), (r.get("status") or {}).get("replicas", 0),
        (r.get("status") or {}).get("readyReplicas", 0)]),
    "services": ([("Type", "string"), ("Cluster-IP", "string"), ("Port(s)", "string")], lambda s: [
        s["spec"].get("type"), s["spec"].get("clusterIP"),
        ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in s["spec"].get("ports") or ())]),
    "namespaces": ([("Status", "string")], lambda n: [(n.get("status") or {}).get("phase", "Active")]),
    "configmaps": ([("Data", "integer")], lambda c: [len(c.get("data") or {}) + len(c.get("binaryData") or {})]),
}


def _table(kind: Kind, objects: list[Object], rv: str) -> Object:
    columns, cells = COLUMNS.get(kind.resource, ([], lambda o: []))
    definitions = [{"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}]
    definitions += [{"name": n, "type": t, "format": "", "description": n, "priority": 0} for n, t in columns]
    definitions.append({"name": "Age", "type": "string", "format": "", "description": "Age", "priority": 0})
    rows = [{"cells": [o["metadata"]["name"], *cells(o), _age(o["metadata"].get("creationTimestamp"))],
             "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}}
            for o in objects]
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv},
            "columnDefinitions": definitions, "rows": rows}
