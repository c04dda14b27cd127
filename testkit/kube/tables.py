"""Server-side printing: `meta.k8s.io/v1` Tables, which kubectl asks for (`Accept: application/json;as=Table;…`).

`kubectl get` prints the columns the server computes; a server that answers a plain list gets a NAME/AGE fallback.
Pods are printed as kube-apiserver's `printPod` (pkg/printers/internalversion/printers.go) does: READY is
ready/total containers, STATUS the phase overridden by the pod's reason, by an init container's or container's waiting
or terminated reason, and `Terminating` once `metadata.deletionTimestamp` is set (`Unknown` for `NodeLost`);
RESTARTS the sum of restart counts; AGE `duration.HumanDuration` of creationTimestamp. Other kinds get the default
table convertor's Name and Created At columns (apiserver `registry/rest/table.go`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]

_NAME = {"name": "Name", "type": "string", "format": "name", "priority": 0, "description": "Name must be unique."}


def wants_table(accept: str) -> bool:
    """Whether an Accept header asks for a meta.k8s.io Table first (kubectl get does, with JSON as fallback)."""
    first = accept.split(",")[0].replace(" ", "")
    return "as=Table" in first and "g=meta.k8s.io" in first


def human_duration(seconds: float) -> str:
    """apimachinery's `duration.HumanDuration`: 45s, 3m20s, 5h, 3d4h, 2y45d (approximately)."""
    s = int(max(seconds, 0))
    if s < 60 * 2:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 60 * 3:
        return f"{m}m"
    h = m // 60
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    if h < 24 * 8:
        return f"{h // 24}d{h % 24}h" if h % 24 else f"{h // 24}d"
    if h < 24 * 365 * 2:
        return f"{h // 24}d"
    if h < 24 * 365 * 8:
        return f"{h // 24 // 365}y{(h // 24) % 365}d"
    return f"{h // 24 // 365}y"


def _age(meta: Obj, now: datetime) -> str:
    created = meta.get("creationTimestamp")
    if not created:
        return "<unknown>"
    when = datetime.strptime(str(created)[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return human_duration((now - when).total_seconds())


def _pod_status(pod: Obj) -> str:
    status = pod.get("status") or {}
    reason = str(status.get("reason") or status.get("phase") or "")
    initializing = False
    inits = status.get("initContainerStatuses") or []
    for i, c in enumerate(inits):
        state = c.get("state") or {}
        term = state.get("terminated")
        waiting = state.get("waiting")
        if term and term.get("exitCode") == 0:
            continue
        initializing = True
        if term:
            reason = "Init:" + (term.get("reason") or f"ExitCode:{term.get('exitCode')}")
        elif waiting and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len((pod.get('spec') or {}).get('initContainers') or [])}"
        break
    if not initializing:
        has_running = False
        for c in reversed(status.get("containerStatuses") or []):
            state = c.get("state") or {}
            if (state.get("waiting") or {}).get("reason"):
                reason = state["waiting"]["reason"]
            elif (state.get("terminated") or {}).get("reason"):
                reason = state["terminated"]["reason"]
            elif state.get("terminated"):
                reason = f"ExitCode:{state['terminated'].get('exitCode')}"
            elif "running" in state and c.get("ready"):
                has_running = True
        if reason == "Completed" and has_running:
            reason = "Running"
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    return reason


def _pod_cells(pod: Obj, now: datetime) -> list[Any]:
    status = pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    total = len((pod.get("spec") or {}).get("containers") or [])
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
    spec = pod.get("spec") or {}
    return [
        pod["metadata"]["name"],
        f"{ready}/{total}",
        _pod_status(pod),
        restarts,
        _age(pod["metadata"], now),
        status.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        "<none>",
    ]


_POD_COLUMNS = [
    _NAME,
    {"name": "Ready", "type": "string", "format": "", "priority": 0, "description": "ready/total containers"},
    {"name": "Status", "type": "string", "format": "", "priority": 0, "description": "the aggregate status"},
    {"name": "Restarts", "type": "string", "format": "", "priority": 0, "description": "container restarts"},
    {"name": "Age", "type": "string", "format": "", "priority": 0, "description": "since creation"},
    {"name": "IP", "type": "string", "format": "", "priority": 1, "description": "the pod's IP"},
    {"name": "Node", "type": "string", "format": "", "priority": 1, "description": "the node"},
    {"name": "Nominated Node", "type": "string", "format": "", "priority": 1, "description": "nominated node"},
    {"name": "Readiness Gates", "type": "string", "format": "", "priority": 1, "description": "readiness gates"},
]
_DEFAULT_COLUMNS = [
    _NAME,
    {"name": "Created At", "type": "date", "format": "", "priority": 0, "description": "creationTimestamp"},
]


def table(kind: str, objects: list[Obj], list_meta: Obj) -> Obj:
    """A Table of `objects` (each row carries the object's metadata as PartialObjectMetadata, the default)."""
    now = datetime.now(UTC)
    rows = []
    for obj in objects:
        cells = (
            _pod_cells(obj, now)
            if kind == "Pod"
            else [obj["metadata"]["name"], obj["metadata"].get("creationTimestamp")]
        )
        partial = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}
        rows.append({"cells": cells, "object": partial})
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": _POD_COLUMNS if kind == "Pod" else _DEFAULT_COLUMNS,
        "rows": rows,
    }
