"""The scan's pure rules: placement by labels and taints, credential expiry, what a new pod sends, probe meanings."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from bot.kube.dockerconfig import parse_secret
from bot.model import ProbeOutcome, ProbeResult
from bot.prevention.expiry import expiry_of, last_written
from bot.prevention.findings import Risk, evaluate, quota_left
from bot.prevention.placement import NodeFacts, fits, node_facts, platforms_for
from bot.prevention.plan import SecretView, plan, secrets_for_new_pod
from bot.prevention.workloads import spec_of
from testkit.kube import objects as k8s

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
AMD = NodeFacts("a", {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"})
ARM = NodeFacts("b", {"kubernetes.io/os": "linux", "kubernetes.io/arch": "arm64", "pool": "graviton"})
TAINTED_ARM = NodeFacts(
    "c", {"kubernetes.io/os": "linux", "kubernetes.io/arch": "arm64"}, (("arch", "arm", "NoSchedule"),)
)
WINDOWS = NodeFacts("w", {"kubernetes.io/os": "windows", "kubernetes.io/arch": "amd64"})


def deployment(**pod_spec: object) -> dict[str, object]:
    deploy = k8s.deployment("api", "shop", "ghcr.io/acme/api:1.0", 2)
    deploy["spec"]["template"]["spec"].update(pod_spec)  # type: ignore[index]
    return deploy


def test_placement_follows_selector_affinity_taints_and_cordons() -> None:
    plain = spec_of(deployment())
    assert plain is not None
    assert platforms_for(plain, [AMD, ARM, TAINTED_ARM, WINDOWS]) == {"linux/amd64", "linux/arm64", "windows/amd64"}
    linux = spec_of(deployment(nodeSelector={"kubernetes.io/os": "linux"}))
    assert linux is not None and platforms_for(linux, [AMD, WINDOWS]) == {"linux/amd64"}
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["graviton"]}]}]
            }
        }
    }
    graviton = spec_of(deployment(affinity=affinity))
    assert graviton is not None and platforms_for(graviton, [AMD, ARM]) == {"linux/arm64"}
    tolerant = spec_of(deployment(tolerations=[{"key": "arch", "operator": "Exists"}]))
    assert tolerant is not None and fits(tolerant, TAINTED_ARM) and not fits(plain, TAINTED_ARM)
    cordoned = NodeFacts("x", dict(ARM.labels), unschedulable=True)
    assert not fits(plain, cordoned)
    assert node_facts(k8s.node("n", arch="arm64")).platform == "linux/arm64"


def _ecr_password(expires: datetime) -> str:
    envelope = {
        "payload": "x",
        "datakey": "y",
        "version": "2",
        "type": "DATA_KEY",
        "expiration": int(expires.timestamp()),
    }
    return base64.b64encode(json.dumps(envelope).encode()).decode()


def _jwt(exp: datetime) -> str:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part({'sub': 'robot', 'exp': int(exp.timestamp())})}.c2lnbmF0dXJl"


def test_expiry_of_ecr_tokens_and_jwts() -> None:
    ecr = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    soon = expiry_of(ecr, "AWS", _ecr_password(NOW + timedelta(hours=1)), None)
    assert soon is not None and soon.state(NOW, timedelta(hours=2)) == "expiring"
    old = expiry_of(ecr, "AWS", "not-an-envelope", NOW - timedelta(hours=13))
    assert old is not None and old.state(NOW, timedelta(hours=2)) == "expired" and "12 h" in old.basis
    assert expiry_of(ecr, "AWS", "not-an-envelope", None) is None
    jwt = expiry_of("harbor.example.com", "robot$ci", _jwt(NOW + timedelta(days=30)), None)
    assert jwt is not None and jwt.state(NOW, timedelta(hours=2)) is None
    assert expiry_of("harbor.example.com", "u", "plain-password", NOW) is None
    meta = {"creationTimestamp": "2026-11-29T00:00:00Z", "managedFields": [{"time": "2026-11-30T10:00:00Z"}]}
    assert last_written(meta) == datetime(2026, 11, 30, 10, tzinfo=UTC)


def test_a_new_pod_sends_its_own_secrets_else_the_service_accounts() -> None:
    own = spec_of(deployment(imagePullSecrets=[{"name": "own"}]))
    by_sa = spec_of(deployment(serviceAccountName="builder"))
    assert own is not None and by_sa is not None
    accounts = {("shop", "builder"): ("sa-cred",), ("shop", "default"): ("default-cred",)}
    assert secrets_for_new_pod(own, accounts) == ("own",)
    assert secrets_for_new_pod(by_sa, accounts) == ("sa-cred",)


def _secret(host: str, password: str) -> SecretView:
    sec = k8s.docker_config_secret("regcred", "shop", {host: {"username": "robot", "password": password}})
    return SecretView("shop", "regcred", True, parse_secret(sec["type"], sec["data"]), NOW - timedelta(hours=1))


def test_plan_coalesces_checks_and_reports_secret_problems_without_a_registry() -> None:
    a = spec_of(deployment(imagePullSecrets=[{"name": "regcred"}, {"name": "gone"}]))
    other = k8s.deployment("worker", "shop", "ghcr.io/acme/api:1.0", 1)
    other["spec"]["template"]["spec"]["imagePullSecrets"] = [{"name": "regcred"}]
    b = spec_of(other)
    assert a is not None and b is not None
    secrets = {("shop", "regcred"): _secret("ghcr.io", "pw")}
    result = plan([a, b], [AMD, ARM], {}, secrets, now=NOW)
    assert len(result.checks) == 1, "one question for two workloads with the same image and credentials"
    (check,) = result.checks
    assert check.credentials is not None and len(check.dependents) == 2
    assert check.platforms == {"linux/amd64", "linux/arm64"}
    assert [(f.risk, f.workload) for f in result.findings] == [(Risk.SECRET_MISSING, "deployment/api")]


def test_an_expiring_ecr_secret_is_a_finding_before_any_probe() -> None:
    ecr = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    deploy = k8s.deployment("api", "shop", f"{ecr}/api:1.0", 1)
    deploy["spec"]["template"]["spec"]["imagePullSecrets"] = [{"name": "regcred"}]
    spec = spec_of(deploy)
    assert spec is not None
    secrets = {("shop", "regcred"): _secret(ecr, _ecr_password(NOW + timedelta(minutes=30)))}
    result = plan([spec], [AMD], {}, secrets, now=NOW)
    assert [f.risk for f in result.findings] == [Risk.CREDENTIAL_EXPIRING]
    assert "ECR token" in result.findings[0].detail and "pw" not in result.findings[0].detail


def _probe(outcome: ProbeOutcome, **kw: object) -> ProbeResult:
    return ProbeResult("ghcr.io", "acme/api", "1.0", outcome, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("probe", "risk"),
    [
        (_probe(ProbeOutcome.MANIFEST_UNKNOWN, nearest_tags=("1.1",)), Risk.TAG_GONE),
        (_probe(ProbeOutcome.NAME_UNKNOWN), Risk.REPO_GONE_OR_DENIED),
        (_probe(ProbeOutcome.UNAUTHORIZED, used_credentials=True), Risk.CREDENTIALS_REJECTED),
        (_probe(ProbeOutcome.UNAUTHORIZED), Risk.NO_CREDENTIALS),
        (_probe(ProbeOutcome.RATE_LIMITED), Risk.QUOTA_LOW),
        (_probe(ProbeOutcome.OK, ratelimit_remaining="3;w=21600", ratelimit_limit="100;w=21600"), Risk.QUOTA_LOW),
        (_probe(ProbeOutcome.OK, platforms=("linux/amd64",)), Risk.PLATFORM_MISSING),
        (_probe(ProbeOutcome.OK, digest="sha256:" + "b" * 64), Risk.DIGEST_CHANGED),
        (_probe(ProbeOutcome.TIMEOUT, detail="no answer"), Risk.UNCHECKED),
        (_probe(ProbeOutcome.DNS), Risk.UNCHECKED),
    ],
    ids=lambda v: v.value if isinstance(v, Risk) else v.outcome.value,
)
def test_what_a_registry_answer_means(probe: ProbeResult, risk: Risk) -> None:
    pod = {"status": {"containerStatuses": [{"name": "api", "imageID": "ghcr.io/acme/api@sha256:" + "a" * 64}]}}
    spec = spec_of(deployment(), [pod])
    assert spec is not None
    needed = {("shop", "deployment/api", "api"): frozenset({"linux/amd64", "linux/arm64"})}
    findings = evaluate(probe, ((spec, "api", "ghcr.io/acme/api:1.0"),), needed)
    assert [f.risk for f in findings] == [risk]
    if risk is Risk.PLATFORM_MISSING:
        assert "linux/arm64" in findings[0].detail and "kubernetes.io/arch" in findings[0].fix


def test_a_healthy_answer_is_no_finding() -> None:
    pod = {"status": {"containerStatuses": [{"name": "api", "imageID": "ghcr.io/acme/api@sha256:" + "a" * 64}]}}
    spec = spec_of(deployment(), [pod])
    assert spec is not None
    probe = _probe(ProbeOutcome.OK, platforms=("linux/amd64", "linux/arm64/v8"), digest="sha256:" + "a" * 64)
    needed = {("shop", "deployment/api", "api"): frozenset({"linux/amd64", "linux/arm64"})}
    assert evaluate(probe, ((spec, "api", "ghcr.io/acme/api:1.0"),), needed) == []
    assert quota_left("76;w=21600") == 76 and quota_left(None) is None


def test_an_expired_token_of_a_stopped_refresher_says_so() -> None:
    """An ECR secret owned by a refresher (External Secrets) that expired: its refresher has stopped rewriting it."""
    ecr = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    deploy = k8s.deployment("api", "shop", f"{ecr}/api:1.0", 1)
    deploy["spec"]["template"]["spec"]["imagePullSecrets"] = [{"name": "regcred"}]
    spec = spec_of(deploy)
    assert spec is not None
    view = _secret(ecr, "not-an-envelope")
    stale = SecretView(view.namespace, view.name, True, view.config, NOW - timedelta(hours=14), "ExternalSecret/ecr")
    (found,) = plan([spec], [AMD], {}, {("shop", "regcred"): stale}, now=NOW).findings
    assert found.risk is Risk.CREDENTIAL_EXPIRED
    assert "ExternalSecret/ecr manages it but has not rewritten it since 2026-11-29 22:00 UTC" in found.detail
