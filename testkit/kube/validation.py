"""Field validation of written objects against the Kubernetes schemas (the `fieldValidation` query parameter).

kube-apiserver decodes a create, update or patch body into the Go type; fields the type does not have are, by the
request's `fieldValidation` (KEP-2885, GA in 1.27; apiserver `endpoints/handlers/create.go`, `patch.go`,
`rest.go` `fieldValidation()`):
- `Strict`: a 400 BadRequest `<Kind> in version "<v>" cannot be handled as a <Kind>: strict decoding error: unknown
  field "spec.foo"` (kubectl ≥ 1.25 sends Strict by default once the OpenAPI document says the server supports it);
- `Warn` (the default when the parameter is absent): the field is dropped and the answer carries a
  `Warning: 299 - "unknown field \"spec.foo\""` header;
- `Ignore`: the field is dropped silently.

Unknown fields are found by walking the object along the definitions kubernetes-validate ships for the version the
simulator claims (`openapi.KUBE_VERSION`): `properties`, `additionalProperties` (maps), `items` (lists), references;
a schema without properties (Quantity, IntOrString, Time, RawExtension) or with
`x-kubernetes-preserve-unknown-fields` accepts anything below it.
"""

from __future__ import annotations

from typing import Any

from testkit.kube import openapi
from testkit.kube.objectstore import ApiError, ResourceType

Obj = dict[str, Any]


def _resolve(schema: Obj, defs: dict[str, Obj]) -> Obj:
    seen = 0
    while isinstance(schema.get("$ref"), str) and seen < 50:
        schema = defs[schema["$ref"].removeprefix("#/$defs/")]
        seen += 1
    return schema


def _walk(value: Any, schema: Obj, path: str, defs: dict[str, Obj], unknown: list[str], prune: bool) -> None:
    schema = _resolve(schema, defs)
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, dict):
        props: Obj | None = schema.get("properties")
        extra = schema.get("additionalProperties")
        if props is None and not isinstance(extra, dict):
            return
        for key in list(value):
            child = f"{path}.{key}" if path else key
            if props is not None and key in props:
                _walk(value[key], props[key], child, defs, unknown, prune)
            elif isinstance(extra, dict):
                _walk(value[key], extra, child, defs, unknown, prune)
            else:
                unknown.append(child)
                if prune:
                    del value[key]
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _walk(item, schema["items"], f"{path}[{i}]", defs, unknown, prune)


def unknown_fields(rt: ResourceType, obj: Obj, prune: bool = False) -> list[str]:
    """The dotted paths of fields the kind's schema does not declare (removed from `obj` when `prune`)."""
    defs = openapi.definitions()
    try:
        schema = defs[openapi.definition_name(rt)]
    except KeyError:
        return []
    unknown: list[str] = []
    _walk(obj, schema, "", defs, unknown, prune)
    return unknown


def check_fields(rt: ResourceType, obj: Obj, directive: str | None) -> list[str]:
    """Apply a `fieldValidation` directive to a body about to be stored; returns the Warning texts to send.

    Strict raises the 400 kube-apiserver answers; Warn (the default) and Ignore drop the unknown fields.
    """
    mode = (directive or "Warn").lower()
    if mode not in ("strict", "warn", "ignore"):
        raise ApiError(
            400,
            "BadRequest",
            f'fieldValidation: Unsupported value: "{directive}": supported values: "Ignore", "Strict", "Warn"',
        )
    unknown = unknown_fields(rt, obj, prune=mode != "strict")
    if not unknown:
        return []
    if mode == "strict":
        listed = ", ".join(f'unknown field "{u}"' for u in unknown)
        raise ApiError(
            400,
            "BadRequest",
            f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: strict decoding error: {listed}',
        )
    return [] if mode == "ignore" else [f'unknown field "{u}"' for u in unknown]
