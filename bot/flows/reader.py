"""Reading pods as the watcher sees them: their pull failures, with the freshest error text and their workload."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.exceptions import ApiException

from bot.kube.inspect import Inspector
from bot.kube.owners import owner_refs
from bot.kube.podstate import (
    carried_error,
    field_path_container,
    is_generic_backoff,
    is_pull_error_event,
    pull_waits,
    strip_combined,
)
from bot.model import PullFailure, WorkloadRef


class PodReader:
    """Reads pods as the watcher sees them: their pull failures, with the freshest error text and their workload."""

    def __init__(
        self, api: Any, inspector: Inspector, cluster: str, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.api = api
        self.inspector = inspector
        self.cluster = cluster
        self._clock = clock
        self._core: Any = k8s.CoreV1Api(api)
        self._apps: Any = k8s.AppsV1Api(api)

    def _now(self) -> datetime:
        return self._clock()

    async def pod_dict(self, namespace: str, pod: str) -> tuple[Any, dict[str, Any]] | None:
        try:
            obj = await self._core.read_namespaced_pod(pod, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return obj, self.api.sanitize_for_serialization(obj)

    async def _workload(self, namespace: str, pod_obj: Any, pod_name: str) -> WorkloadRef:
        chain = await self.inspector.owners.resolve(namespace, owner_refs(pod_obj.metadata))
        return chain[-1] if chain else WorkloadRef("Pod", pod_name)

    async def _freshest_message(self, namespace: str, pod: str, container: str, waiting: str) -> tuple[str, str | None]:
        """The runtime's error: the waiting message (the error a kubelet >= 1.32 back-off carries), or the latest
        Failed event when the message says only "Back-off pulling image"."""
        carried = carried_error(waiting)
        if carried is not None:
            return carried[1], None
        if not is_generic_backoff(waiting):
            return waiting, None
        try:
            events = await self._core.list_namespaced_event(
                namespace, field_selector=f"involvedObject.name={pod}", limit=200
            )
        except ApiException:
            return waiting, None
        best: tuple[str, str] | None = None
        for ev in events.items or ():
            where = field_path_container(getattr(ev.involved_object, "field_path", None))
            if where is not None and where[1] != container:
                continue
            if is_pull_error_event(ev.reason, ev.message):
                stamp = str(ev.last_timestamp or ev.event_time or ev.metadata.creation_timestamp or "")
                if best is None or stamp >= best[0]:
                    best = (stamp, strip_combined(str(ev.message)))
        return (best[1], "Failed") if best else (waiting, None)

    async def failures_of_pod(self, namespace: str, pod: str) -> list[PullFailure]:
        """The pull failures of one pod as the watcher would report them (empty when none or no such pod)."""
        found = await self.pod_dict(namespace, pod)
        if found is None:
            return []
        obj, data = found
        waits = pull_waits(data)
        if not waits:
            return []
        workload = await self._workload(namespace, obj, pod)
        out = []
        for c in waits:
            message, event_reason = await self._freshest_message(namespace, pod, c.name, c.waiting_message)
            out.append(
                PullFailure(
                    cluster=self.cluster,
                    namespace=namespace,
                    pod=pod,
                    pod_uid=str(data.get("metadata", {}).get("uid", "")),
                    container=c.name,
                    container_kind=c.kind,
                    image=c.image,
                    waiting_reason=c.waiting_reason or "",
                    message=message,
                    workload=workload,
                    node=(data.get("spec") or {}).get("nodeName"),
                    event_reason=event_reason,
                    observed_at=self._now(),
                )
            )
        return out

    async def deployment_pods(self, namespace: str, name: str) -> list[str] | None:
        try:
            deploy = await self._apps.read_namespaced_deployment(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        labels = (deploy.spec.selector.match_labels or {}) if deploy.spec and deploy.spec.selector else {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        pods = await self._core.list_namespaced_pod(namespace, label_selector=selector or None)
        return [p.metadata.name for p in pods.items or ()]
