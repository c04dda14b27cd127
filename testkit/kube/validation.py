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

import base64
import binascii
import json
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


# ---- semantic validation of Secrets (kube-apiserver pkg/apis/core/validation/validation.go) ----
#
# ValidateSecret: a `kubernetes.io/dockercfg` Secret needs data[.dockercfg], a `kubernetes.io/dockerconfigjson` one
# data[.dockerconfigjson], each well-formed JSON (field.Required / field.Invalid with the contents redacted);
# ValidateSecretUpdate: `type` is immutable, and once `immutable: true` is set neither `data` nor `immutable` may
# change (field.Forbidden "field is immutable when `immutable` is set"). Both answer 422 Invalid with the causes.

_DOCKER_KEYS = {"kubernetes.io/dockercfg": ".dockercfg", "kubernetes.io/dockerconfigjson": ".dockerconfigjson"}


def _invalid(rt: ResourceType, name: str, causes: list[tuple[str, str, str]]) -> ApiError:
    """422 Invalid as apierrors.NewInvalid words it; causes are (reason, field, message)."""
    text = "; ".join(f"{f}: {m}" for _r, f, m in causes)
    body = text if len(causes) == 1 else f"[{text}]"
    return ApiError(
        422,
        "Invalid",
        f'{rt.kind} "{name}" is invalid: {body}',
        {
            "name": name,
            "kind": rt.kind,
            "causes": [{"reason": r, "message": m, "field": f} for r, f, m in causes],
        },
    )


def _decoded(value: Any) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def validate_secret(rt: ResourceType, new: Obj, old: Obj | None) -> None:
    """Raise the 422 kube-apiserver answers for an invalid Secret create (old None) or update."""
    name = str((new.get("metadata") or {}).get("name") or "")
    data = new.get("data") or {}
    type_ = new.get("type") or "Opaque"
    causes: list[tuple[str, str, str]] = []
    key = _DOCKER_KEYS.get(type_)
    if key is not None:
        if key not in data:
            causes.append(("FieldValueRequired", f"data[{key}]", "Required value"))
        else:
            raw = _decoded(data[key])
            try:
                ok = raw is not None and isinstance(json.loads(raw), dict)
            except ValueError:
                ok = False
            if not ok:
                causes.append(
                    (
                        "FieldValueInvalid",
                        f"data[{key}]",
                        'Invalid value: "<secret contents redacted>": not a JSON object',
                    )
                )
    if old is not None:
        if (old.get("type") or "Opaque") != type_:
            causes.append(("FieldValueInvalid", "type", f'Invalid value: "{type_}": field is immutable'))
        if old.get("immutable"):
            if not new.get("immutable"):
                causes.append(
                    ("FieldValueForbidden", "immutable", "Forbidden: field is immutable when `immutable` is set")
                )
            if (old.get("data") or {}) != data:
                causes.append(("FieldValueForbidden", "data", "Forbidden: field is immutable when `immutable` is set"))
    if causes:
        raise _invalid(rt, name, causes)


# ---- schema validation (types and required fields) ----
#
# kube-apiserver decodes a body into the Go type first: a value of the wrong JSON type is a 400 BadRequest
# (`… cannot be handled as a Pod: json: cannot unmarshal string into Go struct field … of type int32`); then the
# kind's validation answers 422 Invalid for a missing required field (`Pod "x" is invalid: spec.containers[0].name:
# Required value`). The simulator checks a written object against the OpenAPI schema of the version /version claims,
# as kubernetes-validate ships it, and answers the same two ways.


def _dotted(path: list[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validate_schema(rt: ResourceType, obj: Obj) -> None:
    """Raise 400 (wrong type) or 422 (missing required field, other schema violation) for an invalid object."""
    import kubernetes_validate  # type: ignore[import-untyped]

    candidate = {**obj, "kind": rt.kind, "apiVersion": rt.api_version}
    try:
        kubernetes_validate.validate(candidate, openapi.KUBE_VERSION, strict=False)
    except kubernetes_validate.SchemaNotFoundError:
        return
    except kubernetes_validate.ValidationError as exc:
        path = list(exc.path)
        name = str((obj.get("metadata") or {}).get("name") or "")
        if exc.validator == "type":
            wanted = exc.validator_value if isinstance(exc.validator_value, str) else "/".join(exc.validator_value)
            got = (
                type(exc.instance).__name__.replace("str", "string").replace("dict", "object").replace("list", "array")
            )
            raise ApiError(
                400,
                "BadRequest",
                f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: json: cannot unmarshal {got}'
                f" into Go struct field {rt.kind}.{'.'.join(str(p) for p in path if not isinstance(p, int))} of type"
                f" {wanted.split('/')[0]}",
            ) from None
        if exc.validator == "required":
            missing = str(exc.message).split("'")[1] if "'" in str(exc.message) else "?"
            field = _dotted([*path, missing])
            raise _invalid(rt, name, [("FieldValueRequired", field, "Required value")]) from None
        raise _invalid(rt, name, [("FieldValueInvalid", _dotted(path), f"Invalid value: {exc.message}")]) from None


def validate_write(rt: ResourceType, new: Obj, old: Obj | None) -> None:
    """Validation of a create (old None) or update before it is stored: the schema, then kind-specific rules."""
    validate_schema(rt, new)
    if rt.plural == "secrets":
        validate_secret(rt, new, old)
