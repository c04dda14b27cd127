"""The latent-failure scan: reads the cluster, asks each registry once per distinct question, returns findings.

Reads (all lists paginated, raw JSON, each call bounded by a timeout): Nodes, ServiceAccounts, Deployments,
StatefulSets, DaemonSets, CronJobs, ReplicaSets and Pods (a Deployment's running digests come from its ReplicaSets'
pods; bare pods are workloads of their own), and `get` of each referenced pull secret. Registry probes are coalesced
by (registry, repository, reference, credentials), at most `max_per_registry_per_minute` per registry and
`concurrency` at once; credentials live only for the probe. On Docker Hub the index of a multi-platform image is
not read (a manifest GET counts as a pull there), so its platforms are reported as not checked.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.exceptions import ApiException

from bot.imageref import ImageRef
from bot.kube.dockerconfig import parse_secret
from bot.model import Credentials, ProbeOutcome, ProbeResult
from bot.prevention.expiry import last_written
from bot.prevention.findings import Finding, Risk, evaluate
from bot.prevention.placement import node_facts
from bot.prevention.plan import Check, SecretView, plan
from bot.prevention.workloads import WorkloadSpec, spec_of

log = logging.getLogger(__name__)

_PAGE = 500
_STRIKES = frozenset({ProbeOutcome.TIMEOUT, ProbeOutcome.REFUSED, ProbeOutcome.DNS, ProbeOutcome.TLS})


class Prober(Protocol):
    async def probe(
        self,
        ref: ImageRef,
        credentials: Credentials | None,
        node_platform: str | None,
        *,
        fresh: bool = False,
        near_names: bool = True,
    ) -> ProbeResult: ...


@dataclass(frozen=True, slots=True)
class ScanSettings:
    max_per_registry_per_minute: int = 60
    concurrency: int = 8
    timeout_s: float = 10.0  # each API call
    warn_before: timedelta = timedelta(hours=2)
    quota_floor: int = 20
    strikes: int = 3  # a registry that times out, refuses or fails DNS this many times in a row is not asked again
    deadline_s: float = 1800.0  # checks not started by then are reported as not checked


@dataclass(slots=True)
class ScanReport:
    workloads: int = 0
    images: int = 0
    checks: int = 0
    findings: list[Finding] = field(default_factory=list)
    could_not_read: list[str] = field(default_factory=list)  # API reads that failed (the scan is partial there)
    seconds: float = 0.0

    def by_risk(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for f in self.findings:
            counts[f.risk.value] += 1
        return dict(sorted(counts.items()))


class RegistryBudget:
    """At most `per_minute` probes per registry per rolling minute; waits (never drops) when the budget is spent."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = max(1, per_minute)
        self._clock = clock
        self._sent: dict[str, list[float]] = defaultdict(list)
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def take(self, registry: str) -> None:
        async with self._locks[registry]:
            while True:
                now = self._clock()
                recent = [t for t in self._sent[registry] if now - t < 60.0]
                self._sent[registry] = recent
                if len(recent) < self.per_minute:
                    recent.append(now)
                    return
                await asyncio.sleep(60.0 - (now - recent[0]))


class LatentScanner:
    """Finds the pull failures that have not happened yet (see the module docstring)."""

    def __init__(
        self,
        api: Any,
        prober: Prober,
        settings: ScanSettings | None = None,
        *,
        exclude_namespaces: Iterable[str] = (),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings or ScanSettings()
        self._core: Any = k8s.CoreV1Api(api)
        self._apps: Any = k8s.AppsV1Api(api)
        self._batch: Any = k8s.BatchV1Api(api)
        self._prober = prober
        self._exclude = set(exclude_namespaces)
        self._clock = clock
        self.budget = RegistryBudget(self.settings.max_per_registry_per_minute)

    async def scan(self, namespace: str | None = None) -> ScanReport:
        started = time.monotonic()
        self._strikes: dict[str, int] = defaultdict(int)
        self._benched: dict[str, str] = {}  # registry -> why it is not asked again in this scan
        self._deadline = started + self.settings.deadline_s
        report = ScanReport()
        objects = await self._read_cluster(namespace, report)
        specs = self._specs(objects)
        report.workloads = len(specs)
        report.images = len({image for s in specs for _, image in s.containers})
        accounts = {
            (o["metadata"].get("namespace", ""), o["metadata"]["name"]): tuple(
                str(s.get("name")) for s in o.get("imagePullSecrets") or [] if isinstance(s, dict) and s.get("name")
            )
            for o in objects["ServiceAccount"]
        }
        wanted = {
            (s.namespace, n)
            for s in specs
            for n in (s.pull_secrets or accounts.get((s.namespace, s.service_account), ()))
        }
        secrets = await self._read_secrets(wanted, report)
        nodes = [node_facts(n) for n in objects["Node"]]
        the_plan = plan(specs, nodes, accounts, secrets, now=self._clock(), warn_before=self.settings.warn_before)
        del secrets  # parsed pull secrets: from here on only each check's own credentials remain, until its probe
        report.findings.extend(the_plan.findings)
        report.checks = len(the_plan.checks)
        sem = asyncio.Semaphore(self.settings.concurrency)

        async def run(check: Check) -> list[Finding]:
            async with sem:
                probe = await self._probe(check)
                check.credentials = None  # not held past the probe
            return evaluate(probe, tuple(check.dependents), the_plan.platforms, quota_floor=self.settings.quota_floor)

        for found in await asyncio.gather(*(run(c) for c in the_plan.checks)):
            report.findings.extend(found)
        report.findings.sort(key=lambda f: (f.namespace, f.workload, f.container, f.risk.value))
        report.seconds = round(time.monotonic() - started, 2)
        return report

    async def _probe(self, check: Check) -> ProbeResult:
        registry = check.ref.registry
        why = self._benched.get(registry)
        if why is None and time.monotonic() > self._deadline:
            why = f"the scan's {self.settings.deadline_s:g} s budget was spent"
        if why is not None:
            return ProbeResult(registry, check.ref.repository, check.ref.reference, ProbeOutcome.SKIPPED, detail=why)
        await self.budget.take(registry)
        result = await self._ask(check)
        if result.outcome is ProbeOutcome.RATE_LIMITED:
            self._benched[registry] = "the registry rate-limited the scan (429); not asked again this scan"
        elif result.outcome in _STRIKES:
            self._strikes[registry] += 1
            if self._strikes[registry] >= self.settings.strikes:
                self._benched[registry] = f"{self._strikes[registry]} probes in a row got {result.outcome.value}"
        else:
            self._strikes[registry] = 0
        return result

    async def _ask(self, check: Check) -> ProbeResult:
        # Read a multi-platform index (to compare its platforms) except on Docker Hub, where a GET is a pull.
        platform = None if check.ref.registry == "docker.io" else next(iter(sorted(check.platforms)), "linux/amd64")
        try:
            return await self._prober.probe(check.ref, check.credentials, platform, fresh=True, near_names=False)
        except Exception as exc:  # a prober that fails leaves this check unchecked, never the scan
            log.warning("scan: probe of %s failed: %s", check.ref, type(exc).__name__)
            return ProbeResult(check.ref.registry, check.ref.repository, check.ref.reference, ProbeOutcome.ERROR)

    # ---- reading the cluster ----

    async def _read_cluster(self, namespace: str | None, report: ScanReport) -> dict[str, list[dict[str, Any]]]:
        calls: dict[str, Callable[..., Awaitable[Any]]] = {
            "Node": self._core.list_node,
            "ServiceAccount": self._namespaced(self._core, "service_account", namespace),
            "Deployment": self._namespaced(self._apps, "deployment", namespace),
            "StatefulSet": self._namespaced(self._apps, "stateful_set", namespace),
            "DaemonSet": self._namespaced(self._apps, "daemon_set", namespace),
            "ReplicaSet": self._namespaced(self._apps, "replica_set", namespace),
            "CronJob": self._namespaced(self._batch, "cron_job", namespace),
            "Pod": self._namespaced(self._core, "pod", namespace),
        }
        kinds = list(calls)
        results = await asyncio.gather(*(self._list(calls[k], k, report) for k in kinds))
        out = dict(zip(kinds, results, strict=True))
        for kind in kinds:
            if kind != "Node":
                out[kind] = [o for o in out[kind] if o.get("metadata", {}).get("namespace") not in self._exclude]
            for o in out[kind]:
                o.setdefault("kind", kind)
        return out

    @staticmethod
    def _namespaced(api: Any, noun: str, namespace: str | None) -> Callable[..., Awaitable[Any]]:
        if namespace:
            fn = getattr(api, f"list_namespaced_{noun}")
            return lambda **kw: fn(namespace, **kw)
        return cast(Callable[..., Awaitable[Any]], getattr(api, f"list_{noun}_for_all_namespaces"))

    async def _list(self, call: Callable[..., Awaitable[Any]], kind: str, report: ScanReport) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token: str | None = None
        try:
            while True:
                kwargs: dict[str, Any] = {"limit": _PAGE, "_preload_content": False}
                kwargs["_request_timeout"] = self.settings.timeout_s
                if token:
                    kwargs["_continue"] = token
                resp = await call(**kwargs)
                try:
                    if resp.status != 200:
                        raise ApiException(
                            status=resp.status, reason=(await resp.read()).decode(errors="replace")[:200]
                        )
                    page = json.loads(await resp.read())
                finally:
                    resp.release()
                items.extend(i for i in page.get("items") or [] if isinstance(i, dict))
                token = (page.get("metadata") or {}).get("continue") or None
                if not token:
                    return items
        except (ApiException, TimeoutError, OSError, ValueError) as exc:
            status = getattr(exc, "status", None)
            report.could_not_read.append(f"could not list {kind}s ({status or type(exc).__name__})")
            return items

    async def _read_secrets(
        self, wanted: set[tuple[str, str]], report: ScanReport
    ) -> dict[tuple[str, str], SecretView]:
        async def read(ns: str, name: str) -> SecretView | None:
            try:
                resp = await self._core.read_namespaced_secret(
                    name, ns, _preload_content=False, _request_timeout=self.settings.timeout_s
                )
                try:
                    status, body = resp.status, await resp.read()
                finally:
                    resp.release()
            except (ApiException, TimeoutError, OSError) as exc:
                report.could_not_read.append(f"could not read secret {ns}/{name} ({type(exc).__name__})")
                return None
            if status == 404:
                return SecretView(ns, name, exists=False)
            if status != 200:
                report.could_not_read.append(f"could not read secret {ns}/{name} (HTTP {status})")
                return None
            try:
                obj = json.loads(body)
            except ValueError:
                report.could_not_read.append(f"could not read secret {ns}/{name} (not JSON)")
                return None
            meta = obj.get("metadata") or {}
            owner = _controller(meta)
            return SecretView(
                ns,
                name,
                True,
                parse_secret(obj.get("type"), obj.get("data")),
                last_written(meta),
                f"{owner[0]}/{owner[1]}" if owner else None,
            )

        views = await asyncio.gather(*(read(ns, n) for ns, n in sorted(wanted)))
        return {(v.namespace, v.name): v for v in views if v is not None}

    # ---- workloads ----

    def _specs(self, objects: dict[str, list[dict[str, Any]]]) -> list[WorkloadSpec]:
        """Workload specs with the digests their running pods pulled (pods reach a Deployment via its ReplicaSet)."""
        rs_owner: dict[tuple[str, str], tuple[str, str]] = {}
        for rs in objects["ReplicaSet"]:
            meta = rs.get("metadata") or {}
            owner = _controller(meta)
            if owner is not None:
                rs_owner[(meta.get("namespace", ""), meta.get("name", ""))] = owner
        pods_of: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
        bare: list[dict[str, Any]] = []
        for pod in objects["Pod"]:
            meta = pod.get("metadata") or {}
            ns = meta.get("namespace", "")
            owner = _controller(meta)
            if owner is None:
                if (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                    bare.append(pod)
                continue
            if owner[0] == "ReplicaSet" and (ns, owner[1]) in rs_owner:
                owner = rs_owner[(ns, owner[1])]
            pods_of[(ns, owner[0], owner[1])].append(pod)
        specs: list[WorkloadSpec] = []
        for kind in ("Deployment", "StatefulSet", "DaemonSet", "CronJob"):
            for obj in objects[kind]:
                meta = obj.get("metadata") or {}
                spec = spec_of(obj, pods_of.get((meta.get("namespace", ""), kind, meta.get("name", "")), ()))
                if spec is not None and spec.containers:
                    specs.append(spec)
        for pod in bare:
            spec = spec_of(pod, (pod,))
            if spec is not None and spec.containers:
                specs.append(spec)
        return specs


def _controller(meta: dict[str, Any]) -> tuple[str, str] | None:
    for ref in meta.get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller"):
            return str(ref.get("kind") or ""), str(ref.get("name") or "")
    return None


def unchecked(report: ScanReport) -> list[Finding]:
    """The findings that are not verdicts: what the scan could not check."""
    return [f for f in report.findings if f.risk is Risk.UNCHECKED]
