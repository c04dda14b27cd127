"""The three PATCH formats of the Kubernetes API: JSON patch, JSON merge patch, strategic merge patch."""

from __future__ import annotations

import copy
from typing import Any

from testkit.kube.objectstore import ApiError

# Strategic merge patches merge a list item by item only where the Go type declares a patchMergeKey; every
# other list is replaced whole, as a merge patch would. So the key depends on the kind and the path, not on the
# field name: PodSpec.imagePullSecrets merges by `name`, ServiceAccount.imagePullSecrets (no merge key) is
# replaced. Each type maps a field to (merge key or None, the type of its value or list items, or None).
_Field = tuple[str | None, str | None]
_META: _Field = (None, "ObjectMeta")
_WORKLOAD: dict[str, _Field] = {"metadata": _META, "spec": (None, "WorkloadSpec"), "status": (None, "Conditions")}
SCHEMA: dict[str, dict[str, _Field]] = {
    "ObjectMeta": {"ownerReferences": ("uid", None)},
    "PodSpec": {
        "containers": ("name", "Container"),
        "initContainers": ("name", "Container"),
        "ephemeralContainers": ("name", "Container"),
        "volumes": ("name", None),
        "imagePullSecrets": ("name", None),
        "hostAliases": ("ip", None),
    },
    "Container": {
        "env": ("name", None),
        "volumeMounts": ("mountPath", None),
        "volumeDevices": ("devicePath", None),
        "ports": ("containerPort", None),
    },
    "PodTemplateSpec": {"metadata": _META, "spec": (None, "PodSpec")},
    "WorkloadSpec": {"template": (None, "PodTemplateSpec")},
    "JobTemplateSpec": {"metadata": _META, "spec": (None, "WorkloadSpec")},
    "CronJobSpec": {"jobTemplate": (None, "JobTemplateSpec")},
    "Conditions": {"conditions": ("type", None)},
    "NodeStatus": {"conditions": ("type", None), "addresses": ("type", None)},
    "Pod": {"metadata": _META, "spec": (None, "PodSpec"), "status": (None, "Conditions")},
    "PodTemplate": {"metadata": _META, "template": (None, "PodTemplateSpec")},
    "ServiceAccount": {"metadata": _META, "secrets": ("name", None)},  # imagePullSecrets: no key, replaced
    "Deployment": _WORKLOAD,
    "ReplicaSet": _WORKLOAD,
    "StatefulSet": _WORKLOAD,
    "DaemonSet": _WORKLOAD,
    "ReplicationController": _WORKLOAD,
    "Job": _WORKLOAD,
    "CronJob": {"metadata": _META, "spec": (None, "CronJobSpec")},
    "Node": {"metadata": _META, "status": (None, "NodeStatus")},
}
_NO_FIELDS: dict[str, _Field] = {}
_OTHER_KIND: dict[str, _Field] = {"metadata": _META}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any, kind: str = "") -> Any:
    """Strategic merge patch of an object of `kind`: a merge patch where lists with a merge key merge by it.

    Supports `$patch: delete` on list items and `$patch: replace` on maps, which is what clients send in practice.
    """
    return _strategic(target, patch, SCHEMA.get(kind, _OTHER_KIND))


def _strategic(target: Any, patch: Any, fields: dict[str, _Field]) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result = dict(target) if isinstance(target, dict) else {}
    for k, value in patch.items():
        if k.startswith("$"):
            continue
        key, child = fields.get(k, (None, None))
        child_fields = SCHEMA.get(child, _NO_FIELDS) if child else _NO_FIELDS
        if value is None:
            result.pop(k, None)
        elif isinstance(value, list):
            result[k] = _strategic_list(result.get(k), value, key, child_fields)
        else:
            result[k] = _strategic(result.get(k), value, child_fields)
    return result


def _strategic_list(target: Any, patch: list[Any], key: str | None, fields: dict[str, _Field]) -> list[Any]:
    if key is None or not isinstance(target, list):
        return copy.deepcopy([p for p in patch if not (isinstance(p, dict) and p.get("$patch"))])
    merged: list[Any] = [copy.deepcopy(t) for t in target]
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            continue
        idx = next((i for i, t in enumerate(merged) if isinstance(t, dict) and t.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                merged.pop(idx)
            continue
        if idx is None:
            merged.append(_strategic({}, item, fields))
        else:
            merged[idx] = _strategic(merged[idx], item, fields)
    return merged


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(422, "Invalid", f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str]) -> Any:
    cur = doc
    for part in parts:
        if isinstance(cur, list):
            cur = cur[int(part)]
        elif isinstance(cur, dict):
            cur = cur[part]
        else:
            raise KeyError(part)
    return cur


def json_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, test, move, copy)."""
    doc = copy.deepcopy(doc)
    for op in ops:
        name = op.get("op")
        parts = _pointer(str(op.get("path", "")))
        try:
            if name == "test":
                if _walk(doc, parts) != op.get("value"):
                    raise ApiError(
                        422,
                        "Invalid",
                        f"the server rejected our request due to an error in our request: test failed at {op['path']}",
                    )
                continue
            if name in ("move", "copy"):
                value = copy.deepcopy(_walk(doc, _pointer(str(op["from"]))))
                if name == "move":
                    doc = json_patch(doc, [{"op": "remove", "path": op["from"]}])
                doc = json_patch(doc, [{"op": "add", "path": op["path"], "value": value}])
                continue
            if not parts:
                if name in ("add", "replace"):
                    doc = copy.deepcopy(op.get("value"))
                    continue
                raise ApiError(422, "Invalid", "cannot remove the whole document")
            parent = _walk(doc, parts[:-1])
            last = parts[-1]
            if name == "add":
                if isinstance(parent, list):
                    idx = len(parent) if last == "-" else int(last)
                    parent.insert(idx, copy.deepcopy(op.get("value")))
                else:
                    parent[last] = copy.deepcopy(op.get("value"))
            elif name == "replace":
                _walk(doc, parts)  # must exist
                parent[int(last) if isinstance(parent, list) else last] = copy.deepcopy(op.get("value"))
            elif name == "remove":
                if isinstance(parent, list):
                    parent.pop(int(last))
                else:
                    del parent[last]
            else:
                raise ApiError(422, "Invalid", f"unknown JSON patch operation {name!r}")
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise ApiError(
                422,
                "Invalid",
                f"the server rejected our request due to an error in our request: {name} {op.get('path')}: {exc}",
            ) from exc
    return doc


def apply_patch(content_type: str, target: dict[str, Any], patch: Any) -> dict[str, Any]:
    """Apply a PATCH body according to its content type; 415 for server-side apply (not simulated)."""
    ctype = content_type.split(";")[0].strip().lower()
    if ctype == "application/json-patch+json":
        if not isinstance(patch, list):
            raise ApiError(400, "BadRequest", "json patch must be a list of operations")
        result = json_patch(target, patch)
    elif ctype == "application/merge-patch+json":
        result = merge_patch(target, patch)
    elif ctype == "application/strategic-merge-patch+json":
        result = strategic_merge_patch(target, patch, str(target.get("kind") or ""))
    else:
        raise ApiError(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: "
            "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json",
        )
    if not isinstance(result, dict):
        raise ApiError(422, "Invalid", "patch result is not an object")
    return result
