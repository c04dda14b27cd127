"""The owner chain of a pod: follow controller ownerReferences up to the workload (Deployment, CronJob, ...).

Pod -> ReplicaSet -> Deployment, Pod -> Job -> CronJob, Pod -> StatefulSet / DaemonSet / ReplicationController.
Owners of kinds this module cannot read (custom resources) end the chain; so does an owner that is gone or
that RBAC hides. Parents are cached for a short time: owners rarely change, and a storm of failing pods of one
Deployment should read its ReplicaSet once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.exceptions import ApiException

from bot.model import WorkloadRef

log = logging.getLogger(__name__)

Reader = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class OwnerRef:
    """One ownerReference, reduced to what following it needs."""

    api_version: str
    kind: str
    name: str
    uid: str = ""
    controller: bool = False

    @property
    def group(self) -> str:
        """The API group of the owner ("" for core, "apps", "batch", ...)."""
        return self.api_version.rpartition("/")[0] if "/" in self.api_version else ""

    def workload(self) -> WorkloadRef:
        """This owner as a WorkloadRef."""
        return WorkloadRef(kind=self.kind, name=self.name)


def owner_refs(metadata: Any) -> list[OwnerRef]:
    """The ownerReferences of an object's metadata (a kubernetes_asyncio model or a dict), in order."""
    if metadata is None:
        return []
    raw = metadata.get("ownerReferences") if isinstance(metadata, dict) else getattr(metadata, "owner_references", None)
    out: list[OwnerRef] = []
    for ref in raw or ():
        if isinstance(ref, dict):
            api_version, kind, name = ref.get("apiVersion"), ref.get("kind"), ref.get("name")
            uid, controller = ref.get("uid"), ref.get("controller")
        else:
            api_version, kind, name = ref.api_version, ref.kind, ref.name
            uid, controller = ref.uid, ref.controller
        if kind and name:
            out.append(OwnerRef(str(api_version or ""), str(kind), str(name), str(uid or ""), controller is True))
    return out


def controller_of(refs: Iterable[OwnerRef]) -> OwnerRef | None:
    """The managing controller among the references (controller: true), if any."""
    return next((r for r in refs if r.controller), None)


def parent_of(refs: Iterable[OwnerRef]) -> OwnerRef | None:
    """The owner to follow: the controller, else the first owner."""
    items = list(refs)
    return controller_of(items) or (items[0] if items else None)


class OwnerChain:
    """Resolves owner chains through the API, with a small TTL cache of each owner's own parent."""

    def __init__(
        self,
        api_client: Any,
        *,
        ttl_s: float = 60.0,
        timeout_s: float = 3.0,
        max_depth: int = 4,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        apps, batch, core = k8s.AppsV1Api(api_client), k8s.BatchV1Api(api_client), k8s.CoreV1Api(api_client)
        self._readers: dict[tuple[str, str], Reader] = {
            ("apps", "ReplicaSet"): apps.read_namespaced_replica_set,
            ("apps", "Deployment"): apps.read_namespaced_deployment,
            ("apps", "StatefulSet"): apps.read_namespaced_stateful_set,
            ("apps", "DaemonSet"): apps.read_namespaced_daemon_set,
            ("batch", "Job"): batch.read_namespaced_job,
            ("batch", "CronJob"): batch.read_namespaced_cron_job,
            ("", "ReplicationController"): core.read_namespaced_replication_controller,
        }
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._max_depth = max_depth
        self._max_entries = max_entries
        self._clock = clock
        self._cache: OrderedDict[tuple[str, str, str, str], tuple[float, OwnerRef | None]] = OrderedDict()
        self.reads = 0  # API reads made (for tests and metrics)

    async def resolve(self, namespace: str, refs: Iterable[OwnerRef]) -> tuple[WorkloadRef, ...]:
        """The chain from the direct owner in `refs` to the top; empty for a bare object."""
        chain: list[WorkloadRef] = []
        current = parent_of(refs)
        seen: set[tuple[str, str]] = set()
        while current is not None and len(chain) <= self._max_depth:
            if (current.kind, current.name) in seen:
                break
            seen.add((current.kind, current.name))
            chain.append(current.workload())
            current = await self._parent(namespace, current)
        return tuple(chain)

    async def _parent(self, namespace: str, owner: OwnerRef) -> OwnerRef | None:
        reader = self._readers.get((owner.group, owner.kind))
        if reader is None:
            return None
        key = (namespace, owner.kind, owner.name, owner.uid)
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            self._cache.move_to_end(key)
            return hit[1]
        try:
            self.reads += 1
            async with asyncio.timeout(self._timeout_s):
                obj = await reader(owner.name, namespace, _request_timeout=self._timeout_s)
        except ApiException as exc:
            log.info("owner %s/%s in %s unreadable: HTTP %s", owner.kind, owner.name, namespace, exc.status)
            return None
        except (TimeoutError, OSError, ValueError) as exc:
            log.warning("owner %s/%s in %s unreadable: %s", owner.kind, owner.name, namespace, type(exc).__name__)
            return None
        metadata = getattr(obj, "metadata", None)
        if owner.uid and getattr(metadata, "uid", None) not in (None, "", owner.uid):
            # A new object of the same name: the pod's owner is gone.
            return None
        parent = parent_of(owner_refs(metadata))
        self._cache[key] = (now + self._ttl_s, parent)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)
        return parent
