"""The OpenAPI v3 documents of the simulated API server, derived from the real Kubernetes schemas.

kubectl reads them before `apply`, `create`, `replace` and `patch` with validation (the default `--validate=strict`):

- `/openapi/v3` lists one document per group-version
  (`{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=…"}}}`, client-go `openapi/client.go` and
  `openapi3/root.go`);
- cli-runtime's `query_param_verifier_v3.go` (`supportsQueryParamV3`) looks, in the group-version's document, for the
  PATCH operation whose `x-kubernetes-group-version-kind` is the object's and for a `fieldValidation` parameter among
  that operation's parameters; when it is there, kubectl sends `fieldValidation=Strict` and leaves validation to the
  server (which this simulator then does, see `validation.py`);
- kubectl apply's `Patcher.gvkSupportsPatchOpenAPIV3` (`pkg/cmd/apply/patcher.go`) needs that PATCH operation's
  `requestBody.content` to offer `application/strategic-merge-patch+json`, then builds the three-way strategic merge
  patch from the component schema that carries the kind's `x-kubernetes-group-version-kind` and its
  `x-kubernetes-patch-merge-key`/`x-kubernetes-patch-strategy` extensions.

The component schemas come from kubernetes-validate's copy of the Kubernetes OpenAPI definitions for the version
`/version` claims; they are converted back to OpenAPI 3 form (`#/components/schemas/…` references, wrapped in
`allOf` where the reference has siblings, single `type` strings), as kube-apiserver's builder writes them.
"""

from __future__ import annotations

import functools
import hashlib
import json
from importlib import resources
from typing import Any

from testkit.kube.objectstore import RESOURCES, ResourceType

Obj = dict[str, Any]

KUBE_VERSION = "1.31"  # what /version claims; the schemas served and validated against are this version's
_REF_PREFIX = "#/$defs/"
_GVK_EXT = "x-kubernetes-group-version-kind"


@functools.cache
def definitions(version: str = KUBE_VERSION) -> dict[str, Obj]:
    """The Kubernetes definitions (JSON Schema form, as kubernetes-validate ships them) by name."""
    base = resources.files("kubernetes_validate") / "kubernetes-json-schema" / f"v{version}.0-local"
    data = json.loads((base / "_definitions.json").read_text(encoding="utf-8"))
    return dict(data["$defs"])


def definition_name(rt: ResourceType, version: str = KUBE_VERSION) -> str:
    """The definition of a served kind, found by its x-kubernetes-group-version-kind."""
    for name, schema in definitions(version).items():
        for gvk in schema.get(_GVK_EXT) or []:
            if gvk.get("group") == rt.group and gvk.get("version") == rt.version and gvk.get("kind") == rt.kind:
                return name
    raise KeyError(rt.kind)


def _to_openapi3(node: Any) -> Any:
    if isinstance(node, list):
        return [_to_openapi3(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: Obj = {}
    for key, value in node.items():
        if key == "type" and isinstance(value, list):
            kinds = [t for t in value if t != "null"]
            if kinds:
                out["type"] = kinds[0]
        elif key == "$ref" and isinstance(value, str):
            continue
        else:
            out[key] = _to_openapi3(value)
    ref = node.get("$ref")
    if isinstance(ref, str):
        target = {"$ref": "#/components/schemas/" + ref.removeprefix(_REF_PREFIX)}
        if out:
            out["allOf"] = [target]
        else:
            out = target
    return out


def _referenced(names: list[str], defs: dict[str, Obj]) -> list[str]:
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen or name not in defs:
            continue
        seen.add(name)
        stack: list[Any] = [defs[name]]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                ref = node.get("$ref")
                if isinstance(ref, str) and ref.startswith(_REF_PREFIX):
                    todo.append(ref.removeprefix(_REF_PREFIX))
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
    return sorted(seen)


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _query(name: str, description: str, type_: str = "string") -> Obj:
    return {"name": name, "in": "query", "description": description, "schema": {"type": type_, "uniqueItems": True}}


_DRY_RUN = _query("dryRun", "When present, indicates that modifications should not be persisted. Valid value: All")
_FIELD_MANAGER = _query("fieldManager", "fieldManager is a name associated with the actor or entity making changes.")
_FIELD_VALIDATION = _query(
    "fieldValidation",
    "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate "
    "fields. Valid values are: Ignore, Warn, Strict.",
)
_PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)


def _operation(rt: ResourceType, action: str, op_id: str, ref: str, parameters: list[Obj]) -> Obj:
    ok = {"description": "OK", "content": {"application/json": {"schema": {"$ref": ref}}}}
    op: Obj = {
        "tags": [f"{rt.group or 'core'}_{rt.version}"],
        "operationId": op_id,
        "parameters": parameters,
        "responses": {"200": ok, "401": {"description": "Unauthorized"}},
        "x-kubernetes-action": action,
        _GVK_EXT: {"group": rt.group, "version": rt.version, "kind": rt.kind},
    }
    if action == "patch":
        patch_schema = {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}
        op["requestBody"] = {"content": {t: {"schema": patch_schema} for t in _PATCH_TYPES}, "required": True}
    elif action in ("put", "post"):
        op["requestBody"] = {"content": {"application/json": {"schema": {"$ref": ref}}}, "required": True}
    elif action == "delete":
        delete_ref = "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"
        op["requestBody"] = {"content": {"application/json": {"schema": {"$ref": delete_ref}}}}
    return op


def _paths(rt: ResourceType, schema_name: str) -> dict[str, Obj]:
    ref = f"#/components/schemas/{schema_name}"
    list_ref = f"#/components/schemas/{schema_name}List"
    prefix = f"/{_gv_path(rt.group, rt.version)}"
    scope = "/namespaces/{namespace}" if rt.namespaced else ""
    path_params: list[Obj] = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
    if rt.namespaced:
        path_params.append({"name": "namespace", "in": "path", "required": True, "schema": {"type": "string"}})
    word = f"{'Namespaced' if rt.namespaced else ''}{rt.kind}"
    writes = [_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION]
    item: Obj = {
        "get": _operation(rt, "get", f"read{word}", ref, []),
        "put": _operation(rt, "put", f"replace{word}", ref, writes),
        "patch": _operation(rt, "patch", f"patch{word}", ref, [*writes, _query("force", "Force applies.", "boolean")]),
        "delete": _operation(rt, "delete", f"delete{word}", ref, [_DRY_RUN]),
        "parameters": path_params,
    }
    collection: Obj = {
        "get": _operation(rt, "list", f"list{word}", list_ref, []),
        "post": _operation(rt, "post", f"create{word}", ref, writes),
        "parameters": path_params[1:],
    }
    return {f"{prefix}{scope}/{rt.plural}/{{name}}": item, f"{prefix}{scope}/{rt.plural}": collection}


@functools.cache
def _documents(version: str) -> dict[str, bytes]:
    defs = definitions(version)
    by_gv: dict[str, list[ResourceType]] = {}
    for rt in RESOURCES:
        by_gv.setdefault(_gv_path(rt.group, rt.version), []).append(rt)
    out: dict[str, bytes] = {}
    for gv, types in by_gv.items():
        paths: dict[str, Obj] = {}
        roots = [
            "io.k8s.apimachinery.pkg.apis.meta.v1.Patch",
            "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
            "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
        ]
        for rt in types:
            name = definition_name(rt, version)
            roots += [name, f"{name}List"]
            paths.update(_paths(rt, name))
        doc = {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": f"v{version}.0"},
            "paths": paths,
            "components": {"schemas": {n: _to_openapi3(defs[n]) for n in _referenced(roots, defs)}},
        }
        out[gv] = json.dumps(doc, separators=(",", ":")).encode()
    return out


def document(gv_path: str, version: str = KUBE_VERSION) -> bytes | None:
    """The OpenAPI v3 document of one group-version ("api/v1", "apis/apps/v1"), or None if not served."""
    return _documents(version).get(gv_path.strip("/"))


def index(version: str = KUBE_VERSION) -> Obj:
    """The `/openapi/v3` index: each group-version's document path with a content hash, as kube-apiserver lists it."""
    return {
        "paths": {
            gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash={hashlib.sha512(body).hexdigest()[:128].upper()}"}
            for gv, body in _documents(version).items()
        }
    }


# ---- OpenAPI v2 (kubectl ≤ 1.27 asks for it before `apply`) ----
#
# client-go's `DiscoveryClient.OpenAPISchema()` (discovery/discovery_client.go) fetches `/openapi/v2` with
# `Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf` and decodes gnostic's `openapi_v2.Document`
# protobuf (google/gnostic openapiv2/OpenAPIv2.proto) whatever the answer's content type; kubectl 1.27 stops `apply`
# with a 404 there. cli-runtime's `query_param_verifier.go` then looks for the PATCH operation of the kind
# (vendor extension `x-kubernetes-group-version-kind`, YAML) and its `fieldValidation` query parameter. The protobuf
# document served here holds exactly that (paths with their PATCH operations, no definitions): kubectl then leaves
# validation to the server, and apply computes its strategic merge patch from its compiled-in types.

V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"  # what client-go asks for
V2_PROTOBUF_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"  # a media type Go can parse


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes | str) -> bytes:
    """One length-delimited protobuf field (wire type 2: strings and embedded messages)."""
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _named_any(name: str, yaml_text: str) -> bytes:
    return _field(1, name) + _field(2, _field(2, yaml_text))  # NamedAny{name, value: Any{yaml}}


def _query_param(name: str) -> bytes:
    sub = _field(2, "query") + _field(4, name) + _field(6, "string")  # QueryParameterSubSchema{in, name, type}
    non_body = _field(3, sub)  # NonBodyParameter.query_parameter_sub_schema
    return _field(1, _field(2, non_body))  # ParametersItem.parameter -> Parameter.non_body_parameter


@functools.cache
def v2_protobuf() -> bytes:
    """The OpenAPI v2 document (protobuf): every served path's PATCH operation with its kind and query parameters."""
    paths = b""
    for rt in RESOURCES:
        scope = "/namespaces/{namespace}" if rt.namespaced else ""
        path = f"/{_gv_path(rt.group, rt.version)}{scope}/{rt.plural}/{{name}}"
        gvk = f"group: {json.dumps(rt.group)}\nkind: {rt.kind}\nversion: {rt.version}\n"
        operation = (
            _field(5, f"patch{'Namespaced' if rt.namespaced else ''}{rt.kind}")
            + b"".join(_field(8, _query_param(p)) for p in ("dryRun", "fieldManager", "fieldValidation", "force"))
            + _field(13, _named_any("x-kubernetes-action", "patch\n"))
            + _field(13, _named_any("x-kubernetes-group-version-kind", gvk))
        )
        path_item = _field(8, operation)  # PathItem.patch
        paths += _field(2, _field(1, path) + _field(2, path_item))  # Paths.path: NamedPathItem{name, value}
    info = _field(1, "Kubernetes") + _field(2, f"v{KUBE_VERSION}.0")
    return _field(1, "2.0") + _field(2, info) + _field(8, paths)
