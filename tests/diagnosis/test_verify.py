"""Verifier (pure): message cause + cluster inspection + registry probe -> final diagnosis."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest

from bot.diagnosis.fixes import fix_commands
from bot.diagnosis.verify import actions_for, code, probe_target, verify
from bot.imageref import ImageRef
from bot.model import (
    ActionKind,
    Cause,
    Classification,
    Facts,
    NodeInfo,
    PodInspection,
    ProbeOutcome,
    ProbeResult,
    PullFailure,
    SecretCheck,
    WorkloadRef,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


def failure(image: str = "ghcr.io/team/app:v1.2.3", message: str = "pull failed") -> PullFailure:
    return PullFailure(
        cluster="prod",
        namespace="shop",
        pod="web-7d4b9-x2x",
        pod_uid="uid-1",
        container="web",
        container_kind="container",
        image=image,
        waiting_reason="ErrImagePull",
        message=message,
        workload=WorkloadRef("Deployment", "web"),
        node="node-1",
        event_reason="Failed",
        observed_at=NOW,
    )


def classification(cause: Cause, raw: str = "pull failed") -> Classification:
    return Classification(cause, Facts(), f"message says {cause.value}", raw)


def secret(
    name: str = "regcred",
    *,
    exists: bool = True,
    parses: bool = True,
    registries: tuple[str, ...] = ("ghcr.io",),
    matches: bool = True,
    by: str = "pod",
    age_h: float = 1,
    problem: str | None = None,
) -> SecretCheck:
    return SecretCheck(
        name=name,
        referenced_by=by,
        exists=exists,
        type="kubernetes.io/dockerconfigjson" if exists else None,
        parses=parses and exists,
        registries=registries if exists and parses else (),
        matches_image=matches and exists and parses,
        problem=problem,
        created_at=NOW - timedelta(hours=age_h) if exists else None,
        fingerprint="abc123" if matches else None,
    )


def inspection(
    *secrets: SecretCheck, arch: str = "amd64", disk_pressure: bool = False, controlled: bool = True
) -> PodInspection:
    return PodInspection(
        namespace="shop",
        pod="web-7d4b9-x2x",
        service_account="web-sa",
        controlled=controlled,
        owner_chain=(WorkloadRef("ReplicaSet", "web-7d4b9"), WorkloadRef("Deployment", "web")),
        secrets=secrets,
        node=NodeInfo("node-1", architecture=arch, os="linux", disk_pressure=disk_pressure),
    )


def probe(outcome: ProbeOutcome, registry: str = "ghcr.io", reference: str = "v1.2.3", **kw: object) -> ProbeResult:
    status = {
        ProbeOutcome.OK: 200,
        ProbeOutcome.UNAUTHORIZED: 401,
        ProbeOutcome.FORBIDDEN: 403,
        ProbeOutcome.MANIFEST_UNKNOWN: 404,
        ProbeOutcome.NAME_UNKNOWN: 404,
        ProbeOutcome.RATE_LIMITED: 429,
        ProbeOutcome.SERVER_ERROR: 503,
    }.get(outcome)
    return ProbeResult(registry, "team/app", reference, outcome, http_status=status, **kw)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Case:
    name: str
    message_cause: Cause
    expected: Cause
    low: float
    high: float
    inspection: PodInspection | None = None
    probe: ProbeResult | None = None
    image: str = "ghcr.io/team/app:v1.2.3"
    raw: str = "pull failed"
    says: tuple[str, ...] = field(default=())


CASES = [
    Case(
        "tag missing, confirmed with nearest tags",
        Cause.TAG_NOT_FOUND,
        Cause.TAG_NOT_FOUND,
        0.9,
        1.0,
        probe=probe(ProbeOutcome.MANIFEST_UNKNOWN, nearest_tags=("1.2.3", "1.2.2"), tags_sample_size=9),
        says=("tag `v1.2.3` is not in the registry; nearest tags: `1.2.3`, `1.2.2`",),
    ),
    Case(
        "tag said missing but the registry serves it now",
        Cause.TAG_NOT_FOUND,
        Cause.TAG_NOT_FOUND,
        0.0,
        0.5,
        probe=probe(ProbeOutcome.OK),
        says=("may have been transient or already fixed",),
    ),
    Case(
        "message only",
        Cause.TAG_NOT_FOUND,
        Cause.TAG_NOT_FOUND,
        0.55,
        0.65,
    ),
    Case(
        "repository missing: NAME_UNKNOWN",
        Cause.REPO_NOT_FOUND_OR_NO_ACCESS,
        Cause.REPO_NOT_FOUND,
        0.9,
        1.0,
        probe=probe(ProbeOutcome.NAME_UNKNOWN),
        says=("repository `team/app` does not exist in `ghcr.io`",),
    ),
    Case(
        "repository missing: 404 with the pod's valid credentials",
        Cause.REPO_NOT_FOUND_OR_NO_ACCESS,
        Cause.REPO_NOT_FOUND,
        0.8,
        1.0,
        inspection=inspection(secret()),
        probe=probe(ProbeOutcome.MANIFEST_UNKNOWN, used_credentials=True),
        says=("with the pod's credentials the registry answers 404",),
    ),
    Case(
        "no access: tags listed, so only the tag is missing",
        Cause.REPO_NOT_FOUND_OR_NO_ACCESS,
        Cause.TAG_NOT_FOUND,
        0.85,
        1.0,
        probe=probe(ProbeOutcome.MANIFEST_UNKNOWN, used_credentials=True, tags_sample_size=3, nearest_tags=("1.2.3",)),
    ),
    Case(
        "auth failed: the registry refuses the pod's credentials",
        Cause.REPO_NOT_FOUND_OR_NO_ACCESS,
        Cause.AUTH_FAILED,
        0.85,
        1.0,
        inspection=inspection(secret()),
        probe=probe(ProbeOutcome.UNAUTHORIZED, used_credentials=True),
        says=(
            "the registry refuses the pod's pull-secret credentials with HTTP 401",
            "secret `regcred` has the entry the kubelet sends",
        ),
    ),
    Case(
        "pull secret missing",
        Cause.AUTH_FAILED,
        Cause.PULL_SECRET_MISSING,
        0.9,
        1.0,
        inspection=inspection(secret(exists=False)),
        probe=probe(ProbeOutcome.UNAUTHORIZED),
        says=("secret `regcred` does not exist in namespace `shop`",),
    ),
    Case(
        "pull secret missing, said by kubelet and confirmed",
        Cause.PULL_SECRET_MISSING,
        Cause.PULL_SECRET_MISSING,
        0.9,
        1.0,
        inspection=inspection(secret(exists=False)),
        says=("secret `regcred` does not exist",),
    ),
    Case(
        "pull secret said missing but exists now",
        Cause.PULL_SECRET_MISSING,
        Cause.PULL_SECRET_MISSING,
        0.0,
        0.5,
        inspection=inspection(secret()),
        says=("exists now",),
    ),
    Case(
        "pull secret not linked",
        Cause.AUTH_FAILED,
        Cause.PULL_SECRET_NOT_LINKED,
        0.85,
        1.0,
        inspection=inspection(),
        probe=probe(ProbeOutcome.UNAUTHORIZED),
        says=("pod `web-7d4b9-x2x` has no imagePullSecret the kubelet could send",),
    ),
    Case(
        "pull secret for another registry",
        Cause.REPO_NOT_FOUND_OR_NO_ACCESS,
        Cause.PULL_SECRET_WRONG_REGISTRY,
        0.85,
        1.0,
        inspection=inspection(secret(registries=("docker.io",), matches=False)),
        probe=probe(ProbeOutcome.UNAUTHORIZED),
        says=("secret `regcred` has no entry the kubelet would send for `ghcr.io` (it has `docker.io`)",),
    ),
    Case(
        "pull secret malformed",
        Cause.AUTH_FAILED,
        Cause.PULL_SECRET_MALFORMED,
        0.85,
        1.0,
        inspection=inspection(secret(parses=False, problem="`.dockerconfigjson` is not valid JSON")),
        says=("secret `regcred` is not a readable Docker config: '.dockerconfigjson' is not valid JSON",),
    ),
    Case(
        "ECR token older than 12 h",
        Cause.AUTH_FAILED,
        Cause.TOKEN_EXPIRED,
        0.9,
        1.0,
        image=f"{ECR}/team/app:1.0",
        inspection=inspection(secret(registries=(ECR,), age_h=14)),
        probe=probe(ProbeOutcome.UNAUTHORIZED, registry=ECR, reference="1.0", used_credentials=True),
        says=("secret `regcred` was made 14 h ago; ECR tokens last 12 h",),
    ),
    Case(
        "ECR token fresh: plain auth failure",
        Cause.AUTH_FAILED,
        Cause.AUTH_FAILED,
        0.85,
        1.0,
        image=f"{ECR}/team/app:1.0",
        inspection=inspection(secret(registries=(ECR,), age_h=2)),
        probe=probe(ProbeOutcome.UNAUTHORIZED, registry=ECR, reference="1.0", used_credentials=True),
    ),
    Case(
        "the message says the token expired",
        Cause.AUTH_FAILED,
        Cause.TOKEN_EXPIRED,
        0.85,
        1.0,
        raw="pulling from host x failed: 403 Forbidden: Your authorization token has expired. Reauthenticate",
        inspection=inspection(secret()),
        says=("the message says the registry token has expired",),
    ),
    Case(
        "disk full on a node under DiskPressure",
        Cause.DISK_FULL,
        Cause.NODE_DISK_PRESSURE,
        0.9,
        1.0,
        inspection=inspection(disk_pressure=True),
        says=("node `node-1` reports DiskPressure",),
    ),
    Case(
        "disk full, node fine now",
        Cause.DISK_FULL,
        Cause.DISK_FULL,
        0.5,
        0.6,
        inspection=inspection(),
    ),
    Case(
        "platform mismatch confirmed",
        Cause.PLATFORM_MISMATCH,
        Cause.PLATFORM_MISMATCH,
        0.9,
        1.0,
        inspection=inspection(arch="arm64"),
        probe=probe(ProbeOutcome.OK, platforms=("linux/amd64",)),
        says=("node is `linux/arm64`; the image offers `linux/amd64` only (architecture mismatch)",),
    ),
    Case(
        "Docker Hub rate limit",
        Cause.RATE_LIMITED,
        Cause.RATE_LIMITED,
        0.9,
        1.0,
        image="nginx:1.27",
        probe=probe(
            ProbeOutcome.RATE_LIMITED,
            registry="docker.io",
            reference="1.27",
            ratelimit_limit="100;w=21600",
            ratelimit_remaining="0;w=21600",
        ),
        says=("Docker Hub rate limit: 0 of 100 pulls left",),
    ),
    Case(
        "DNS failure confirmed",
        Cause.DNS_FAILURE,
        Cause.DNS_FAILURE,
        0.85,
        1.0,
        probe=probe(ProbeOutcome.DNS, detail="the registry host name does not resolve"),
        says=("the bot cannot resolve `ghcr.io` either",),
    ),
    Case(
        "DNS failure on the node, but the bot reaches the registry",
        Cause.DNS_FAILURE,
        Cause.DNS_FAILURE,
        0.4,
        0.6,
        probe=probe(ProbeOutcome.OK),
        says=("the node's DNS, network path, proxy or trust store may differ",),
    ),
    Case(
        "TLS confirmed",
        Cause.TLS_CERT,
        Cause.TLS_CERT,
        0.85,
        1.0,
        probe=probe(ProbeOutcome.TLS, detail="certificate not trusted: self-signed certificate"),
    ),
    Case(
        "server error confirmed",
        Cause.REGISTRY_SERVER_ERROR,
        Cause.REGISTRY_SERVER_ERROR,
        0.85,
        1.0,
        probe=probe(ProbeOutcome.SERVER_ERROR),
        says=("answers HTTP 503 to the bot too",),
    ),
    Case(
        "unknown message, registry says the repository is gone",
        Cause.OTHER,
        Cause.REPO_NOT_FOUND,
        0.7,
        0.9,
        probe=probe(ProbeOutcome.NAME_UNKNOWN),
    ),
    Case(
        "probing switched off",
        Cause.AUTH_FAILED,
        Cause.AUTH_FAILED,
        0.55,
        0.65,
        probe=probe(ProbeOutcome.SKIPPED),
        says=("not probed",),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_verify(case: Case) -> None:
    """Each refined cause, its confidence band and the evidence line the user sees."""
    f = failure(case.image)
    c = classification(case.message_cause, case.raw)
    diagnosis = verify(f, c, case.inspection, case.probe)
    texts = [e.text for e in diagnosis.evidence]
    assert diagnosis.cause == case.expected, texts
    assert case.low <= diagnosis.confidence <= case.high, (diagnosis.confidence, texts)
    assert diagnosis.message_cause == case.message_cause
    for needle in case.says:
        assert any(needle in t for t in texts), (needle, texts)
    if case.probe is None:
        assert diagnosis.fixes == fix_commands(diagnosis.cause, f, case.inspection, diagnosis.facts)
    else:
        assert diagnosis.fixes[:2] == fix_commands(diagnosis.cause, f, case.inspection, diagnosis.facts)[:2]
    assert diagnosis.actions[0] == ActionKind.REDIAGNOSE
    assert ActionKind.SNOOZE in diagnosis.actions
    if diagnosis.cause != case.message_cause:
        assert diagnosis.summary != c.sentence


def test_link_secret_offered_only_with_a_suitable_secret() -> None:
    """LINK_SECRET appears for pull_secret_not_linked when the namespace holds a secret for the registry."""
    f, c = failure(), classification(Cause.AUTH_FAILED)
    spare = secret("ghcr-robot", by="namespace")
    with_spare = verify(f, c, inspection(spare), probe(ProbeOutcome.UNAUTHORIZED))
    without = verify(f, c, inspection(), probe(ProbeOutcome.UNAUTHORIZED))
    assert with_spare.cause == without.cause == Cause.PULL_SECRET_NOT_LINKED
    assert ActionKind.LINK_SECRET in with_spare.actions
    assert ActionKind.LINK_SECRET not in without.actions
    assert any("`ghcr-robot`" in e.text for e in with_spare.evidence)


@pytest.mark.parametrize(
    ("cause", "controlled", "expected"),
    [
        (Cause.NETWORK_TIMEOUT, True, (ActionKind.REDIAGNOSE, ActionKind.DELETE_POD, ActionKind.SNOOZE)),
        (Cause.NETWORK_TIMEOUT, False, (ActionKind.REDIAGNOSE, ActionKind.SNOOZE)),
        (Cause.TAG_NOT_FOUND, True, (ActionKind.REDIAGNOSE, ActionKind.SNOOZE)),
        (
            Cause.AUTH_FAILED,
            True,
            (ActionKind.REDIAGNOSE, ActionKind.DELETE_POD, ActionKind.RECREATE_SECRET, ActionKind.SNOOZE),
        ),
        (Cause.PULL_SECRET_MALFORMED, False, (ActionKind.REDIAGNOSE, ActionKind.RECREATE_SECRET, ActionKind.SNOOZE)),
    ],
)
def test_actions(cause: Cause, controlled: bool, expected: tuple[ActionKind, ...]) -> None:
    """delete_pod only for a controlled pod and a cause a retry can fix; recreate_secret for secret causes."""
    assert actions_for(cause, inspection(controlled=controlled)) == expected
    assert ActionKind.DELETE_POD not in actions_for(cause, None)


@pytest.mark.parametrize(
    ("cause", "image", "expected"),
    [
        (Cause.TAG_NOT_FOUND, "ghcr.io/team/app:v1", ImageRef("ghcr.io", "team/app", tag="v1")),
        (Cause.OTHER, "nginx:1.27", ImageRef("docker.io", "library/nginx", tag="1.27")),
        (Cause.INVALID_IMAGE_NAME, "ghcr.io/team/app:v1", None),
        (Cause.NEVER_PULL, "ghcr.io/team/app:v1", None),
        (Cause.DISK_FULL, "ghcr.io/team/app:v1", None),
        (Cause.SIGNATURE_OR_POLICY, "ghcr.io/team/app:v1", None),
        (Cause.AUTH_FAILED, "Not/Valid::", None),
    ],
)
def test_probe_target(cause: Cause, image: str, expected: ImageRef | None) -> None:
    """Probe the pod's image, except where a registry cannot help or the name is invalid."""
    assert probe_target(failure(image), classification(cause)) == expected


def test_probe_target_from_facts_when_the_spec_image_is_unparsable() -> None:
    """Facts from the message give the target when the image field cannot be parsed."""
    c = Classification(Cause.TAG_NOT_FOUND, Facts(registry="ghcr.io", repository="team/app", reference="v2"), "s", "r")
    assert probe_target(failure("bad image"), c) == ImageRef("ghcr.io", "team/app", tag="v2")


def test_names_are_escaped_for_mrkdwn() -> None:
    """Cluster names with backticks and <, >, & cannot break out of their code span."""
    assert code("a`b<c>&d") == "`a'b&lt;c&gt;&amp;d`"
    nasty = secret("x`<!channel>&", exists=False)
    diagnosis = verify(failure(), classification(Cause.AUTH_FAILED), inspection(nasty), None)
    line = next(e.text for e in diagnosis.evidence if "does not exist" in e.text)
    assert "<!channel>" not in line
    assert line.count("`") % 2 == 0
    assert "`x'&lt;!channel&gt;&amp;`" in line


def test_evidence_never_shows_fingerprints_or_credentials() -> None:
    """Evidence names secrets but carries no credential material."""
    diagnosis = verify(
        failure(),
        classification(Cause.AUTH_FAILED),
        inspection(secret()),
        probe(ProbeOutcome.UNAUTHORIZED, used_credentials=True),
    )
    assert all("abc123" not in e.text for e in diagnosis.evidence)


# ---- issue 12: token outcome, anonymous ambiguity, unknown reads, kubelet's certainty ----


def _texts(d: object) -> list[str]:
    return [e.text for e in d.evidence]  # type: ignore[attr-defined]


def test_accepted_token_then_insufficient_scope_never_blames_the_secret() -> None:
    """The token endpoint took the credentials: the repository is missing or not allowed; no secret is replaced."""
    p = probe(
        ProbeOutcome.UNAUTHORIZED,
        used_credentials=True,
        token_status=200,
        token_with_credentials=True,
        auth_error="insufficient_scope",
    )
    d = verify(failure(), classification(Cause.AUTH_FAILED), inspection(secret()), p)
    assert d.cause is Cause.REPO_NOT_FOUND_OR_NO_ACCESS
    assert any("accepts the pod's pull-secret credentials" in t for t in _texts(d))
    assert not any("create secret" in f.command for f in d.fixes)


def test_anonymous_401_is_not_found_or_private() -> None:
    """Docker Hub's anonymous 401 for a missing and a private repository alike: both, at low confidence."""
    p = probe(ProbeOutcome.UNAUTHORIZED, token_status=200, auth_error="insufficient_scope", repositories_checked=True)
    d = verify(
        failure("docker.io/library/ngnix:1.25"), classification(Cause.REPO_NOT_FOUND_OR_NO_ACCESS), inspection(), p
    )
    assert d.cause is Cause.REPO_NOT_FOUND_OR_NO_ACCESS
    assert d.confidence <= 0.6
    assert any("for a private one alike" in t for t in _texts(d))
    assert not any("private" in t and "alike" not in t for t in _texts(d))
    assert any("create secret" in f.command for f in d.fixes)  # the private reading's fix
    assert any("hub.docker.com/search" in f.command for f in d.fixes)  # the missing reading's check


def test_anonymous_401_with_a_near_repository_is_a_typo() -> None:
    """`ngnix` next to an existing `library/nginx`: a misspelt repository, fixed by pointing at the real one."""
    p = probe(ProbeOutcome.UNAUTHORIZED, token_status=200, nearest_repositories=("library/nginx",))
    d = verify(
        failure("docker.io/library/ngnix:1.25"), classification(Cause.REPO_NOT_FOUND_OR_NO_ACCESS), inspection(), p
    )
    assert d.cause is Cause.REPO_NOT_FOUND
    assert any(f.command.endswith("web=nginx:1.25") for f in d.fixes)


def test_unreadable_secret_is_could_not_check_never_a_tick() -> None:
    """A forbidden secret read gives "could not check", no ✔ line, and a lower confidence."""
    unread = secret(parses=False, matches=False, problem="cannot read (forbidden)")
    d = verify(failure(), classification(Cause.AUTH_FAILED), inspection(unread), None)
    assert any(t.startswith("could not check secret `regcred`") for t in _texts(d))
    assert not any(e.ok for e in d.evidence)
    assert d.cause is not Cause.PULL_SECRET_MALFORMED
    assert d.confidence < 0.6


def test_serviceaccount_secret_needs_a_new_pod() -> None:
    """The SA lists a matching secret the pod lacks: not linked for this pod, and the fix recreates it."""
    d = verify(failure(), classification(Cause.AUTH_FAILED), inspection(secret(by="serviceaccount")), None)
    assert d.cause is Cause.PULL_SECRET_NOT_LINKED
    assert any("a new pod gets it" in t for t in _texts(d))
    assert any(f.command == "kubectl -n shop delete pod web-7d4b9-x2x" for f in d.fixes)
    assert not any("create secret" in f.command for f in d.fixes)


def test_kubelet_waiting_reasons_are_certain() -> None:
    """InvalidImageName and ErrImageNeverPull are the kubelet's own decisions."""
    f = replace(failure("ghcr.io/Team/App:1"), waiting_reason="InvalidImageName")
    d = verify(f, classification(Cause.INVALID_IMAGE_NAME), None, None)
    assert d.confidence >= 0.95


def test_node_port_is_kept_in_the_debug_command() -> None:
    """A refused connection to host:5000 is probed at host:5000, not at the default port."""
    c = Classification(Cause.NETWORK_TIMEOUT, Facts(host="reg.corp"), "refused", "connection refused")
    d = verify(failure("reg.corp:5000/team/app:1"), c, inspection(), None)
    assert any("https://reg.corp:5000/v2/" in f.command for f in d.fixes)
