"""Pod templates of the cluster's workloads as plain specs (pure: reads API objects as dicts)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Where each kind keeps its pod template.
_TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


@dataclass(frozen=True, slots=True)
class Requirement:
    """One node-selector requirement: `key` `operator` `values` (In, NotIn, Exists, DoesNotExist, Gt, Lt)."""

    key: str
    operator: str
    values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Toleration:
    key: str = ""  # empty with operator Exists tolerates every taint
    operator: str = "Equal"
    value: str = ""
    effect: str = ""  # empty tolerates every effect


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """What a new pod of this workload will be: its images, pull secrets, ServiceAccount and placement rules."""

    kind: str
    namespace: str
    name: str
    containers: tuple[tuple[str, str], ...]  # (container name, image), init containers included
    pull_secrets: tuple[str, ...]  # the template's own imagePullSecrets
    service_account: str
    node_selector: tuple[tuple[str, str], ...] = ()
    # Required node affinity: a node must match ANY term; a term matches when ALL its requirements do.
    affinity_terms: tuple[tuple[Requirement, ...], ...] = ()
    tolerations: tuple[Toleration, ...] = ()
    running_digests: Mapping[str, frozenset[str]] = field(default_factory=dict)  # container -> pulled digests

    @property
    def ref(self) -> str:
        return f"{self.kind.lower()}/{self.name}"


def _get(obj: Mapping[str, Any], path: Iterable[str]) -> Any:
    cur: Any = obj
    for key in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def _strs(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _requirements(exprs: Any) -> tuple[Requirement, ...]:
    out: list[Requirement] = []
    for e in exprs if isinstance(exprs, list) else []:
        if isinstance(e, Mapping) and e.get("key") and e.get("operator"):
            out.append(Requirement(str(e["key"]), str(e["operator"]), _strs(e.get("values"))))
    return tuple(out)


def _affinity(pod_spec: Mapping[str, Any]) -> tuple[tuple[Requirement, ...], ...]:
    terms = _get(
        pod_spec, ("affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms")
    )
    out = []
    for term in terms if isinstance(terms, list) else []:
        if isinstance(term, Mapping):
            reqs = _requirements(term.get("matchExpressions"))
            # matchFields supports only metadata.name: a pod pinned to named nodes
            fields = [
                Requirement("metadata.name", str(f.get("operator")), _strs(f.get("values")))
                for f in term.get("matchFields") or []
                if isinstance(f, Mapping) and f.get("key") == "metadata.name"
            ]
            out.append((*reqs, *fields))
    return tuple(out)


def _tolerations(pod_spec: Mapping[str, Any]) -> tuple[Toleration, ...]:
    out = []
    for t in pod_spec.get("tolerations") or []:
        if isinstance(t, Mapping):
            out.append(
                Toleration(
                    key=str(t.get("key") or ""),
                    operator=str(t.get("operator") or "Equal"),
                    value=str(t.get("value") or ""),
                    effect=str(t.get("effect") or ""),
                )
            )
    return tuple(out)


def spec_of(obj: Mapping[str, Any], running_pods: Iterable[Mapping[str, Any]] = ()) -> WorkloadSpec | None:
    """The spec of a workload object (or a bare pod); None when it has no pod template. `running_pods` are its
    pods, whose `status.containerStatuses[].imageID` tell which digests the running containers pulled."""
    kind = str(obj.get("kind") or "")
    meta = obj.get("metadata") or {}
    if kind == "Pod":
        pod_spec = obj.get("spec")
    else:
        path = _TEMPLATE_PATHS.get(kind)
        pod_spec = _get(obj, (*path, "spec")) if path else None
    if not isinstance(pod_spec, Mapping) or not isinstance(meta, Mapping):
        return None
    containers: list[tuple[str, str]] = []
    for group in ("initContainers", "containers"):
        for c in pod_spec.get(group) or []:
            if isinstance(c, Mapping) and c.get("name") and c.get("image"):
                containers.append((str(c["name"]), str(c["image"])))
    secrets = tuple(
        str(s["name"]) for s in pod_spec.get("imagePullSecrets") or [] if isinstance(s, Mapping) and s.get("name")
    )
    selector = pod_spec.get("nodeSelector") or {}
    digests: dict[str, set[str]] = {}
    for pod in running_pods:
        for cs in _get(pod, ("status", "containerStatuses")) or []:
            if isinstance(cs, Mapping) and cs.get("name") and "@sha256:" in str(cs.get("imageID") or ""):
                digests.setdefault(str(cs["name"]), set()).add("sha256:" + str(cs["imageID"]).rsplit("@sha256:", 1)[1])
    return WorkloadSpec(
        kind=kind,
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name") or ""),
        containers=tuple(containers),
        pull_secrets=secrets,
        service_account=str(pod_spec.get("serviceAccountName") or pod_spec.get("serviceAccount") or "default"),
        node_selector=tuple(sorted((str(k), str(v)) for k, v in selector.items()))
        if isinstance(selector, Mapping)
        else (),
        affinity_terms=_affinity(pod_spec),
        tolerations=_tolerations(pod_spec),
        running_digests={k: frozenset(v) for k, v in digests.items()},
    )
