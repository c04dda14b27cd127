"""Which nodes a new pod of a workload may be scheduled on, and so which platforms its images must offer (pure).

Follows the scheduler's filters that decide placement by labels and taints: `nodeSelector` (every label equal),
required node affinity (any term; within a term every requirement: In, NotIn, Exists, DoesNotExist, Gt, Lt; and
`matchFields` on `metadata.name`), taints with effect NoSchedule or NoExecute that the pod does not tolerate, and
cordoned nodes (`spec.unschedulable`). Resources, pod affinity and topology spread are left out: they decide which of
the fitting nodes, not whether a platform is possible.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.prevention.workloads import Requirement, Toleration, WorkloadSpec


@dataclass(frozen=True, slots=True)
class NodeFacts:
    name: str
    labels: Mapping[str, str]
    taints: tuple[tuple[str, str, str], ...] = ()  # (key, value, effect)
    unschedulable: bool = False

    @property
    def platform(self) -> str | None:
        os_, arch = self.labels.get("kubernetes.io/os"), self.labels.get("kubernetes.io/arch")
        return f"{os_}/{arch}" if os_ and arch else None


def node_facts(node: Mapping[str, Any]) -> NodeFacts:
    """A Node object as the facts placement reads (labels fall back to status.nodeInfo for os/arch)."""
    meta = node.get("metadata") or {}
    spec = node.get("spec") or {}
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    info = (node.get("status") or {}).get("nodeInfo") or {}
    if info.get("operatingSystem"):
        labels.setdefault("kubernetes.io/os", str(info["operatingSystem"]))
    if info.get("architecture"):
        labels.setdefault("kubernetes.io/arch", str(info["architecture"]))
    taints = tuple(
        (str(t.get("key") or ""), str(t.get("value") or ""), str(t.get("effect") or ""))
        for t in spec.get("taints") or []
        if isinstance(t, Mapping)
    )
    return NodeFacts(str(meta.get("name") or ""), labels, taints, bool(spec.get("unschedulable")))


def _matches(req: Requirement, node: NodeFacts) -> bool:
    value = node.name if req.key == "metadata.name" else node.labels.get(req.key)
    match req.operator:
        case "In":
            return value is not None and value in req.values
        case "NotIn":
            return value is None or value not in req.values
        case "Exists":
            return value is not None
        case "DoesNotExist":
            return value is None
        case "Gt" | "Lt":
            try:
                have, bound = int(value or ""), int(req.values[0])
            except (ValueError, IndexError):
                return False
            return have > bound if req.operator == "Gt" else have < bound
    return False


def _tolerates(tolerations: Iterable[Toleration], taint: tuple[str, str, str]) -> bool:
    key, value, effect = taint
    for t in tolerations:
        if t.effect and t.effect != effect:
            continue
        if t.operator == "Exists" and (not t.key or t.key == key):
            return True
        if t.operator == "Equal" and t.key == key and t.value == value:
            return True
    return False


def fits(spec: WorkloadSpec, node: NodeFacts) -> bool:
    """Whether a new pod of `spec` may be scheduled on `node` as far as labels, taints and cordons tell."""
    if node.unschedulable:
        return False
    if any(node.labels.get(k) != v for k, v in spec.node_selector):
        return False
    if spec.affinity_terms and not any(all(_matches(r, node) for r in term) for term in spec.affinity_terms):
        return False
    return all(_tolerates(spec.tolerations, taint) for taint in node.taints if taint[2] in ("NoSchedule", "NoExecute"))


def platforms_for(spec: WorkloadSpec, nodes: Iterable[NodeFacts]) -> frozenset[str]:
    """The platforms ("linux/arm64", ...) of the nodes that exist now and that a new pod of `spec` may land on."""
    return frozenset(p for n in nodes if fits(spec, n) and (p := n.platform) is not None)
