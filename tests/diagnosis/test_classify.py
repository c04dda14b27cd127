"""Classifier: real messages per cause, extracted facts, rule order, fuzzing and the corpus accuracy target."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.diagnosis.catalogue import CATALOGUE
from bot.diagnosis.classify import RULES, classify, normalise
from bot.diagnosis.evaluate import load, run
from bot.model import Cause, Facts

CORPUS_DIR = Path(__file__).parent.parent / "corpus"
KUBELET = "https://github.com/kubernetes/kubernetes/blob/master/pkg/kubelet/images/image_manager.go"

# (expected cause, message); the comment above each names where the text was seen.
REAL: list[tuple[Cause, str]] = [
    # https://github.com/forcedotcom/salesforcedx-docker/issues/35
    (
        Cause.TAG_NOT_FOUND,
        'rpc error: code = NotFound desc = failed to pull and unpack image "docker.io/salesforce/salesforcedx:latest":'
        ' failed to resolve reference "docker.io/salesforce/salesforcedx:latest":'
        " docker.io/salesforce/salesforcedx:latest: not found",
    ),
    # https://github.com/lachie83/k8s-kubectl/issues/157
    (
        Cause.TAG_NOT_FOUND,
        'Failed to pull image "lachlanevenson/k8s-kubectl:v1.18.20": rpc error: code = Unknown desc = Error response'
        " from daemon: manifest for lachlanevenson/k8s-kubectl:v1.18.20 not found: manifest unknown: manifest unknown",
    ),
    # CRI-O (containers/image docker_image_src.go "reading manifest %s in %s")
    (
        Cause.TAG_NOT_FOUND,
        "rpc error: code = Unknown desc = reading manifest nope in docker.io/library/nginx: manifest unknown",
    ),
    # https://github.com/kubernetes/minikube/issues/20613
    (
        Cause.REPO_NOT_FOUND_OR_NO_ACCESS,
        'Failed to pull image "suedostcargo-web": Error response from daemon: pull access denied for suedostcargo-web,'
        " repository does not exist or may require 'docker login': denied: requested access to the resource is denied",
    ),
    # containerd remotes/docker/resolver.go ErrInvalidAuthorization wording
    (
        Cause.REPO_NOT_FOUND_OR_NO_ACCESS,
        'failed to pull and unpack image "docker.io/library/nonexist:latest": failed to resolve reference'
        ' "docker.io/library/nonexist:latest": pull access denied, repository does not exist or may require'
        " authorization: server message: insufficient_scope: authorization failed",
    ),
    # https://github.com/gitpod-io/gitpod/issues/14837
    (
        Cause.AUTH_FAILED,
        '"proxy.replicated.com/proxy/gitpod/busybox:1": failed to resolve reference'
        ' "proxy.replicated.com/proxy/gitpod/busybox:1": failed to authorize: failed to fetch oauth token:'
        " unexpected status: 401 Unauthorized",
    ),
    # https://github.com/aws/amazon-vpc-cni-k8s/issues/1117
    (
        Cause.AUTH_FAILED,
        "Error response from daemon: Get https://602401143452.dkr.ecr.us-west-2.amazonaws.com/v2/amazon-k8s-cni/"
        "manifests/v1.6.3: no basic auth credentials",
    ),
    # containerd 1.7 resolver.go "pulling from host %s failed with status code %v: %v"
    (
        Cause.AUTH_FAILED,
        'failed to pull and unpack image "r.example.com/a/b:v1": failed to resolve reference "r.example.com/a/b:v1":'
        " pulling from host r.example.com failed with status code [manifests v1]: 401 Unauthorized",
    ),
    # Google Artifact Registry permission text
    (
        Cause.AUTH_FAILED,
        'failed to resolve reference "us-docker.pkg.dev/p/r/app:1": failed to authorize: failed to fetch oauth token:'
        ' unexpected status: 403 Forbidden: denied: Permission "artifactregistry.repositories.downloadArtifacts"'
        " denied on resource",
    ),
    # https://github.com/docker/docs/issues/21908
    (
        Cause.RATE_LIMITED,
        "failed to copy: httpReadSeeker: failed open: unexpected status code https://registry-1.docker.io/v2/"
        "bitnamicharts/drupal/manifests/sha256:9538e0c4fd55aa75d75f6846bc99b1ecddad3a4ffbb7cbf8d0fc8578a5c2b02f:"
        " 429 Too Many Requests - Server message: toomanyrequests: You have reached your pull rate limit.",
    ),
    # https://github.com/docker/for-win/issues/6241
    (
        Cause.DNS_FAILURE,
        "Error response from daemon: Get https://registry-1.docker.io/v2/: dial tcp: lookup registry-1.docker.io on"
        " 192.168.65.1:53: no such host",
    ),
    # https://github.com/docker/for-mac/issues/2152
    (
        Cause.DNS_FAILURE,
        "Error response from daemon: Get https://registry-1.docker.io/v2/: dial tcp: lookup registry-1.docker.io on"
        " 192.168.65.1:53: read udp 192.168.65.2:45941->192.168.65.1:53: i/o timeout",
    ),
    # https://github.com/ciiiii/cloudflare-docker-proxy/issues/62
    (
        Cause.NETWORK_TIMEOUT,
        'rpc error: code = DeadlineExceeded desc = failed to pull and unpack image "docker.io/library/redis:latest":'
        ' failed to resolve reference "docker.io/library/redis:latest": failed to authorize: failed to fetch'
        ' anonymous token: Get "https://auth.docker.io/token?scope=repository%3Alibrary%2Fredis%3Apull&service='
        'registry.docker.io": dial tcp 157.240.17.14:443: i/o timeout',
    ),
    # docker/dockershim Client.Timeout wording (net/http)
    (
        Cause.NETWORK_TIMEOUT,
        "Error response from daemon: Get https://registry-1.docker.io/v2/: net/http: request canceled while waiting"
        " for connection (Client.Timeout exceeded while awaiting headers)",
    ),
    # https://github.com/kubernetes/minikube/issues/12944
    (
        Cause.TLS_CERT,
        'Failed to pull image "selenium/hub": rpc error: code = Unknown desc = Error response from daemon: Get'
        ' "https://registry-1.docker.io/v2/": x509: certificate signed by unknown authority',
    ),
    # https://github.com/hypriot/image-builder-rpi/issues/281
    (
        Cause.TLS_CERT,
        "Error response from daemon: Get https://registry-1.docker.io/v2/: http: server gave HTTP response to HTTPS"
        " client",
    ),
    # https://github.com/docker-library/golang/issues/242
    (Cause.PLATFORM_MISMATCH, "no matching manifest for linux/arm64 in the manifest list entries"),
    # https://github.com/containerd/containerd/issues/6989
    (
        Cause.PLATFORM_MISMATCH,
        'rpc error: code = NotFound desc = failed to pull and unpack image "mcr.microsoft.com/windows/servercore:'
        'ltsc2019": no match for platform in manifest: not found',
    ),
    # https://github.com/play-with-docker/play-with-docker/issues/249
    (
        Cause.DISK_FULL,
        "docker: failed to register layer: Error processing tar file(exit status 1): write"
        " /lib/x86_64-linux-gnu/libdns-export.so.162.1.3: no space left on device.",
    ),
    # KUBELET applyDefaultImageTag
    (
        Cause.INVALID_IMAGE_NAME,
        'Failed to apply default image tag "Nginx": couldn\'t parse image reference "Nginx": invalid reference'
        " format: repository name must be lowercase",
    ),
    # KUBELET ErrImageNeverPull
    (Cause.NEVER_PULL, 'Container image "app:dev" is not present with pull policy of Never'),
    # https://github.com/sigoden/dufs/issues/64
    (
        Cause.REGISTRY_SERVER_ERROR,
        "error pulling image configuration: received unexpected HTTP status: 500 Internal Server Error",
    ),
    # CRI-O / containers/image signature policy wording
    (
        Cause.SIGNATURE_OR_POLICY,
        "rpc error: code = Unknown desc = Source image rejected: A signature was required, but no signature exists",
    ),
    # kubelet pkg/kubelet/images/puller.go throttle (not the registry's limit)
    (Cause.OTHER, "pull QPS exceeded"),
    # https://github.com/kubernetes/kubernetes/issues/59406 (a back-off with no error in it)
    (
        Cause.OTHER,
        'container start failed: ImagePullBackOff: Back-off pulling image "123123123.dkr.ecr.eu-central-1.amazonaws.com'
        '/private-job:1.70.20"',
    ),
    # kubelet >= 1.32 back-off carrying the last error
    (
        Cause.TAG_NOT_FOUND,
        'Back-off pulling image "nginx:nope": ErrImagePull: failed to pull and unpack image "docker.io/library/nginx:'
        'nope": failed to resolve reference "docker.io/library/nginx:nope": docker.io/library/nginx:nope: not found',
    ),
    # kubelet FailedToRetrieveImagePullSecret event (pkg/kubelet/kubelet_pods.go)
    (
        Cause.AUTH_FAILED,
        "Unable to retrieve some image pull secrets (regcred); attempting to pull the image may not succeed.",
    ),
    # https://github.com/youtous/docker-mailserver-traefik/issues/5 (GitLab: the DENIED code with a message)
    (
        Cause.REPO_NOT_FOUND_OR_NO_ACCESS,
        'ERROR: Head "https://registry.gitlab.com/v2/youtous/mailserver-traefik/manifests/latest": denied: access'
        " forbidden",
    ),
    # https://github.com/GoogleCloudPlatform/berglas/issues/128 (Artifact Registry)
    (
        Cause.REPO_NOT_FOUND_OR_NO_ACCESS,
        'Failed to pull image "us-docker.pkg.dev/berglas/berglas/berglas:latest": rpc error: code = Unknown desc ='
        " Error response from daemon: Get https://us-docker.pkg.dev/v2/berglas/berglas/berglas/manifests/latest:"
        ' denied: Permission "artifactregistry.repositories.downloadArtifacts" denied on resource'
        ' "projects/berglas/locations/us/repositories/berglas"',
    ),
    # https://github.com/kubernetes/registry.k8s.io/issues/273 (the bare status text)
    (
        Cause.REPO_NOT_FOUND_OR_NO_ACCESS,
        'Error response from daemon: Head "https://europe-west3-docker.pkg.dev/v2/k8s-artifacts-prod/images/sig-storage'
        '/csi-provisioner/manifests/v4.0.0": Forbidden',
    ),
    # https://github.com/kubernetes/kubernetes/pull/69141 (dockershim, ECR)
    (
        Cause.REPO_NOT_FOUND_OR_NO_ACCESS,
        'PullImage "<id>.dkr.ecr.cn-north-1.amazonaws.com.cn/topic-service:master-a6cd66e4" from image service failed:'
        " rpc error: code = Unknown desc = Error response from daemon: repository"
        " <id>.dkr.ecr.cn-north-1.amazonaws.com.cn/topic-service not found: does not exist or no pull access",
    ),
    # https://github.com/zalando/postgres-operator/issues/2073 (the image config blob is gone, not the manifest)
    (
        Cause.OTHER,
        'Failed to pull image "registry.opensource.zalan.do/acid/postgres-operator:v1.8.2": rpc error: code = NotFound'
        ' desc = failed to pull and unpack image "registry.opensource.zalan.do/acid/postgres-operator:v1.8.2": failed'
        " to copy: httpReadSeeker: failed open: could not fetch content descriptor"
        " sha256:362f48b85866cee67d1c8668cf6a83fac76520f056ed485c047f8db2fd2a3cda"
        " (application/vnd.docker.container.image.v1+json) from remote: not found",
    ),
    # https://github.com/awslabs/amazon-ecr-credential-helper/issues/118 (DENIED about credentials stays auth_failed)
    (
        Cause.AUTH_FAILED,
        "Not continuing with pull after error: denied: Your Authorization Token has expired. Please run 'aws ecr"
        " get-login --no-include-email' to fetch a new one.",
    ),
]


@pytest.mark.parametrize(("cause", "message"), REAL, ids=[f"{c}-{i}" for i, (c, _) in enumerate(REAL)])
def test_real_messages_name_their_cause(cause: Cause, message: str) -> None:
    """Each real message is read as the cause its source established."""
    result = classify(message)
    assert result.cause is cause
    assert result.raw == message
    assert result.sentence and result.sentence[0].isupper()


def test_every_message_cause_has_a_real_example() -> None:
    """The table covers every cause a message alone can name."""
    from bot.model import MESSAGE_CAUSES

    assert {c for c, _ in REAL} >= MESSAGE_CAUSES


@pytest.mark.parametrize(
    ("reason", "cause"),
    [
        ("InvalidImageName", Cause.INVALID_IMAGE_NAME),
        ("ErrImageNeverPull", Cause.NEVER_PULL),
    ],
)
def test_waiting_reason_decides_when_it_names_the_cause(reason: str, cause: Cause) -> None:
    """A waiting reason that names the cause wins over vague text."""
    assert classify("something odd", waiting_reason=reason).cause is cause


def test_pull_secret_event_reason() -> None:
    """The FailedToRetrieveImagePullSecret event is a message-level auth failure (refined later)."""
    result = classify("anything", event_reason="FailedToRetrieveImagePullSecret")
    assert result.cause is Cause.AUTH_FAILED
    assert "pull secret" in classify("Unable to retrieve some image pull secrets (x); attempting").sentence


def test_facts_from_containerd_401() -> None:
    """Registry, repository, tag, status and host come out of a containerd 401."""
    facts = classify(REAL[7][1]).facts
    assert facts == Facts(
        registry="r.example.com", repository="a/b", reference="v1", http_status=401, host="r.example.com"
    )


def test_facts_from_dns_failure() -> None:
    """The host that failed to resolve is the one after `lookup`."""
    facts = classify(
        'Failed to pull image "registry.internal/app:1": pinging container registry registry.internal: Get'
        ' "https://registry.internal/v2/": dial tcp: lookup registry.internal on 10.96.0.10:53: no such host'
    ).facts
    assert facts.host == "registry.internal"
    assert (facts.registry, facts.repository, facts.reference) == ("registry.internal", "app", "1")


def test_facts_platform_and_crio_reference() -> None:
    """Platforms are read from docker and CRI-O texts; CRI-O's `reading manifest X in Y` gives the image."""
    assert classify("no matching manifest for linux/arm64/v8 in the manifest list entries").facts.platform == (
        "linux/arm64/v8"
    )
    crio = classify(
        'choosing image instance: no image found in manifest list for architecture arm64, variant "v8", OS linux'
    )
    assert crio.cause is Cause.PLATFORM_MISMATCH
    assert crio.facts.platform == "linux/arm64/v8"
    facts = classify("reading manifest v2 in quay.io/org/app: manifest unknown").facts
    assert (facts.registry, facts.repository, facts.reference) == ("quay.io", "org/app", "v2")


def test_facts_rate_limit_digest_url() -> None:
    """A digest in a registry URL is the reference, and the Docker Hub API host maps to docker.io."""
    facts = classify(REAL[9][1]).facts
    assert facts.registry == "docker.io"
    assert facts.repository == "bitnamicharts/drupal"
    assert facts.reference is not None and facts.reference.startswith("sha256:9538e0c4")
    assert facts.http_status == 429


@pytest.mark.parametrize(
    ("message", "cause"),
    [
        # x509 wins wherever it appears.
        (
            'failed to authorize: failed to fetch oauth token: Post "https://a.io/token": x509: certificate has expired'
            " or is not yet valid",
            Cause.TLS_CERT,
        ),
        # A timeout while fetching the token is a network failure, not an auth failure.
        (
            'failed to authorize: failed to fetch anonymous token: Get "https://a.io/token": context deadline exceeded',
            Cause.NETWORK_TIMEOUT,
        ),
        # An anonymous token refused with 403 cannot tell a missing repository from missing rights.
        (
            "failed to authorize: failed to fetch anonymous token: unexpected status from GET request to"
            " https://ghcr.io/token?scope=repository%3Ao%2Fr%3Apull&service=ghcr.io: 403 Forbidden",
            Cause.REPO_NOT_FOUND_OR_NO_ACCESS,
        ),
        # Names that contain trigger words do not trigger.
        (
            'Failed to pull image "timeout-svc/kube-proxy:429": rpc error: code = NotFound desc = failed to pull and'
            ' unpack image "docker.io/timeout-svc/kube-proxy:429": failed to resolve reference'
            ' "docker.io/timeout-svc/kube-proxy:429": docker.io/timeout-svc/kube-proxy:429: not found',
            Cause.TAG_NOT_FOUND,
        ),
        ("reading manifest denied-401 in quay.io/unauthorized/x509: manifest unknown", Cause.TAG_NOT_FOUND),
        (
            "Unable to retrieve some image pull secrets (timeout-x509); attempting to pull the image may not succeed.",
            Cause.AUTH_FAILED,
        ),
        # A 5xx from the token endpoint is the registry's fault.
        (
            "failed to authorize: failed to fetch oauth token: unexpected status: 503 Service Unavailable",
            Cause.REGISTRY_SERVER_ERROR,
        ),
        # Local file permissions are not registry permissions.
        ("failed to extract layer: mkdir /var/lib/containerd/tmpmounts/x: permission denied", Cause.OTHER),
        ("", Cause.OTHER),
    ],
)
def test_rule_order_finds_the_root(message: str, cause: Cause) -> None:
    """The rule order names the root error, not the wrapper around it."""
    assert classify(message).cause is cause


def test_rules_have_unique_names_and_catalogue_covers_every_cause() -> None:
    """Rules are named once; the catalogue has an entry for every Cause."""
    names = [r.name for r in RULES]
    assert len(names) == len(set(names))
    assert set(CATALOGUE) == set(Cause)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300), st.one_of(st.none(), st.text(max_size=30)), st.one_of(st.none(), st.text(max_size=30)))
def test_garbage_never_raises(message: str, event_reason: str | None, waiting_reason: str | None) -> None:
    """Any text gives a Classification with the raw text kept, never an exception."""
    result = classify(message, event_reason, waiting_reason)
    assert result.raw == message
    assert isinstance(result.cause, Cause)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=200))
def test_normalise_collapses_whitespace_like_split_join(message: str) -> None:
    """The fast path of normalise gives exactly what split/join gives, for any text."""
    assert normalise(message) == " ".join(message.replace('\\"', '"').split())


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from([m for _, m in REAL] + ["rpc error", ": ", '"', "lookup", "https://", "429"]), max_size=6)
)
def test_spliced_real_fragments_never_raise(parts: list[str]) -> None:
    """Pieces of real messages glued together still classify without error."""
    assert isinstance(classify(" ".join(parts)).cause, Cause)


CORPORA = sorted(CORPUS_DIR.glob("*.jsonl"))


FROZEN = CORPUS_DIR / "frozen-2026-11-30.jsonl"
FROZEN_FIRST_CORRECT = 82  # of 85, measured on 2026-11-30 before any change (tests/corpus/README.md)


def test_frozen_holdout_does_not_drop_below_its_first_measurement() -> None:
    """The frozen hold-out (no rule is written from it) must never read worse than when it was first measured."""
    results = run(load(FROZEN))
    assert len(results) == 85
    misses = [(r.sample.where, r.sample.cause, r.got) for r in results if not r.correct]
    assert len(results) - len(misses) >= FROZEN_FIRST_CORRECT, misses


def test_holdout_corpus_reads_right() -> None:
    """The older holdout corpus (rules were fixed after its first measurement: a regression set now)."""
    holdout = CORPUS_DIR / "holdout.jsonl"
    assert holdout in CORPORA
    results = run(load(holdout))
    misses = [(r.sample.where, r.sample.cause, r.got) for r in results if not r.correct]
    assert len(results) >= 40
    assert 1 - len(misses) / len(results) >= 0.97, misses


@pytest.mark.skipif(not CORPORA, reason="no corpus under tests/corpus yet")
def test_corpus_accuracy_at_least_97_percent() -> None:
    """The classifier reads at least 97% of the committed real-message corpus right."""
    samples = [s for path in CORPORA for s in load(path)]
    results = run(samples)
    misses = [(r.sample.where, r.sample.cause, r.got) for r in results if not r.correct]
    accuracy = 1 - len(misses) / len(results)
    assert accuracy >= 0.97, misses[:20]
