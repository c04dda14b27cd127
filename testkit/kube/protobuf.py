"""Just enough of Kubernetes' protobuf encoding to read what kubectl 1.33 sends for `kubectl create secret`.

kubectl (client-go) sends built-in types as `application/vnd.kubernetes.protobuf` and does not fall back to JSON
on 415: the envelope is the magic `k8s\\x00` and a `runtime.Unknown` (1 typeMeta {1 apiVersion, 2 kind}, 2 raw,
3 contentEncoding, 4 contentType); `raw` is the object's message. Field numbers are those of
k8s.io/api/core/v1/generated.proto (Secret: 1 metadata, 2 data, 3 type, 4 stringData, 5 immutable) and
k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto (ObjectMeta: 1 name, 2 generateName, 3 namespace,
11 labels, 12 annotations). Secrets and the access reviews of `kubectl auth can-i` are decoded
(k8s.io/api/authorization/v1/generated.proto: review 1 metadata, 2 spec; SelfSubjectAccessReviewSpec
1 resourceAttributes, 2 nonResourceAttributes; SubjectAccessReviewSpec the same plus 3 user, 4 groups;
ResourceAttributes 1 namespace, 2 verb, 3 group, 4 version, 5 resource, 6 subresource, 7 name); anything else
is refused by the caller.
"""

from __future__ import annotations

import base64
from typing import Any

MAGIC = b"k8s\x00"


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs of one message: ints for varints, bytes for length-delimited values."""
    out: list[tuple[int, int | bytes]] = []
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
            out.append((number, value))
        elif wire == 2:
            length, i = _varint(buf, i)
            out.append((number, buf[i : i + length]))
            i += length
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    return out


def _map_entry(raw: bytes) -> tuple[str, bytes]:
    parts = dict(fields(raw))
    key, value = parts.get(1, b""), parts.get(2, b"")
    return (key.decode() if isinstance(key, bytes) else ""), (value if isinstance(value, bytes) else b"")


def _meta(raw: bytes) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    names = {1: "name", 2: "generateName", 3: "namespace"}
    for number, value in fields(raw):
        if not isinstance(value, bytes):
            continue
        if number in names:
            meta[names[number]] = value.decode()
        elif number in (11, 12):
            key, item = _map_entry(value)
            meta.setdefault("labels" if number == 11 else "annotations", {})[key] = item.decode()
    return meta


def decode(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded Secret; ValueError for anything else."""
    if not body.startswith(MAGIC):
        raise ValueError("not a Kubernetes protobuf body")
    unknown = dict(fields(body[len(MAGIC) :]))
    type_meta = unknown.get(1, b"")
    raw = unknown.get(2, b"")
    if not isinstance(type_meta, bytes) or not isinstance(raw, bytes):
        raise ValueError("malformed runtime.Unknown")
    tm = {n: v.decode() for n, v in fields(type_meta) if isinstance(v, bytes)}
    if tm.get(2) in ("SelfSubjectAccessReview", "SubjectAccessReview"):
        return _review(tm.get(1) or "authorization.k8s.io/v1", tm[2], raw)
    if tm.get(2) != "Secret":
        raise ValueError(f"protobuf is read for Secrets and access reviews only, not {tm.get(2)!r}")
    obj: dict[str, Any] = {"apiVersion": tm.get(1) or "v1", "kind": "Secret", "metadata": {}}
    for number, value in fields(raw):
        if number == 1 and isinstance(value, bytes):
            obj["metadata"] = _meta(value)
        elif number == 2 and isinstance(value, bytes):
            key, item = _map_entry(value)
            obj.setdefault("data", {})[key] = base64.b64encode(item).decode()
        elif number == 3 and isinstance(value, bytes):
            obj["type"] = value.decode()
        elif number == 4 and isinstance(value, bytes):
            key, item = _map_entry(value)
            obj.setdefault("stringData", {})[key] = item.decode()
        elif number == 5:
            obj["immutable"] = bool(value)
    return obj


_ATTRIBUTES = {1: "namespace", 2: "verb", 3: "group", 4: "version", 5: "resource", 6: "subresource", 7: "name"}


def _review(api_version: str, kind: str, raw: bytes) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    for number, value in fields(raw):
        if number != 2 or not isinstance(value, bytes):
            continue
        for field, item in fields(value):
            if not isinstance(item, bytes):
                continue
            if field == 1:
                attrs = {
                    _ATTRIBUTES[n]: v.decode() for n, v in fields(item) if n in _ATTRIBUTES and isinstance(v, bytes)
                }
                spec["resourceAttributes"] = attrs
            elif field == 2:
                spec["nonResourceAttributes"] = {"path": "", "verb": ""}
            elif field == 3:
                spec["user"] = item.decode()
            elif field == 4:
                spec.setdefault("groups", []).append(item.decode())
    return {"apiVersion": api_version, "kind": kind, "metadata": {}, "spec": spec}
