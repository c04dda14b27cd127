"""Verifier: fold cluster and registry evidence into the final Diagnosis. Pure: no I/O, no client library.

The message alone gives a cause at confidence ~0.6. Evidence that confirms it raises the confidence
(~0.9 and more); evidence that contradicts it lowers the confidence and may change the cause: the
registry's NAME_UNKNOWN makes `repo_not_found`, the pod's secrets make `pull_secret_*`, an old ECR
token makes `token_expired`, a node under DiskPressure makes `node_disk_pressure`, a manifest that is
there now says the failure may have passed. Evidence lines are Slack mrkdwn: names from the cluster or
the registry are escaped and put in backticks; no secret value is ever read here (the types hold none).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import timedelta

from bot import imageref
from bot.diagnosis.catalogue import NO_RETRY_CAUSES, SECRET_CAUSES, info
from bot.diagnosis.fixes import fix_commands
from bot.model import (
    ActionKind,
    Cause,
    Classification,
    Diagnosis,
    Evidence,
    Facts,
    NodeInfo,
    PodInspection,
    ProbeOutcome,
    ProbeResult,
    PullFailure,
    SecretCheck,
)

MESSAGE_ONLY = 0.6
UNKNOWN_ONLY = 0.3
CONFIRMED = 0.9
STRONG = 0.95
DOUBTFUL = 0.4
ECR_TOKEN_LIFETIME = timedelta(hours=12)
ECR_HOST_RE = re.compile(r"^\d{12}\.dkr\.ecr(?:-fips)?\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?$")
TOKEN_EXPIRED_RE = re.compile(r"token (?:has |is )?expired|expired token|token .{0,40} expired", re.IGNORECASE)

NO_PROBE_CAUSES = frozenset(
    {Cause.INVALID_IMAGE_NAME, Cause.NEVER_PULL, Cause.DISK_FULL, Cause.NODE_DISK_PRESSURE, Cause.SIGNATURE_OR_POLICY}
)
AUTH_CAUSES = frozenset({Cause.AUTH_FAILED, Cause.REPO_NOT_FOUND_OR_NO_ACCESS})
REACHED = frozenset(
    {
        ProbeOutcome.OK,
        ProbeOutcome.UNAUTHORIZED,
        ProbeOutcome.FORBIDDEN,
        ProbeOutcome.MANIFEST_UNKNOWN,
        ProbeOutcome.NAME_UNKNOWN,
        ProbeOutcome.RATE_LIMITED,
        ProbeOutcome.SERVER_ERROR,
    }
)
_NAME_MAX = 120
_BIDI = re.compile("[\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069]")  # bidi controls (Trojan Source)


def code(name: object) -> str:
    """`name` as Slack mrkdwn code: no backticks or line breaks, `&`, `<`, `>` escaped, bounded length."""
    text = " ".join(_BIDI.sub("", str(name)).split()).replace("`", "'")
    if len(text) > _NAME_MAX:
        text = text[: _NAME_MAX - 1] + "…"
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"`{text}`"


def plain(text: str, limit: int = 200) -> str:
    """Untrusted text (a registry's message) made safe for mrkdwn outside code spans."""
    text = " ".join(_BIDI.sub("", text).split()).replace("`", "'")[:limit]
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def probe_target(failure: PullFailure, classification: Classification) -> imageref.ImageRef | None:
    """What to probe in the registry, or None when probing cannot help."""
    if classification.cause in NO_PROBE_CAUSES:
        return None
    ref = imageref.try_parse(failure.image)
    if ref is not None:
        return ref
    facts = classification.facts
    if facts.registry and facts.repository:
        reference = facts.reference
        if reference and ":" in reference:
            return imageref.ImageRef(facts.registry, facts.repository, digest=reference)
        return imageref.ImageRef(facts.registry, facts.repository, tag=reference)
    return None


@dataclass(slots=True)
class _Verdict:
    """The cause and confidence as evidence is folded in, with the lines the user sees."""

    cause: Cause
    confidence: float
    evidence: list[Evidence] = field(default_factory=list)
    credentials_work: bool = False  # the token endpoint accepted the pod's credentials
    ambiguous_refusal: bool = False  # an anonymous refusal that cannot tell a missing repository from a private one
    pullable_now: bool = False  # the registry serves the image to the bot as the kubelet would ask for it

    def add(self, text: str, source: str, ok: bool | None = None) -> None:
        self.evidence.append(Evidence(text, source, ok))

    def change(self, cause: Cause, confidence: float) -> None:
        self.cause, self.confidence = cause, confidence


def verify(
    failure: PullFailure,
    classification: Classification,
    inspection: PodInspection | None,
    probe: ProbeResult | None,
) -> Diagnosis:
    """The final diagnosis with its confidence, evidence and fixes."""
    message_cause = classification.cause
    verdict = _Verdict(message_cause, UNKNOWN_ONLY if message_cause is Cause.OTHER else MESSAGE_ONLY)
    verdict.add(f"the pull error reads as: {info(message_cause).title.lower()}", "message")
    ref = probe_target(failure, classification) or imageref.try_parse(failure.image)
    facts = _facts(classification.facts, ref)
    registry = ref.registry if ref is not None else facts.registry

    if message_cause is Cause.INVALID_IMAGE_NAME and failure.waiting_reason == "InvalidImageName":
        verdict.add("the kubelet itself refused the image name (waiting reason InvalidImageName)", "cluster", False)
        verdict.confidence = 0.98
    elif message_cause is Cause.NEVER_PULL and failure.waiting_reason == "ErrImageNeverPull":
        verdict.add("the kubelet itself reports ErrImageNeverPull: the image is not on the node", "cluster", False)
        verdict.confidence = 0.98
    if inspection is not None:
        _node(verdict, inspection.node)
        if not inspection.exists:
            verdict.add(f"pod {code(inspection.pod)} no longer exists", "cluster")
    if probe is not None:
        _probe(verdict, probe, facts, inspection)
    if inspection is not None:
        _secrets(verdict, failure, classification, inspection, probe, registry)
        _unchecked(verdict, inspection)
    elif TOKEN_EXPIRED_RE.search(classification.raw) and verdict.cause in AUTH_CAUSES:
        verdict.add("the message says the registry token has expired", "message", False)
        verdict.change(Cause.TOKEN_EXPIRED, 0.85)

    cause = verdict.cause
    summary = classification.sentence if cause is message_cause else info(cause).explanation
    return Diagnosis(
        cause=cause,
        summary=summary,
        confidence=round(min(max(verdict.confidence, 0.05), 0.99), 2),
        facts=facts,
        evidence=tuple(verdict.evidence),
        fixes=fix_commands(
            cause,
            failure,
            inspection,
            facts,
            probe=probe,
            pullable_now=verdict.pullable_now,
            credentials_work=verdict.credentials_work,
        ),
        actions=actions_for(cause, inspection),
        raw_message=classification.raw,
        message_cause=message_cause,
    )


def actions_for(cause: Cause, inspection: PodInspection | None) -> tuple[ActionKind, ...]:
    """Buttons for the final cause: rediagnose and snooze always, the others only where they can help."""
    out = [ActionKind.REDIAGNOSE]
    if inspection is not None and inspection.controlled and inspection.exists and cause not in NO_RETRY_CAUSES:
        out.append(ActionKind.DELETE_POD)
    if cause in SECRET_CAUSES:
        out.append(ActionKind.RECREATE_SECRET)
    if cause is Cause.PULL_SECRET_NOT_LINKED and inspection is not None and _linkable(inspection):
        out.append(ActionKind.LINK_SECRET)
    out.append(ActionKind.SNOOZE)
    return tuple(out)


def _linkable(inspection: PodInspection) -> list[SecretCheck]:
    """Secrets of the namespace (found by the inspector, referenced by neither pod nor SA) that fit the image."""
    return [
        s for s in inspection.secrets if s.referenced_by == "namespace" and s.exists and s.parses and s.matches_image
    ]


def _facts(facts: Facts, ref: imageref.ImageRef | None) -> Facts:
    if ref is None:
        return facts
    return replace(
        facts,
        registry=facts.registry or ref.registry,
        repository=facts.repository or ref.repository,
        reference=facts.reference or ref.reference,
    )


# ---- node ----


def _node(verdict: _Verdict, node: NodeInfo | None) -> None:
    if node is None:
        return
    if node.disk_pressure:
        verdict.add(f"node {code(node.name)} reports DiskPressure", "cluster", False)
        if verdict.cause is Cause.DISK_FULL:
            verdict.change(Cause.NODE_DISK_PRESSURE, STRONG)
    elif verdict.cause is Cause.DISK_FULL:
        verdict.add(f"node {code(node.name)} reports no DiskPressure now", "cluster", True)
        verdict.confidence = 0.55


def _node_platform(node: NodeInfo | None, facts: Facts) -> str | None:
    if node is not None and node.architecture:
        return f"{node.os or 'linux'}/{node.architecture}"
    return facts.platform


# ---- registry ----


def _probe(verdict: _Verdict, probe: ProbeResult, facts: Facts, inspection: PodInspection | None) -> None:
    outcome = probe.outcome
    if outcome is ProbeOutcome.SKIPPED:
        verdict.add("the registry was not probed (probing is off for it)", "registry")
        return
    _rate_limit_line(verdict, probe)
    where = code(probe.registry)
    cause = verdict.cause
    if outcome is ProbeOutcome.NAME_UNKNOWN:
        verdict.add(f"repository {code(probe.repository)} does not exist in {where}", "registry", False)
        verdict.change(Cause.REPO_NOT_FOUND, STRONG if cause in (*AUTH_CAUSES, Cause.TAG_NOT_FOUND) else 0.85)
        if probe.nearest_repositories:
            near = ", ".join(code(r) for r in probe.nearest_repositories)
            verdict.add(f"repositories with a near name: {near}", "registry")
    elif outcome is ProbeOutcome.MANIFEST_UNKNOWN:
        _manifest_unknown(verdict, probe)
    elif outcome is ProbeOutcome.OK:
        _manifest_ok(verdict, probe, facts, inspection)
    elif outcome in (ProbeOutcome.UNAUTHORIZED, ProbeOutcome.FORBIDDEN):
        _refused(verdict, probe)
    elif outcome is ProbeOutcome.RATE_LIMITED:
        verdict.add(f"{where} answers 429 Too Many Requests to the bot too", "registry", False)
        verdict.change(Cause.RATE_LIMITED, STRONG if cause is Cause.RATE_LIMITED else 0.8)
    elif outcome is ProbeOutcome.SERVER_ERROR:
        verdict.add(f"{where} answers HTTP {probe.http_status or '5xx'} to the bot too", "registry", False)
        verdict.change(Cause.REGISTRY_SERVER_ERROR, CONFIRMED if cause is Cause.REGISTRY_SERVER_ERROR else 0.75)
    elif outcome in (ProbeOutcome.DNS, ProbeOutcome.REFUSED, ProbeOutcome.TIMEOUT, ProbeOutcome.TLS):
        _unreachable(verdict, probe)
    else:
        verdict.add(f"the registry probe failed: {plain(probe.detail) or 'no detail'}", "registry")
    if outcome in REACHED and verdict.cause in (Cause.DNS_FAILURE, Cause.NETWORK_TIMEOUT, Cause.TLS_CERT):
        verdict.add(
            f"the bot reaches {where}: the node's DNS, network path, proxy or trust store may differ", "registry", True
        )
        verdict.confidence = 0.5


def _rate_limit_line(verdict: _Verdict, probe: ProbeResult) -> None:
    remaining, limit = _count(probe.ratelimit_remaining), _count(probe.ratelimit_limit)
    if remaining is None or limit is None:
        return
    name = "Docker Hub rate limit" if probe.registry == imageref.DOCKER_HUB else "registry rate limit"
    verdict.add(f"{name}: {remaining} of {limit} pulls left", "registry", remaining > 0)


def _count(header: str | None) -> int | None:
    if not header:
        return None
    m = re.match(r"\s*(\d+)", header)
    return int(m.group(1)) if m else None


def _manifest_unknown(verdict: _Verdict, probe: ProbeResult) -> None:
    reference = probe.reference
    if reference.startswith("sha") and ":" in reference:
        what = f"digest {code(reference[:19] + '…')} is not in repository {code(probe.repository)}"
    elif probe.nearest_tags:
        nearest = ", ".join(code(t) for t in probe.nearest_tags)
        what = f"tag {code(reference)} is not in the registry; nearest tags: {nearest}"
    elif probe.tags_sample_size:
        what = f"tag {code(reference)} is not in the registry; none of its {probe.tags_sample_size} tags is near"
    else:
        what = f"tag {code(reference)} is not in the registry"
    verdict.add(what, "registry", False)
    cause = verdict.cause
    if cause is Cause.TAG_NOT_FOUND:
        verdict.confidence = STRONG
    elif cause in AUTH_CAUSES:
        if probe.tags_sample_size:
            verdict.change(Cause.TAG_NOT_FOUND, CONFIRMED)
        elif probe.used_credentials:
            verdict.add("with the pod's credentials the registry answers 404 for it", "registry", False)
            verdict.change(Cause.REPO_NOT_FOUND, 0.85)
        else:
            verdict.change(Cause.TAG_NOT_FOUND, 0.75)
    elif cause is Cause.OTHER:
        verdict.change(Cause.TAG_NOT_FOUND, 0.7)


def _manifest_ok(verdict: _Verdict, probe: ProbeResult, facts: Facts, inspection: PodInspection | None) -> None:
    node_platform = _node_platform(inspection.node if inspection else None, facts)
    cause = verdict.cause
    if probe.platforms and node_platform:
        offered = ", ".join(probe.platforms)
        if not _platform_offered(node_platform, probe.platforms):
            node_os = node_platform.split("/", 1)[0]
            kind = "OS" if all(p.split("/", 1)[0] != node_os for p in probe.platforms) else "architecture"
            only = " only" if len(probe.platforms) == 1 else ""
            verdict.add(
                f"node is {code(node_platform)}; the image offers {code(offered)}{only} ({kind} mismatch)",
                "registry",
                False,
            )
            if cause in (Cause.PLATFORM_MISMATCH, Cause.OTHER):
                verdict.change(Cause.PLATFORM_MISMATCH, STRONG if cause is Cause.PLATFORM_MISMATCH else 0.8)
            return
        verdict.add(f"the image offers {code(node_platform)} (all: {code(offered)})", "registry", True)
        verdict.pullable_now = True
    if cause is Cause.PLATFORM_MISMATCH and not probe.platforms:
        verdict.add("could not check the image's platform: it is a single-platform manifest", "registry")
        return
    if not probe.platforms or node_platform is None:
        verdict.pullable_now = True
    if cause in (Cause.TAG_NOT_FOUND, Cause.PLATFORM_MISMATCH, *AUTH_CAUSES, Cause.REGISTRY_SERVER_ERROR):
        how = " with the pod's credentials" if probe.used_credentials else ""
        verdict.add(
            f"the registry serves {code(probe.repository + _ref_suffix(probe.reference))}{how} now: the failure may"
            " have been transient or already fixed",
            "registry",
            True,
        )
        verdict.confidence = DOUBTFUL
    elif cause is Cause.RATE_LIMITED:
        remaining = _count(probe.ratelimit_remaining)
        if remaining is not None and remaining > 0:
            verdict.add("the bot is not rate-limited now (limits count per client IP)", "registry", True)
            verdict.confidence = 0.5


def _platform_offered(node_platform: str, offered: tuple[str, ...]) -> bool:
    """Whether an index entry fits the node: same OS and architecture (a variant on either side is not required)."""
    want = node_platform.split("/")[:2]
    return any(p.split("/")[:2] == want for p in offered)


def _ref_suffix(reference: str) -> str:
    return f"@{reference[:19]}…" if ":" in reference else f":{reference}"


def _refused(verdict: _Verdict, probe: ProbeResult) -> None:
    status = probe.http_status or (401 if probe.outcome is ProbeOutcome.UNAUTHORIZED else 403)
    scope = " insufficient_scope" if probe.auth_error == "insufficient_scope" else ""
    cause = verdict.cause
    if probe.token_status == 200 and probe.token_with_credentials:
        # The token endpoint judged the credentials and accepted them: they are not the problem.
        verdict.credentials_work = True
        verdict.add(
            "the registry's token endpoint accepts the pod's pull-secret credentials (HTTP 200)", "registry", True
        )
        verdict.add(
            f"with that token the manifest request gets HTTP {status}{scope}: the repository does not exist,"
            " or this account may not pull it",
            "registry",
            False,
        )
        if probe.nearest_repositories:
            _near_repositories(verdict, probe)
            return
        if cause in (*AUTH_CAUSES, Cause.OTHER, Cause.TAG_NOT_FOUND):
            verdict.change(Cause.REPO_NOT_FOUND_OR_NO_ACCESS, 0.8)
        return
    if not probe.used_credentials and probe.token_status == 200:
        # Docker Hub and others give an anonymous token for any scope, then refuse a repository that does not
        # exist exactly as they refuse a private one.
        verdict.ambiguous_refusal = True
        verdict.add(
            f"an anonymous request gets HTTP {status}{scope}: the registry answers so for a repository that does not"
            " exist and for a private one alike",
            "registry",
            False,
        )
        if probe.nearest_repositories:
            _near_repositories(verdict, probe)
            return
        if probe.repositories_checked:
            verdict.add("no existing repository with a near name was found", "registry")
        if cause in (*AUTH_CAUSES, Cause.OTHER):
            verdict.change(Cause.REPO_NOT_FOUND_OR_NO_ACCESS, 0.5)
        return
    who = "the pod's pull-secret credentials" if probe.used_credentials else "an anonymous request"
    verdict.add(f"the registry refuses {who} with HTTP {status}{scope}", "registry", False)
    if probe.nearest_repositories:
        _near_repositories(verdict, probe)
        return
    if cause in AUTH_CAUSES:
        verdict.confidence = 0.75
    elif cause in (Cause.TAG_NOT_FOUND, Cause.PLATFORM_MISMATCH):
        verdict.add("could not check the image itself: the registry refused the bot", "registry")
    elif cause is Cause.OTHER:
        verdict.change(Cause.AUTH_FAILED, 0.6)


def _near_repositories(verdict: _Verdict, probe: ProbeResult) -> None:
    near = ", ".join(code(r) for r in probe.nearest_repositories)
    verdict.add(f"repository {code(probe.repository)} is probably misspelt: the registry has {near}", "registry", False)
    verdict.change(Cause.REPO_NOT_FOUND, 0.85)


def _unreachable(verdict: _Verdict, probe: ProbeResult) -> None:
    where = code(probe.registry)
    detail = plain(probe.detail)
    matches = {
        ProbeOutcome.DNS: (Cause.DNS_FAILURE, f"the bot cannot resolve {where} either"),
        ProbeOutcome.REFUSED: (Cause.NETWORK_TIMEOUT, f"{where} refuses the bot's connection too"),
        ProbeOutcome.TIMEOUT: (Cause.NETWORK_TIMEOUT, f"{where} does not answer the bot either (timeout)"),
        ProbeOutcome.TLS: (Cause.TLS_CERT, f"the bot does not accept the TLS of {where} either: {detail}"),
    }
    expected, text = matches[probe.outcome]
    verdict.add(text, "registry", False)
    if verdict.cause is expected:
        verdict.confidence = CONFIRMED
    elif verdict.cause is Cause.OTHER:
        verdict.change(expected, 0.65)


# ---- pull secrets ----


_UNREAD_PREFIXES = ("cannot read", "not inspected")


def _unread(secret: SecretCheck) -> bool:
    return secret.exists and secret.problem is not None and secret.problem.startswith(_UNREAD_PREFIXES)


def _unchecked(verdict: _Verdict, inspection: PodInspection) -> None:
    """Reads that failed: said as "could not check", never as fine, and the confidence drops."""
    secret_related = verdict.cause in SECRET_CAUSES or verdict.cause is Cause.PULL_SECRET_NOT_LINKED
    for what in inspection.unchecked:
        if what.startswith("the namespace's other") and not secret_related:
            continue  # other pull secrets matter only when credentials are the question
        verdict.add(f"could not check {plain(what, 160)}", "cluster")
    if any(not u.startswith("the namespace's other") for u in inspection.unchecked):
        verdict.confidence = max(verdict.confidence - 0.1, 0.2)


def _secrets(
    verdict: _Verdict,
    failure: PullFailure,
    classification: Classification,
    inspection: PodInspection,
    probe: ProbeResult | None,
    registry: str | None,
) -> None:
    # The kubelet sends only pod.spec.imagePullSecrets; the ServiceAccount's are copied into a pod at creation.
    sent = [s for s in inspection.secrets if s.referenced_by == "pod"]
    on_sa = [s for s in inspection.secrets if s.referenced_by == "serviceaccount"]
    unread = [s for s in sent if _unread(s)]
    missing = [s for s in sent if not s.exists]
    present = [s for s in sent if s.exists and not _unread(s)]
    matching = [s for s in present if s.parses and s.matches_image]
    probe_refused = probe is not None and probe.outcome in (ProbeOutcome.UNAUTHORIZED, ProbeOutcome.FORBIDDEN)
    needs_auth = verdict.cause in AUTH_CAUSES or probe_refused or verdict.cause is Cause.PULL_SECRET_MISSING
    for s in unread:
        verdict.add(f"could not check secret {code(s.name)}: {plain(s.problem or '', 80)}", "cluster")
        verdict.confidence = max(verdict.confidence - 0.15, 0.2)

    if verdict.cause is Cause.PULL_SECRET_MISSING:
        if missing:
            names = ", ".join(code(s.name) for s in missing)
            verdict.add(f"secret {names} does not exist in namespace {code(inspection.namespace)}", "cluster", False)
            verdict.confidence = STRONG if not matching else 0.7
        elif not unread:
            verdict.add("every pull secret the pod refers to exists now", "cluster", True)
            verdict.confidence = DOUBTFUL
        return
    if not needs_auth or verdict.cause in (Cause.REPO_NOT_FOUND, Cause.TAG_NOT_FOUND):
        return
    host = code(registry or "the registry")
    if matching:
        _matching_secret(verdict, failure, classification, matching[0], probe, registry)
        return
    if verdict.credentials_work:
        return
    if missing:
        names = ", ".join(code(s.name) for s in missing)
        verdict.add(f"secret {names} does not exist in namespace {code(inspection.namespace)}", "cluster", False)
        verdict.change(Cause.PULL_SECRET_MISSING, STRONG if probe_refused else CONFIRMED)
        return
    malformed = [s for s in present if not s.parses]
    if malformed:
        bad = malformed[0]
        why = f": {plain(bad.problem, 120)}" if bad.problem else ""
        verdict.add(f"secret {code(bad.name)} is not a readable Docker config{why}", "cluster", False)
        verdict.change(Cause.PULL_SECRET_MALFORMED, CONFIRMED)
        return
    if present:
        for s in present:
            has = ", ".join(code(r) for r in s.registries) or "no registry"
            verdict.add(
                f"secret {code(s.name)} has no entry the kubelet would send for {host} (it has {has})", "cluster", False
            )
        verdict.change(
            Cause.PULL_SECRET_WRONG_REGISTRY, CONFIRMED if probe_refused or verdict.cause in AUTH_CAUSES else 0.7
        )
        return
    if unread:
        return
    sa = code(inspection.service_account or "default")
    sa_matching = [s for s in on_sa if s.exists and s.parses and s.matches_image]
    if sa_matching:
        s0 = sa_matching[0]
        verdict.add(
            f"ServiceAccount {sa} lists secret {code(s0.name)} for {host}, but pod {code(inspection.pod)} was created"
            " without it: the kubelet sends only the pod's own imagePullSecrets; a new pod gets it",
            "cluster",
            False,
        )
        verdict.change(Cause.PULL_SECRET_NOT_LINKED, CONFIRMED if probe_refused else 0.8)
        return
    verdict.add(f"pod {code(inspection.pod)} has no imagePullSecret the kubelet could send", "cluster", False)
    linkable = _linkable(inspection)
    if verdict.ambiguous_refusal and not linkable:
        return
    if probe_refused or verdict.cause in AUTH_CAUSES:
        # Nodes may hold credentials of their own (a kubelet credential provider): not certain.
        confident = probe_refused and not verdict.ambiguous_refusal
        verdict.change(Cause.PULL_SECRET_NOT_LINKED, CONFIRMED if confident else 0.7)
        for s in linkable:
            verdict.add(f"secret {code(s.name)} in the namespace has credentials for {host}", "cluster", True)


def _matching_secret(
    verdict: _Verdict,
    failure: PullFailure,
    classification: Classification,
    secret: SecretCheck,
    probe: ProbeResult | None,
    registry: str | None,
) -> None:
    verdict.add(
        f"secret {code(secret.name)} has the entry the kubelet sends for {code(registry or '?')}", "cluster", True
    )
    said_expired = TOKEN_EXPIRED_RE.search(classification.raw) is not None
    age = failure.observed_at - secret.created_at if failure.observed_at and secret.created_at else None
    ecr_old = registry is not None and ECR_HOST_RE.match(registry) is not None and age is not None
    ecr_old = ecr_old and age is not None and age > ECR_TOKEN_LIFETIME
    probe_refused_creds = (
        probe is not None
        and probe.used_credentials
        and probe.outcome in (ProbeOutcome.UNAUTHORIZED, ProbeOutcome.FORBIDDEN)
    )
    if ecr_old and age is not None:
        hours = int(age.total_seconds() // 3600)
        verdict.add(f"secret {code(secret.name)} was made {hours} h ago; ECR tokens last 12 h", "cluster", False)
    if said_expired:
        verdict.add("the message says the registry token has expired", "message", False)
    if ecr_old or said_expired:
        verdict.change(Cause.TOKEN_EXPIRED, STRONG if probe_refused_creds or (ecr_old and said_expired) else CONFIRMED)
        return
    if probe_refused_creds and not verdict.credentials_work:
        verdict.change(Cause.AUTH_FAILED, CONFIRMED)
