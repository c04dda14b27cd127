"""The simulated cluster's object store: etcd-like global resourceVersion, bounded watch history, selectors."""

from __future__ import annotations

import asyncio
import bisect
import copy
import functools
import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ResourceType:
    """One served resource: where it lives in the API and what its objects are called."""

    group: str  # "" for core
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        """The apiVersion written in objects of this type ("v1", "apps/v1")."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        """The kind of the list object ("PodList")."""
        return f"{self.kind}List"


RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "Namespace", False, ("ns",)),
    ResourceType("", "v1", "nodes", "Node", False, ("no",)),
    ResourceType("", "v1", "pods", "Pod", True, ("po",)),
    ResourceType("", "v1", "events", "Event", True, ("ev",)),
    ResourceType("", "v1", "secrets", "Secret", True),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",)),
    ResourceType("", "v1", "replicationcontrollers", "ReplicationController", True, ("rc",)),
    ResourceType("apps", "v1", "replicasets", "ReplicaSet", True, ("rs",)),
    ResourceType("apps", "v1", "deployments", "Deployment", True, ("deploy",)),
    ResourceType("apps", "v1", "statefulsets", "StatefulSet", True, ("sts",)),
    ResourceType("apps", "v1", "daemonsets", "DaemonSet", True, ("ds",)),
    ResourceType("batch", "v1", "jobs", "Job", True),
    ResourceType("batch", "v1", "cronjobs", "CronJob", True, ("cj",)),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True),
)

# Types whose spec changes bump metadata.generation (pods do too since 1.33; harmless here).
_GENERATION_TYPES = frozenset(
    {"pods", "replicationcontrollers", "replicasets", "deployments", "statefulsets", "daemonsets", "jobs", "cronjobs"}
)


def resource_for(kind_or_plural: str) -> ResourceType:
    """Find a resource type by kind ("Pod"), plural ("pods") or short name ("po"), case-insensitively."""
    key = kind_or_plural.lower()
    for rt in RESOURCES:
        if key in (rt.kind.lower(), rt.plural, *rt.short_names):
            return rt
    raise KeyError(kind_or_plural)


def now_rfc3339() -> str:
    """The current UTC time as Kubernetes writes timestamps (second precision, Z suffix)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    """An error the API server answers with a Status object."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}

    def status(self) -> Obj:
        """The metav1.Status body real API servers send for this error."""
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def not_found(rt: ResourceType, name: str) -> ApiError:
    """404 as the API server words it: `pods "x" not found`."""
    plural = rt.plural if not rt.group else f"{rt.plural}.{rt.group}"
    return ApiError(404, "NotFound", f'{plural} "{name}" not found', {"name": name, "kind": rt.plural})


@dataclass(slots=True)
class WatchEvent:
    """One change in the history: ADDED, MODIFIED or DELETED with the object as it was then."""

    rv: int
    rt: ResourceType
    type: str
    obj: Obj


@dataclass(slots=True, eq=False)
class Subscription:
    """An open watch: receives events through its queue; None in the queue ends the stream."""

    rt: ResourceType
    namespace: str | None
    queue: asyncio.Queue[WatchEvent | None] = field(default_factory=asyncio.Queue)


# ---- selectors ----


def _field_value(obj: Obj, path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


@functools.lru_cache(maxsize=256)
def _split_terms(selector: str) -> tuple[str, ...]:
    # Commas inside "in (a,b)" sets do not separate terms. Cached: a list or watch applies one selector to every object.
    terms: list[str] = []
    depth = 0
    cur = ""
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append(cur)
            cur = ""
        else:
            cur += ch
    terms.append(cur)
    return tuple(t.strip() for t in terms if t.strip())


# The fields each resource can be selected by (kube-apiserver answers any other with 400 `field label not supported`).
# Every resource has metadata.name and metadata.namespace (apiserver registry/generic DefaultNamespaceScopedAttr);
# the others are each strategy's ToSelectableFields / GetAttrs: pkg/registry/core/pod/strategy.go,
# core/event/strategy.go, core/secret/strategy.go, core/namespace/strategy.go, core/node/strategy.go,
# core/replicationcontroller/strategy.go, apps/replicaset/strategy.go, batch/job/strategy.go.
_SELECTABLE: dict[str, frozenset[str]] = {
    "pods": frozenset(
        {
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        }
    ),
    "events": frozenset(
        {
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        }
    ),
    "secrets": frozenset({"type"}),
    "namespaces": frozenset({"status.phase"}),
    "nodes": frozenset({"spec.unschedulable"}),
    "replicationcontrollers": frozenset({"status.replicas"}),
    "replicasets": frozenset({"status.replicas"}),
    "jobs": frozenset({"status.successful"}),
}
_ALIASES = {("events", "source"): "source.component"}  # the event strategy selects source by its component


@functools.lru_cache(maxsize=256)
def _field_terms(selector: str) -> tuple[tuple[str, str, bool], ...]:
    out = []
    for term in _split_terms(selector):
        if "!=" in term:
            path, value = term.split("!=", 1)
            out.append((path.strip(), value.strip(), False))
        elif "=" in term:
            path, value = term.replace("==", "=").split("=", 1)
            out.append((path.strip(), value.strip(), True))
        else:
            raise ApiError(400, "BadRequest", f"invalid field selector: {selector!r}: no operator in {term!r}")
    return tuple(out)


def check_field_selector(rt: ResourceType, selector: str | None) -> None:
    """400 BadRequest `field label not supported: X` for a field the resource cannot be selected by."""
    if not selector:
        return
    allowed = _SELECTABLE.get(rt.plural, frozenset()) | {"metadata.name", "metadata.namespace"}
    for path, _value, _eq in _field_terms(selector):
        if path not in allowed:
            raise ApiError(400, "BadRequest", f"field label not supported: {path}")


def match_fields(obj: Obj, selector: str | None) -> bool:
    """Field selector: comma-separated `path=value`, `path==value`, `path!=value` terms (any dotted path)."""
    if not selector:
        return True
    kind_plural = str(obj.get("kind") or "").lower() + "s"
    for path, value, equal in _field_terms(selector):
        actual = _field_value(obj, _ALIASES.get((kind_plural, path), path))
        if (actual == value) != equal:
            return False
    return True


def match_labels(obj: Obj, selector: str | None) -> bool:
    """Label selector: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`."""
    if not selector:
        return True
    labels: dict[str, str] = (obj.get("metadata") or {}).get("labels") or {}
    for term in _split_terms(selector):
        if " notin " in term:
            key, values = term.split(" notin ", 1)
            if labels.get(key.strip()) in {v.strip() for v in values.strip().strip("()").split(",")}:
                return False
        elif " in " in term:
            key, values = term.split(" in ", 1)
            if labels.get(key.strip()) not in {v.strip() for v in values.strip().strip("()").split(",")}:
                return False
        elif "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


# ---- the store ----


class ObjectStore:
    """All objects of the simulated cluster, with one global resourceVersion and a bounded event history."""

    def __init__(self, history_limit: int = 1000, history_window_s: float | None = None) -> None:
        self.rv = 1
        self.history_limit = history_limit
        # Watch history by time too: etcd compacts every 5 minutes by default (kube-apiserver
        # --etcd-compaction-interval), so a watch from a resourceVersion older than that is 410 Gone.
        self.history_window_s = history_window_s
        self._recorded_at: deque[float] = deque()
        self.history: deque[WatchEvent] = deque()
        # Events with rv <= floor are forgotten: a watch or continue token from before it gets 410 Gone.
        self.floor = 0
        self.subscriptions: set[Subscription] = set()
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {rt.plural: {} for rt in RESOURCES}
        # Each resource's keys in (namespace, name) order, kept sorted on create and delete, so that a list page
        # starts by bisection instead of sorting every object (paging a large list was quadratic).
        self._order: dict[str, list[tuple[str, str]]] = {rt.plural: [] for rt in RESOURCES}

    # -- reading --

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        """A copy of one object, or ApiError 404."""
        obj = self._objects[rt.plural].get((namespace or "", name))
        if obj is None:
            raise not_found(rt, name)
        return copy.deepcopy(obj)

    def find(self, rt: ResourceType, namespace: str | None, name: str) -> Obj | None:
        """The stored object itself (not a copy), or None."""
        return self._objects[rt.plural].get((namespace or "", name))

    def count(self, rt: ResourceType) -> int:
        """How many objects of the type are stored."""
        return len(self._objects[rt.plural])

    def items(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[Obj]:
        """Stored objects (not copies) sorted by namespace/name, filtered."""
        return self.page(rt, namespace, label_selector, field_selector)[0]

    def page(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        *,
        after: tuple[str, str] | None = None,
        limit: int = 0,
    ) -> tuple[list[Obj], int]:
        """Up to `limit` (0: all) stored objects (not copies) sorted by namespace/name, filtered, whose key comes after
        `after`; and how many keys of the namespace follow the page unfiltered (0 when the page is the last one).

        The start is found by bisection and the walk stops at the page's end, so reading a list of n objects in pages
        costs O(n) in all, whatever the page size."""
        keys = self._order[rt.plural]
        objects = self._objects[rt.plural]
        lo, hi = 0, len(keys)
        if namespace:
            lo = bisect.bisect_left(keys, (namespace, ""))
            hi = bisect.bisect_left(keys, (namespace + "\0", ""), lo)
        if after is not None:
            lo = max(lo, bisect.bisect_right(keys, after))
        out: list[Obj] = []
        i = lo
        while i < hi:
            obj = objects[keys[i]]
            i += 1
            if match_labels(obj, label_selector) and match_fields(obj, field_selector):
                out.append(obj)
                if limit and len(out) == limit:
                    break
        if i < hi and not (label_selector or field_selector):
            return out, hi - i
        # With a selector, whether anything else matches is only known by looking on.
        more = any(
            match_labels(objects[keys[j]], label_selector) and match_fields(objects[keys[j]], field_selector)
            for j in range(i, hi)
        )
        return out, 1 if more else 0

    # -- writing --

    def _next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def _record(self, rt: ResourceType, type_: str, obj: Obj) -> None:
        event = WatchEvent(int(obj["metadata"]["resourceVersion"]), rt, type_, obj)
        self.history.append(event)
        self._recorded_at.append(time.monotonic())
        while len(self.history) > self.history_limit:
            self.floor = self.history.popleft().rv
            self._recorded_at.popleft()
        self.compact()
        for sub in list(self.subscriptions):
            if sub.rt.plural == rt.plural and (sub.namespace is None or sub.namespace == _ns_of(obj)):
                sub.queue.put_nowait(event)

    def _prepare(self, rt: ResourceType, obj: Obj, namespace: str | None) -> Obj:
        obj = copy.deepcopy(obj)
        obj["kind"] = rt.kind
        obj["apiVersion"] = rt.api_version
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            prefix = meta.get("generateName")
            if not prefix:
                raise ApiError(
                    422,
                    "Invalid",
                    f"{rt.kind} is invalid: metadata.name: Required value: name or generateName is required",
                )
            meta["name"] = prefix + uuid.uuid4().hex[:5]
        if rt.namespaced:
            ns = namespace or meta.get("namespace") or "default"
            if meta.get("namespace") and namespace and meta["namespace"] != namespace:
                raise ApiError(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request",
                )
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        return obj

    def create(self, rt: ResourceType, obj: Obj, namespace: str | None = None, dry_run: bool = False) -> Obj:
        """Create an object; 409 AlreadyExists if the name is taken."""
        obj = self._prepare(rt, obj, namespace)
        meta = obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        if key in self._objects[rt.plural]:
            plural = rt.plural if not rt.group else f"{rt.plural}.{rt.group}"
            raise ApiError(
                409,
                "AlreadyExists",
                f'{plural} "{meta["name"]}" already exists',
                {"name": meta["name"], "kind": rt.plural},
            )
        if rt.namespaced and rt.plural != "events" and ("", key[0]) not in self._objects["namespaces"]:
            raise ApiError(
                404,
                "NotFound",
                f'namespaces "{key[0]}" not found',
                {"name": key[0], "kind": "namespaces"},
            )
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", now_rfc3339())
        meta.pop("resourceVersion", None)
        if rt.plural in _GENERATION_TYPES:
            meta["generation"] = 1
        if rt.plural == "namespaces":
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj.setdefault("status", {"phase": "Active"})
        if dry_run:
            return obj
        meta["resourceVersion"] = str(self._next_rv())
        self._objects[rt.plural][key] = obj
        bisect.insort(self._order[rt.plural], key)
        self._record(rt, "ADDED", obj)
        return copy.deepcopy(obj)

    def replace(
        self,
        rt: ResourceType,
        obj: Obj,
        namespace: str | None = None,
        dry_run: bool = False,
        check_rv: bool = True,
    ) -> Obj:
        """Replace an object (PUT); 409 Conflict when metadata.resourceVersion is stale."""
        obj = self._prepare(rt, obj, namespace)
        meta = obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        old = self._objects[rt.plural].get(key)
        if old is None:
            raise not_found(rt, meta["name"])
        old_meta = old["metadata"]
        sent_rv = meta.get("resourceVersion")
        if check_rv and sent_rv and sent_rv != old_meta["resourceVersion"]:
            plural = rt.plural if not rt.group else f"{rt.plural}.{rt.group}"
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {plural} "{meta["name"]}": the object has been modified; '
                "please apply your changes to the latest version and try again",
                {"name": meta["name"], "kind": rt.plural},
            )
        meta["uid"] = old_meta["uid"]
        meta["creationTimestamp"] = old_meta["creationTimestamp"]
        # Clients cannot set or clear a deletion by writing the object (apiserver ValidateObjectMetaUpdate keeps
        # deletionTimestamp immutable): only DELETE does. Test helpers (check_rv=False) may set it, never clear it.
        for system in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            if system in old_meta and (check_rv or system not in meta):
                meta[system] = old_meta[system]
            elif check_rv:
                meta.pop(system, None)
        if rt.plural in _GENERATION_TYPES:
            gen = int(old_meta.get("generation", 1))
            meta["generation"] = gen + 1 if obj.get("spec") != old.get("spec") else gen
        if dry_run:
            meta["resourceVersion"] = old_meta["resourceVersion"]
            return obj
        meta["resourceVersion"] = str(self._next_rv())
        self._objects[rt.plural][key] = obj
        self._record(rt, "MODIFIED", obj)
        return copy.deepcopy(obj)

    def mark_deleting(
        self, rt: ResourceType, namespace: str | None, name: str, deadline: datetime, grace_s: int
    ) -> Obj:
        """Graceful deletion: set metadata.deletionTimestamp (when the grace period ends) and
        deletionGracePeriodSeconds, as a MODIFIED change; the object stays until it is deleted for good."""
        key = (namespace or "", name)
        old = self._objects[rt.plural].get(key)
        if old is None:
            raise not_found(rt, name)
        obj = copy.deepcopy(old)
        obj["metadata"]["deletionTimestamp"] = deadline.strftime("%Y-%m-%dT%H:%M:%SZ")
        obj["metadata"]["deletionGracePeriodSeconds"] = grace_s
        obj["metadata"]["resourceVersion"] = str(self._next_rv())
        self._objects[rt.plural][key] = obj
        self._record(rt, "MODIFIED", obj)
        return copy.deepcopy(obj)

    def delete(self, rt: ResourceType, namespace: str | None, name: str, dry_run: bool = False) -> Obj:
        """Delete an object at once (no graceful period) and return it as it was last."""
        key = (namespace or "", name)
        old = self._objects[rt.plural].get(key)
        if old is None:
            raise not_found(rt, name)
        if dry_run:
            return copy.deepcopy(old)
        del self._objects[rt.plural][key]
        order = self._order[rt.plural]
        del order[bisect.bisect_left(order, key)]
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = str(self._next_rv())
        self._record(rt, "DELETED", gone)
        return copy.deepcopy(gone)

    # -- watch plumbing --

    def compact(self) -> None:
        """Forget events older than the history window (by time)."""
        if self.history_window_s is None:
            return
        horizon = time.monotonic() - self.history_window_s
        while self._recorded_at and self._recorded_at[0] < horizon:
            self._recorded_at.popleft()
            self.floor = self.history.popleft().rv

    def expire_history(self) -> None:
        """Forget every past event: watches and continue tokens from before now get 410 Gone."""
        self.history.clear()
        self._recorded_at.clear()
        self.floor = self.rv

    def subscribe(self, rt: ResourceType, namespace: str | None, since: int | None) -> tuple[Subscription, list[Any]]:
        """Open a watch from `since` (None: from now, with the current state as ADDED); 410 when too old."""
        sub = Subscription(rt, namespace)
        backlog: list[Any] = []
        if since is None:
            backlog = [
                WatchEvent(int(o["metadata"]["resourceVersion"]), rt, "ADDED", o) for o in self.items(rt, namespace)
            ]
        else:
            self.compact()
            if since < self.floor:
                raise ApiError(410, "Expired", f"too old resource version: {since} ({self.floor + 1})")
            backlog = [
                e
                for e in self.history
                if e.rv > since and e.rt.plural == rt.plural and (namespace is None or _ns_of(e.obj) == namespace)
            ]
        self.subscriptions.add(sub)
        return sub, backlog

    def unsubscribe(self, sub: Subscription) -> None:
        """Close a watch's subscription."""
        self.subscriptions.discard(sub)

    def drop_watches(self) -> int:
        """End every open watch stream; returns how many were open."""
        subs = list(self.subscriptions)
        for sub in subs:
            sub.queue.put_nowait(None)
        self.subscriptions.clear()
        return len(subs)

    def all_namespaced_objects(self, namespace: str) -> Iterable[tuple[ResourceType, Obj]]:
        """Every object in a namespace, for cascading namespace deletion."""
        for rt in RESOURCES:
            if rt.namespaced:
                for (ns, _), obj in list(self._objects[rt.plural].items()):
                    if ns == namespace:
                        yield rt, obj


def _ns_of(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")
