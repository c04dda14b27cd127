"""Cluster inspection of a failing pod: owners, pull policy, pull secrets (pod and ServiceAccount), node, events.

Every read is bounded by a timeout and independent reads run concurrently; a read that fails degrades the
inspection (the field stays empty, a secret check says "cannot read") instead of failing it. Secret contents
are parsed in memory and never logged: the only thing that leaves this module is `SecretCheck` (no values)
and, for the registry probe, the `Credentials` of the first secret matching the image's registry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.exceptions import ApiException

from bot import imageref
from bot.kube.dockerconfig import (
    DOCKERCFG_TYPE,
    DOCKERCONFIGJSON_TYPE,
    DockerConfig,
    entry_credentials,
    lookup,
    parse_secret,
)
from bot.kube.owners import OwnerChain, OwnerRef, controller_of, owner_refs
from bot.model import Credentials, NodeInfo, PodInspection, SecretCheck, WorkloadRef
from bot.settings import KubeSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

PROBLEM_FORBIDDEN = "cannot read (forbidden)"  # RBAC denies reading the secret: it may well exist
PROBLEM_NOT_ALLOWED = "not inspected (namespace not in secret_namespaces)"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NS_SECRETS = "the namespace's other pull secrets"


class _ReadFailed(Exception):
    """A read that did not answer usefully: its HTTP status (None for a timeout or a transport error)."""

    def __init__(self, status: int | None, what: str) -> None:
        super().__init__(what)
        self.status = status
        self.what = what

    @property
    def words(self) -> str:
        """The failure in words safe to show: "forbidden", "HTTP 500", "timed out"."""
        if self.status == 403:
            return "forbidden"
        if self.status is None:
            return self.what
        return f"HTTP {self.status}"


@dataclass(frozen=True, slots=True)
class _SecretResult:
    check: SecretCheck
    config: DockerConfig | None


class Inspector:
    """Reads what the verifier needs about one pod, bounded and concurrent, never raising on API errors."""

    def __init__(
        self,
        api_client: Any,
        *,
        secret_namespaces: Sequence[str] = (),
        list_pull_secrets: bool = True,
        events_limit: int = 10,
        timeout_s: float = 3.0,
        owner_ttl_s: float = 60.0,
    ) -> None:
        self._core = k8s.CoreV1Api(api_client)
        self._owners = OwnerChain(api_client, ttl_s=owner_ttl_s, timeout_s=timeout_s)
        self._secret_namespaces = frozenset(secret_namespaces)
        self._list_pull_secrets = list_pull_secrets
        self._events_limit = events_limit
        self._timeout_s = timeout_s

    @classmethod
    def from_settings(cls, api_client: Any, settings: KubeSettings, **kwargs: Any) -> Inspector:
        """An inspector honouring `settings.secret_namespaces`."""
        return cls(
            api_client,
            secret_namespaces=settings.secret_namespaces,
            list_pull_secrets=settings.list_pull_secrets,
            **kwargs,
        )

    @property
    def owners(self) -> OwnerChain:
        """The owner-chain resolver (and its cache) this inspector uses."""
        return self._owners

    async def inspect(self, namespace: str, pod: str, image: str) -> tuple[PodInspection, Credentials | None]:
        """Inspect `pod` for a failing pull of `image`; credentials for the image's registry are for the probe only."""
        pod_task = self._read(self._core.read_namespaced_pod(pod, namespace, _request_timeout=self._timeout_s), "pod")
        pod_obj, events = await asyncio.gather(_settle(pod_task), self._events(namespace, pod))
        base = PodInspection(namespace=namespace, pod=pod, events=events)
        if isinstance(pod_obj, _ReadFailed):
            if pod_obj.status == 404:
                return replace(base, exists=False), None
            log.warning("inspect %s/%s: pod unreadable (%s)", namespace, pod, pod_obj.words)
            return base, None

        spec, metadata = pod_obj.spec, pod_obj.metadata
        refs = owner_refs(metadata)
        sa_name = (getattr(spec, "service_account_name", None) or "default") if spec else "default"
        node_name = getattr(spec, "node_name", None) if spec else None
        image_name = _image_name(image)
        pod_secret_names = _names(getattr(spec, "image_pull_secrets", None) if spec else None)
        unchecked: list[str] = []

        chain, node, secret_results, platforms = await asyncio.gather(
            self._owner_chain(namespace, refs),
            self._node(node_name, unchecked) if node_name else _none(),
            self._secrets(namespace, sa_name, pod_secret_names, image_name, unchecked),
            self._platforms(unchecked),
        )
        listed = self._may_list(namespace) and not any(u.startswith(_NS_SECRETS) for u in unchecked)
        inspection = replace(
            base,
            service_account=sa_name,
            image_pull_policy=_pull_policy(spec, image),
            owner_chain=chain,
            controlled=controller_of(refs) is not None,
            secrets=tuple(r.check for r in secret_results),
            node=node,
            pod_secret_names=tuple(pod_secret_names),
            unchecked=tuple(dict.fromkeys(unchecked)),
            namespace_secrets_listed=listed,
            cluster_platforms=platforms,
        )
        credentials = None
        if image_name is not None:
            # What the kubelet sends for THIS pod: its own imagePullSecrets only, merged into one keyring.
            configs = [
                (r.check.name, r.config)
                for r in secret_results
                if r.check.referenced_by == "pod" and r.config is not None
            ]
            for _, entry in lookup(configs, image_name):
                if entry.has_basic:
                    credentials = entry_credentials(entry)
                    break
        return inspection, credentials

    async def _read(self, call: Awaitable[T], what: str) -> T:
        try:
            async with asyncio.timeout(self._timeout_s):
                return await call
        except ApiException as exc:
            raise _ReadFailed(exc.status, what) from None
        except TimeoutError:
            raise _ReadFailed(None, "timed out") from None
        except (OSError, ValueError) as exc:  # aiohttp.ClientError is an OSError; ValueError: a bad object
            raise _ReadFailed(None, f"failed ({type(exc).__name__})") from None

    async def _owner_chain(self, namespace: str, refs: list[OwnerRef]) -> tuple[WorkloadRef, ...]:
        try:
            return await self._owners.resolve(namespace, refs)
        except Exception:  # the chain is a nicety: never let it sink the inspection
            log.exception("inspect: owner chain of an object in %s failed", namespace)
            return ()

    async def _node(self, name: str, unchecked: list[str]) -> NodeInfo:
        try:
            node = await self._read(self._core.read_node(name, _request_timeout=self._timeout_s), "node")
        except _ReadFailed as exc:
            log.info("inspect: node %s unreadable (%s)", name, exc.words)
            unchecked.append(f"node {name} ({exc.words})")
            return NodeInfo(name=name)
        status = node.status
        info = getattr(status, "node_info", None)
        conditions = getattr(status, "conditions", None) or ()
        pressure = any(c.type == "DiskPressure" and c.status == "True" for c in conditions)
        return NodeInfo(
            name=name,
            architecture=getattr(info, "architecture", None) or None,
            os=getattr(info, "operating_system", None) or None,
            disk_pressure=pressure,
        )

    async def _platforms(self, unchecked: list[str]) -> tuple[str, ...]:
        """The distinct `os/arch` of the cluster's nodes, from their kubernetes.io/os and kubernetes.io/arch labels."""
        try:
            nodes = await self._read(self._core.list_node(_request_timeout=self._timeout_s), "nodes")
        except _ReadFailed as exc:
            log.info("inspect: nodes unreadable (%s)", exc.words)
            return ()
        out: list[str] = []
        for node in nodes.items or ():
            labels = getattr(node.metadata, "labels", None) or {}
            info = getattr(node.status, "node_info", None)
            os_name = labels.get("kubernetes.io/os") or getattr(info, "operating_system", None)
            arch = labels.get("kubernetes.io/arch") or getattr(info, "architecture", None)
            if os_name and arch and f"{os_name}/{arch}" not in out:
                out.append(f"{os_name}/{arch}")
        return tuple(out)

    async def _events(self, namespace: str, pod: str) -> tuple[str, ...]:
        try:
            listing = await self._read(
                self._core.list_namespaced_event(
                    namespace,
                    field_selector=f"involvedObject.name={pod}",
                    _request_timeout=self._timeout_s,
                ),
                "events",
            )
        except _ReadFailed as exc:
            log.info("inspect: events of %s/%s unreadable (%s)", namespace, pod, exc.words)
            return ()
        items = [e for e in (listing.items or ()) if getattr(e.involved_object, "kind", "Pod") in (None, "Pod")]
        items.sort(key=_event_time, reverse=True)
        lines: list[str] = []
        for event in items:
            line = f"{event.reason or 'Event'}: {(event.message or '').strip()}"
            if line not in lines:
                lines.append(line)
            if len(lines) >= self._events_limit:
                break
        return tuple(lines)

    def _may_list(self, namespace: str) -> bool:
        return self._list_pull_secrets and (not self._secret_namespaces or namespace in self._secret_namespaces)

    async def _secrets(
        self, namespace: str, sa_name: str, pod_names: list[str], image: str | None, unchecked: list[str]
    ) -> list[_SecretResult]:
        cache: dict[str, asyncio.Task[_SecretResult]] = {}

        def check(name: str, referenced_by: str) -> asyncio.Task[_SecretResult]:
            if name not in cache:
                cache[name] = asyncio.ensure_future(self._check_secret(namespace, name, referenced_by, image))
            return cache[name]

        try:
            pod_tasks = [check(n, "pod") for n in pod_names]
            sa_names, listed = await asyncio.gather(
                self._service_account_secrets(namespace, sa_name, unchecked),
                self._namespace_pull_secrets(namespace, unchecked),
            )
            sa_tasks = [check(n, "serviceaccount") for n in sa_names if n not in pod_names]
            results = list(await asyncio.gather(*pod_tasks, *sa_tasks))
            known = set(pod_names) | set(sa_names)
            for name, secret in listed:
                if name not in known:
                    results.append(self._secret_result(name, "namespace", secret, image))
            return results
        finally:
            for task in cache.values():
                task.cancel()

    async def _service_account_secrets(self, namespace: str, name: str, unchecked: list[str]) -> list[str]:
        try:
            sa = await self._read(
                self._core.read_namespaced_service_account(name, namespace, _request_timeout=self._timeout_s),
                "serviceaccount",
            )
        except _ReadFailed as exc:
            log.info("inspect: serviceaccount %s/%s unreadable (%s)", namespace, name, exc.words)
            if exc.status != 404:
                unchecked.append(f"ServiceAccount {name} ({exc.words})")
            return []
        return _names(getattr(sa, "image_pull_secrets", None))

    async def _namespace_pull_secrets(self, namespace: str, unchecked: list[str]) -> list[tuple[str, Any]]:
        """The namespace's dockerconfig-type secrets (parsed in memory here; only names and registry keys leave)."""
        if not self._may_list(namespace):
            unchecked.append(f"{_NS_SECRETS} (listing them is switched off)")
            return []
        out: list[tuple[str, Any]] = []
        for secret_type in (DOCKERCONFIGJSON_TYPE, DOCKERCFG_TYPE):
            try:
                listing = await self._read(
                    self._core.list_namespaced_secret(
                        namespace, field_selector=f"type={secret_type}", _request_timeout=self._timeout_s
                    ),
                    "secrets",
                )
            except _ReadFailed as exc:
                log.info("inspect: secrets of %s not listed (%s)", namespace, exc.words)
                unchecked.append(f"{_NS_SECRETS} ({exc.words})")
                return out
            for item in listing.items or ():
                if item.type == secret_type and item.metadata and item.metadata.name:
                    out.append((str(item.metadata.name), item))
        return out

    async def _check_secret(self, namespace: str, name: str, referenced_by: str, image: str | None) -> _SecretResult:
        base = SecretCheck(name=name, referenced_by=referenced_by, exists=True)
        if self._secret_namespaces and namespace not in self._secret_namespaces:
            return _SecretResult(replace(base, problem=PROBLEM_NOT_ALLOWED), None)
        try:
            secret = await self._read(
                self._core.read_namespaced_secret(name, namespace, _request_timeout=self._timeout_s), "secret"
            )
        except _ReadFailed as exc:
            if exc.status == 404:
                return _SecretResult(replace(base, exists=False), None)
            log.info("inspect: secret %s/%s unreadable (%s)", namespace, name, exc.words)
            return _SecretResult(replace(base, problem=f"cannot read ({exc.words})"), None)
        return self._secret_result(name, referenced_by, secret, image)

    @staticmethod
    def _secret_result(name: str, referenced_by: str, secret: Any, image: str | None) -> _SecretResult:
        config = parse_secret(secret.type, secret.data)
        entries = config.entries_for(image) if image is not None and config.parses else ()
        entry = entries[0] if entries else None
        created = getattr(secret.metadata, "creation_timestamp", None)
        check = SecretCheck(
            name=name,
            referenced_by=referenced_by,
            exists=True,
            type=secret.type,
            parses=config.parses,
            registries=config.registries,
            matches_image=entry is not None,
            problem=config.problem,
            created_at=created if isinstance(created, datetime) else None,
            fingerprint=entry.fingerprint() if entry is not None else None,
        )
        return _SecretResult(check, config if config.parses else None)


async def _settle(call: Awaitable[T]) -> T | _ReadFailed:
    try:
        return await call
    except _ReadFailed as exc:
        return exc


async def _none() -> None:
    return None


def _names(refs: Iterable[Any] | None) -> list[str]:
    out: list[str] = []
    for ref in refs or ():
        name = ref.get("name") if isinstance(ref, dict) else getattr(ref, "name", None)
        if name and name not in out:
            out.append(str(name))
    return out


def _image_name(image: str) -> str | None:
    """What the kubelet looks up in its keyring: `registry/repository` (`docker.io/library/nginx`)."""
    ref = imageref.try_parse(image)
    return ref.name if ref is not None else None


def _pull_policy(spec: Any, image: str) -> str | None:
    if spec is None:
        return None
    containers = [
        *(getattr(spec, "containers", None) or ()),
        *(getattr(spec, "init_containers", None) or ()),
        *(getattr(spec, "ephemeral_containers", None) or ()),
    ]
    for c in containers:
        if c.image == image:
            return str(c.image_pull_policy) if c.image_pull_policy else None
    wanted = imageref.try_parse(image)
    for c in containers:
        if wanted is not None and c.image and imageref.try_parse(c.image) == wanted:
            return str(c.image_pull_policy) if c.image_pull_policy else None
    return None


def _event_time(event: Any) -> tuple[datetime, int]:
    """Newest-first sort key: the event's latest timestamp, then its resourceVersion (later writes are newer)."""
    metadata = getattr(event, "metadata", None)
    rv = str(getattr(metadata, "resource_version", None) or "")
    order = int(rv) if rv.isdigit() else 0
    stamps = [
        value if value.tzinfo else value.replace(tzinfo=UTC)
        for value in (
            getattr(getattr(event, "series", None), "last_observed_time", None),
            getattr(event, "last_timestamp", None),
            getattr(event, "event_time", None),
            getattr(event, "first_timestamp", None),
            getattr(metadata, "creation_timestamp", None),
        )
        if isinstance(value, datetime)
    ]
    return max(stamps, default=_EPOCH), order


__all__ = ["PROBLEM_FORBIDDEN", "PROBLEM_NOT_ALLOWED", "Inspector"]
