"""What the scan found: latent failures of workloads, and what a registry answer means for each workload (pure)."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from enum import StrEnum

from bot.model import ProbeOutcome, ProbeResult
from bot.prevention.workloads import WorkloadSpec


class Risk(StrEnum):
    """Why the next pod of a workload would fail to pull (or might)."""

    TAG_GONE = "tag_gone"  # the tag or digest no longer resolves
    REPO_GONE_OR_DENIED = "repo_gone_or_denied"  # the repository is missing, or these credentials may not read it
    CREDENTIALS_REJECTED = "credentials_rejected"  # the registry refuses the credentials kubelet would send
    NO_CREDENTIALS = "no_credentials"  # the registry wants credentials and kubelet would send none
    SECRET_MISSING = "secret_missing"  # a referenced pull secret does not exist
    SECRET_UNPARSABLE = "secret_unparsable"  # a referenced pull secret cannot be read as kubelet reads it
    CREDENTIAL_EXPIRED = "credential_expired"
    CREDENTIAL_EXPIRING = "credential_expiring"
    PLATFORM_MISSING = "platform_missing"  # a node the pod may land on has a platform the image does not offer
    QUOTA_LOW = "quota_low"  # the registry's pull quota is (nearly) spent
    DIGEST_CHANGED = "digest_changed"  # a mutable tag now names another image than the running pods pulled
    UNCHECKED = "unchecked"  # the registry could not be asked (timeout, DNS, TLS, 5xx): not a verdict


@dataclass(frozen=True, slots=True)
class Finding:
    risk: Risk
    namespace: str
    workload: str  # "deployment/api"
    container: str
    image: str
    detail: str  # evidence, never a credential
    fix: str = ""  # a command to paste, when one helps

    @property
    def key(self) -> str:
        """Stable identity across scans (a finding that persists is the same finding)."""
        return "|".join((self.risk.value, self.namespace, self.workload, self.container, self.image))


_QUOTA_RE = re.compile(r"^\s*(\d+)")


def quota_left(value: str | None) -> int | None:
    """The count of a `ratelimit-remaining` header (`"76;w=21600"` -> 76)."""
    match = _QUOTA_RE.match(value or "")
    return int(match.group(1)) if match else None


def _platform(p: str) -> str:
    """os/arch of "os/arch[/variant]"."""
    return "/".join(p.split("/")[:2])


def evaluate(
    probe: ProbeResult,
    dependents: tuple[tuple[WorkloadSpec, str, str], ...],
    platforms: dict[tuple[str, str, str], frozenset[str]],
    *,
    quota_floor: int = 20,
) -> list[Finding]:
    """Findings for each (workload, container, image) that depends on this probe. `platforms` gives, per
    (namespace, workload ref, container), the platforms of the nodes the workload may land on."""
    out: list[Finding] = []
    where = f"{probe.registry}/{probe.repository}"
    for spec, container, image in dependents:

        def found(
            risk: Risk, detail: str, fix: str = "", at: tuple[WorkloadSpec, str, str] = (spec, container, image)
        ) -> None:
            out.append(Finding(risk, at[0].namespace, at[0].ref, at[1], at[2], detail, fix))

        match probe.outcome:
            case ProbeOutcome.OK:
                needed = platforms.get((spec.namespace, spec.ref, container), frozenset())
                for risk, detail, fix in _ok_findings(probe, spec, container, needed):
                    found(risk, detail, fix)
                left = quota_left(probe.ratelimit_remaining)
                if left is not None and left < quota_floor:
                    found(
                        Risk.QUOTA_LOW, f"{probe.registry} reports {left} pulls left ({probe.ratelimit_limit or '?'})"
                    )
            case ProbeOutcome.MANIFEST_UNKNOWN:
                what = "digest" if probe.reference.startswith("sha256:") else "tag"
                near = f"; tags near it: {', '.join(probe.nearest_tags)}" if probe.nearest_tags else ""
                found(
                    Risk.TAG_GONE,
                    f"{where} has no {what} {probe.reference} now{near}",
                    _set_image_fix(spec, container, image),
                )
            case ProbeOutcome.NAME_UNKNOWN:
                found(Risk.REPO_GONE_OR_DENIED, f"{where}: the registry does not know this repository")
            case ProbeOutcome.FORBIDDEN:
                found(Risk.REPO_GONE_OR_DENIED, f"{where}: the registry refuses access (403){_cred_words(probe)}")
            case ProbeOutcome.UNAUTHORIZED if probe.used_credentials:
                found(Risk.CREDENTIALS_REJECTED, f"{where}: the registry rejects the pull secret's credentials (401)")
            case ProbeOutcome.UNAUTHORIZED:
                found(
                    Risk.NO_CREDENTIALS,
                    f"{where} wants credentials and no pull secret of a new pod has an entry for {probe.registry}",
                )
            case ProbeOutcome.RATE_LIMITED:
                found(Risk.QUOTA_LOW, f"{probe.registry} answers 429: the pull quota is spent now")
            case _:
                found(
                    Risk.UNCHECKED,
                    f"could not check {where}:{probe.reference}: {probe.outcome.value} {probe.detail}".strip(),
                )
    return out


def _cred_words(probe: ProbeResult) -> str:
    return " with the pull secret's credentials" if probe.used_credentials else " to anonymous requests"


def _ok_findings(
    probe: ProbeResult, spec: WorkloadSpec, container: str, needed: frozenset[str]
) -> list[tuple[Risk, str, str]]:
    """Platform and digest findings for a reference that resolves now."""
    out: list[tuple[Risk, str, str]] = []
    offered = {_platform(p) for p in probe.platforms}
    missing = sorted({_platform(p) for p in needed} - offered) if offered else []
    if missing:
        detail = f"nodes it may be scheduled on are {', '.join(missing)}; the image offers {', '.join(sorted(offered))}"
        out.append((Risk.PLATFORM_MISSING, detail, _pin_platform_fix(spec, sorted(offered))))
    pulled = spec.running_digests.get(container, frozenset())
    if probe.digest and pulled and not probe.reference.startswith("sha256:") and probe.digest not in pulled:
        was = ", ".join(sorted(d[:19] + "…" for d in pulled))
        detail = f"tag {probe.reference} now names {probe.digest[:19]}…; running pods pulled {was}"
        pinned = f"{probe.registry}/{probe.repository}@{sorted(pulled)[0]}"
        out.append((Risk.DIGEST_CHANGED, detail, _set_image_fix(spec, container, pinned)))
    return out


def _set_image_fix(spec: WorkloadSpec, container: str, image: str) -> str:
    if spec.kind == "Pod":
        return ""
    target = shlex.quote(f"{spec.kind.lower()}/{spec.name}")
    assignment = shlex.quote(f"{container}={image}")
    return f"kubectl -n {shlex.quote(spec.namespace)} set image {target} {assignment}"


def _pin_platform_fix(spec: WorkloadSpec, offered: list[str]) -> str:
    archs = sorted({p.split("/")[1] for p in offered if "/" in p})
    if spec.kind == "Pod" or len(archs) != 1:
        return ""
    patch = json.dumps({"spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/arch": archs[0]}}}}})
    target = shlex.quote(f"{spec.kind.lower()}/{spec.name}")
    return f"kubectl -n {shlex.quote(spec.namespace)} patch {target} --type=merge -p {shlex.quote(patch)}"
