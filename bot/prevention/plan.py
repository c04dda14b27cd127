"""What to check, and what needs no registry at all (pure).

For a NEW pod kubelet sends the pull secrets of the pod spec, which are the template's `imagePullSecrets`, or, when
the template lists none, those the ServiceAccount admission plugin copies from the ServiceAccount at creation
(plugin/pkg/admission/serviceaccount: it fills `imagePullSecrets` only when the pod has none). A referenced secret
that is missing or unreadable is skipped by kubelet (the pull goes on without it), so it is a finding of its own.
Registry checks are coalesced: one per (registry, repository, reference, credentials).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot import imageref
from bot.kube.dockerconfig import DockerConfig, entry_credentials, lookup
from bot.model import Credentials
from bot.prevention.expiry import expiry_of
from bot.prevention.findings import Finding, Risk
from bot.prevention.placement import NodeFacts, platforms_for
from bot.prevention.workloads import WorkloadSpec


@dataclass(frozen=True, slots=True)
class SecretView:
    """A pull secret as the scan read it; `config` holds values in memory only."""

    namespace: str
    name: str
    exists: bool
    config: DockerConfig | None = None
    written: datetime | None = None
    refresher: str | None = None  # "ExternalSecret/registry-creds": the controller that owns (rewrites) the secret


@dataclass(slots=True)
class Check:
    """One registry question and every (workload, container, image) whose next pull depends on its answer."""

    ref: imageref.ImageRef
    credentials: Credentials | None
    platforms: set[str] = field(default_factory=set)
    dependents: list[tuple[WorkloadSpec, str, str]] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str, str, str]:
        fp = self.credentials.fingerprint if self.credentials else ""
        return (self.ref.registry, self.ref.repository, self.ref.reference, fp)


@dataclass(slots=True)
class Plan:
    findings: list[Finding]
    checks: list[Check]
    platforms: dict[tuple[str, str, str], frozenset[str]]


def secrets_for_new_pod(
    spec: WorkloadSpec, service_accounts: Mapping[tuple[str, str], tuple[str, ...]]
) -> tuple[str, ...]:
    """The pull secret names a new pod of `spec` will carry."""
    if spec.pull_secrets:
        return spec.pull_secrets
    return service_accounts.get((spec.namespace, spec.service_account), ())


def plan(
    specs: Iterable[WorkloadSpec],
    nodes: Iterable[NodeFacts],
    service_accounts: Mapping[tuple[str, str], tuple[str, ...]],
    secrets: Mapping[tuple[str, str], SecretView],
    *,
    now: datetime,
    warn_before: timedelta = timedelta(hours=2),
) -> Plan:
    node_list = list(nodes)
    findings: list[Finding] = []
    checks: dict[tuple[str, str, str, str], Check] = {}
    platforms: dict[tuple[str, str, str], frozenset[str]] = {}
    seen_expiry: set[tuple[str, str, str]] = set()
    for spec in specs:
        names = secrets_for_new_pod(spec, service_accounts)
        views = [secrets.get((spec.namespace, n)) or SecretView(spec.namespace, n, exists=False) for n in names]
        where_platforms = platforms_for(spec, node_list)
        for container, image in spec.containers:
            platforms[(spec.namespace, spec.ref, container)] = where_platforms
            for view in views:
                if not view.exists:
                    findings.append(
                        Finding(
                            Risk.SECRET_MISSING,
                            spec.namespace,
                            spec.ref,
                            container,
                            image,
                            f"pull secret {view.name} is referenced but does not exist: kubelet pulls without it",
                        )
                    )
                elif view.config is None or not view.config.parses:
                    problem = view.config.problem if view.config is not None else "it is not a docker config secret"
                    findings.append(
                        Finding(
                            Risk.SECRET_UNPARSABLE,
                            spec.namespace,
                            spec.ref,
                            container,
                            image,
                            f"pull secret {view.name}: {problem}",
                        )
                    )
            try:
                ref = imageref.parse(image)
            except imageref.InvalidImageReference:
                continue  # a pod of this template fails at once with InvalidImageName: an incident, not a forecast
            # kubelet merges the pod's secrets into one keyring and tries its matches most specific first
            readable = [(v.name, v.config) for v in views if v.config is not None and v.config.parses]
            match = next(((name, e) for name, e in lookup(readable, ref.name) if e.has_basic), None)
            creds: Credentials | None = entry_credentials(match[1]) if match else None
            source = next((v for v in views if match and v.name == match[0]), None)
            if creds is not None and source is not None:
                expiry = expiry_of(ref.registry, creds.username, creds.password, source.written)
                state = expiry.state(now, warn_before) if expiry else None
                if expiry is not None and state is not None:
                    risk = Risk.CREDENTIAL_EXPIRED if state == "expired" else Risk.CREDENTIAL_EXPIRING
                    when = expiry.at.strftime("%Y-%m-%d %H:%M UTC")
                    said = f"credentials for {ref.registry} {state} at {when} ({expiry.basis})"
                    if source.refresher and state == "expired" and source.written is not None:
                        # a secret its controller should keep fresh, yet expired: the refresher has stopped
                        since = source.written.strftime("%Y-%m-%d %H:%M UTC")
                        said += f"; {source.refresher} manages it but has not rewritten it since {since}"
                    findings.append(
                        Finding(
                            risk,
                            spec.namespace,
                            spec.ref,
                            container,
                            image,
                            f"pull secret {source.name}: {said}",
                        )
                    )
                    seen_expiry.add((spec.namespace, source.name, ref.registry))
            check = Check(ref, creds)
            check = checks.setdefault(check.key, check)
            check.platforms |= where_platforms
            check.dependents.append((spec, container, image))
    return Plan(findings, list(checks.values()), platforms)
