"""Read the Kubernetes protobuf wire format for the few request bodies kubectl sends that way.

kubectl's typed clients (``kubectl auth can-i``, ``kubectl create``) send
``application/vnd.kubernetes.protobuf``: the magic ``k8s\\0``, then a ``runtime.Unknown``
(typeMeta, raw, contentEncoding, contentType) whose ``raw`` is the object in the field numbers of
the API's ``generated.proto``. Only the messages listed in SCHEMAS are understood; any other is
refused with 415, naming what was sent. Answers always go back as JSON, which those clients accept.
"""

from __future__ import annotations

from tests.fakes.kube.store import ApiError

MAGIC = b"k8s\x00"
PROTOBUF = "application/vnd.kubernetes.protobuf"

# message -> {field number: (name, message name or "string" / "strings" (repeated) / "bool" / "int")}
SCHEMAS = {
    "Unknown": {1: ("typeMeta", "TypeMeta"), 2: ("raw", "bytes"), 3: ("contentEncoding", "string"),
                4: ("contentType", "string")},
    "TypeMeta": {1: ("apiVersion", "string"), 2: ("kind", "string")},
    "ObjectMeta": {1: ("name", "string"), 2: ("generateName", "string"), 3: ("namespace", "string")},
    "SelfSubjectAccessReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "SelfSubjectAccessReviewSpec")},
    "SelfSubjectAccessReviewSpec": {1: ("resourceAttributes", "ResourceAttributes"),
                                    2: ("nonResourceAttributes", "NonResourceAttributes")},
    "ResourceAttributes": {1: ("namespace", "string"), 2: ("verb", "string"), 3: ("group", "string"),
                           4: ("version", "string"), 5: ("resource", "string"), 6: ("subresource", "string"),
                           7: ("name", "string")},
    "NonResourceAttributes": {1: ("path", "string"), 2: ("verb", "string")},
    "TokenRequest": {1: ("metadata", "ObjectMeta"), 2: ("spec", "TokenRequestSpec")},
    "TokenRequestSpec": {1: ("audiences", "strings"), 4: ("expirationSeconds", "int")},
}
KINDS = {("authorization.k8s.io/v1", "SelfSubjectAccessReview"), ("authentication.k8s.io/v1", "TokenRequest")}


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if at >= len(data):
            raise ValueError("truncated varint")
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at += 1
        if not byte & 0x80:
            return value, at
        shift += 7


def _message(data: bytes, schema: str) -> dict:
    fields, out, at = SCHEMAS[schema], {}, 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _varint(data, at)
        elif wire == 2:
            size, at = _varint(data, at)
            value, at = data[at:at + size], at + size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, at = data[at:at + size], at + size
        else:
            raise ValueError(f"wire type {wire}")
        if number not in fields:
            continue  # a field this fake does not read (as an older server ignores newer fields)
        name, kind = fields[number]
        if kind == "string":
            out[name] = value.decode()
        elif kind == "strings":
            out.setdefault(name, []).append(value.decode())
        elif kind == "bytes":
            out[name] = value
        elif kind in ("bool", "int"):
            out[name] = bool(value) if kind == "bool" else value
        else:
            out[name] = _message(value, kind)
    return out


def decode(raw: bytes) -> dict:
    """Return the JSON form of a protobuf-encoded request body, or raise 415 for one not understood."""
    if not raw.startswith(MAGIC):
        raise ApiError(400, "BadRequest", "the protobuf body does not start with the Kubernetes magic number")
    try:
        envelope = _message(raw[len(MAGIC):], "Unknown")
        type_meta = envelope.get("typeMeta") or {}
        key = (type_meta.get("apiVersion", ""), type_meta.get("kind", ""))
        if key not in KINDS:
            raise ApiError(415, "UnsupportedMediaType",
                           f"the fake API server reads no protobuf {key[0]} {key[1]}: send application/json")
        body = _message(envelope.get("raw", b""), key[1])
    except ValueError as e:
        raise ApiError(400, "BadRequest", f"error decoding protobuf body: {e}") from e
    return {"apiVersion": key[0], "kind": key[1], **body}
