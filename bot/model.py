"""Plain data passed between the stages of the pipeline: no I/O, no client library.

Every type here is a frozen dataclass so that the pure stages (classification, verification,
incident grouping, rendering) can be tested with literal values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Cause(StrEnum):
    """Cause ids (contract: docs/CONTRACTS.md). The first block is what a message alone can name."""

    TAG_NOT_FOUND = "tag_not_found"
    REPO_NOT_FOUND_OR_NO_ACCESS = "repo_not_found_or_no_access"
    AUTH_FAILED = "auth_failed"
    RATE_LIMITED = "rate_limited"
    DNS_FAILURE = "dns_failure"
    NETWORK_TIMEOUT = "network_timeout"
    TLS_CERT = "tls_cert"
    PLATFORM_MISMATCH = "platform_mismatch"
    DISK_FULL = "disk_full"
    INVALID_IMAGE_NAME = "invalid_image_name"
    NEVER_PULL = "never_pull"
    REGISTRY_SERVER_ERROR = "registry_server_error"
    SIGNATURE_OR_POLICY = "signature_or_policy"
    OTHER = "other"
    # Refined by verification with cluster and registry evidence.
    REPO_NOT_FOUND = "repo_not_found"
    PULL_SECRET_MISSING = "pull_secret_missing"
    PULL_SECRET_NOT_LINKED = "pull_secret_not_linked"
    PULL_SECRET_WRONG_REGISTRY = "pull_secret_wrong_registry"
    PULL_SECRET_MALFORMED = "pull_secret_malformed"
    TOKEN_EXPIRED = "token_expired"
    NODE_DISK_PRESSURE = "node_disk_pressure"


MESSAGE_CAUSES: frozenset[Cause] = frozenset(list(Cause)[: list(Cause).index(Cause.OTHER) + 1])

# Causes that belong to a registry rather than to one workload: many workloads failing with one of
# these against the same registry are grouped into a single registry incident (a "storm").
REGISTRY_LEVEL_CAUSES: frozenset[Cause] = frozenset(
    {
        Cause.RATE_LIMITED,
        Cause.DNS_FAILURE,
        Cause.NETWORK_TIMEOUT,
        Cause.TLS_CERT,
        Cause.REGISTRY_SERVER_ERROR,
    }
)

# Every waiting reason kubelet gives a container whose image it could not get: pkg/kubelet/images/types.go
# (ImagePullBackOff, ImageInspectError, ErrImagePull, ErrImageNeverPull, InvalidImageName; RegistryUnavailable before
# 1.27) and k8s.io/cri-api/pkg/errors (RegistryUnavailable, SignatureValidationFailed, returned by evalCRIPullErr).
PULL_WAITING_REASONS: frozenset[str] = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "RegistryUnavailable",
        "SignatureValidationFailed",
        "ImageInspectError",
    }
)
# The reasons a failed pull attempt gives; kubelet alternates each with ImagePullBackOff while it retries.
PULL_ATTEMPT_REASONS: frozenset[str] = frozenset({"ErrImagePull", "RegistryUnavailable", "SignatureValidationFailed"})


@dataclass(frozen=True, slots=True)
class WorkloadRef:
    """The object that owns a pod, at the top of its owner chain (a bare pod owns itself)."""

    kind: str  # "Deployment", "StatefulSet", "DaemonSet", "CronJob", "Job", "ReplicaSet", "Pod", ...
    name: str

    def __str__(self) -> str:
        return f"{self.kind.lower()}/{self.name}"


@dataclass(frozen=True, slots=True)
class PullFailure:
    """One observation by the watcher: a container of a pod waits on an image pull."""

    cluster: str
    namespace: str
    pod: str
    pod_uid: str
    container: str
    container_kind: str  # "container" | "init" | "ephemeral"
    image: str
    waiting_reason: str  # one of PULL_WAITING_REASONS
    message: str  # the freshest error text: the waiting message or the latest Failed event
    workload: WorkloadRef
    node: str | None = None
    event_reason: str | None = None  # "Failed", "FailedToRetrieveImagePullSecret", ...
    observed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Recovery:
    """The watcher saw a formerly failing container start, or its pod (or workload) go away."""

    cluster: str
    namespace: str
    pod: str
    pod_uid: str
    container: str
    image: str
    workload: WorkloadRef
    reason: str  # "started" | "pod_deleted" | "pod_terminating" | "image_changed"
    observed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Facts:
    """What the classifier extracted from the message (every field optional)."""

    registry: str | None = None
    repository: str | None = None
    reference: str | None = None  # tag or digest
    http_status: int | None = None
    platform: str | None = None  # "linux/arm64"
    host: str | None = None  # the host name that failed to resolve or connect


@dataclass(frozen=True, slots=True)
class Classification:
    """The result of reading one message: a cause id, the facts, one plain sentence."""

    cause: Cause
    facts: Facts
    sentence: str
    raw: str


@dataclass(frozen=True, slots=True)
class Evidence:
    """One line the user sees under "Evidence"; `ok` is None for neutral facts."""

    text: str
    source: str  # "message" | "cluster" | "registry"
    ok: bool | None = None


@dataclass(frozen=True, slots=True)
class FixCommand:
    """A copy-paste shell command, already shell-quoted, with a one-line title."""

    title: str
    command: str
    mutating: bool = False


class ActionKind(StrEnum):
    """Buttons and slash-command actions; fixes become proposals that need approval."""

    REDIAGNOSE = "rediagnose"
    DELETE_POD = "delete_pod"
    RECREATE_SECRET = "recreate_secret"
    LINK_SECRET = "link_secret"
    SNOOZE = "snooze"
    MUTE = "mute"


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """The final verdict shown in the thread."""

    cause: Cause
    summary: str
    confidence: float  # 0..1
    facts: Facts
    evidence: tuple[Evidence, ...] = ()
    fixes: tuple[FixCommand, ...] = ()
    actions: tuple[ActionKind, ...] = ()
    raw_message: str = ""
    message_cause: Cause | None = None  # what the text alone said, before verification


# ---- Cluster inspection (produced by bot.kube.inspect, consumed by the pure verifier) ----


@dataclass(frozen=True, slots=True)
class SecretCheck:
    """One imagePullSecret as found in the cluster. Never carries credential values."""

    name: str
    # "pod": in pod.spec.imagePullSecrets, the only secrets the kubelet sends for this pod;
    # "serviceaccount": listed by the pod's ServiceAccount but not in the pod (a NEW pod listing none gets it);
    # "namespace": a dockerconfig secret of the namespace that nothing above refers to.
    referenced_by: str
    exists: bool
    type: str | None = None  # "kubernetes.io/dockerconfigjson", "kubernetes.io/dockercfg", ...
    parses: bool = False
    registries: tuple[str, ...] = ()  # normalised hosts of its auths entries
    matches_image: bool = False  # the kubelet's keyring would send one of its entries for the image
    problem: str | None = None  # why it does not parse, in words safe to show
    created_at: datetime | None = None
    fingerprint: str | None = None  # short hash of the matching credential, for caches and audit


@dataclass(frozen=True, slots=True)
class NodeInfo:
    name: str
    architecture: str | None = None  # "amd64", "arm64"
    os: str | None = None  # "linux"
    disk_pressure: bool = False


@dataclass(frozen=True, slots=True)
class PodInspection:
    namespace: str
    pod: str
    exists: bool = True
    service_account: str | None = None
    image_pull_policy: str | None = None
    owner_chain: tuple[WorkloadRef, ...] = ()  # from the pod's direct owner to the top
    controlled: bool = False  # a controller owns the pod, so deleting it makes a replacement
    secrets: tuple[SecretCheck, ...] = ()
    node: NodeInfo | None = None
    events: tuple[str, ...] = ()  # recent event lines, "Reason: message"
    pod_secret_names: tuple[str, ...] = ()  # pod.spec.imagePullSecrets, in order
    # Reads that failed or were not allowed, in words safe to show ("ServiceAccount `default` (forbidden)"):
    # what they would have told is unknown, never fine.
    unchecked: tuple[str, ...] = ()
    namespace_secrets_listed: bool = False  # the namespace's dockerconfig secrets were listed
    cluster_platforms: tuple[str, ...] = ()  # "os/arch" of the cluster's nodes (empty: not read)


@dataclass(frozen=True, slots=True)
class Credentials:
    """Registry credentials taken from a pull secret. Values never leave the probe."""

    username: str
    password: str = field(repr=False)
    fingerprint: str = ""  # short sha256 of host+username+password, safe to log

    def __repr__(self) -> str:
        return f"Credentials(username=<redacted>, fingerprint={self.fingerprint!r})"


# ---- Registry probe (produced by bot.registry.probe, consumed by the verifier) ----


class ProbeOutcome(StrEnum):
    OK = "ok"  # the manifest exists
    DNS = "dns"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    TLS = "tls"
    UNAUTHORIZED = "unauthorized"  # 401
    FORBIDDEN = "forbidden"  # 403
    MANIFEST_UNKNOWN = "manifest_unknown"  # 404, the repository exists or cannot be told
    NAME_UNKNOWN = "name_unknown"  # 404, the repository does not exist
    RATE_LIMITED = "rate_limited"  # 429
    SERVER_ERROR = "server_error"  # 5xx
    SKIPPED = "skipped"  # probing switched off for this registry, or no budget
    ERROR = "error"  # anything else


@dataclass(frozen=True, slots=True)
class ProbeResult:
    registry: str
    repository: str
    reference: str
    outcome: ProbeOutcome
    http_status: int | None = None
    detail: str = ""  # registry error code and message, never credentials
    used_credentials: bool = False
    platforms: tuple[str, ...] = ()  # "linux/amd64", ... when the reference is an index
    tags_sample_size: int = 0
    nearest_tags: tuple[str, ...] = ()
    ratelimit_limit: str | None = None
    ratelimit_remaining: str | None = None
    digest: str | None = None  # Docker-Content-Digest of the manifest or index the reference resolves to now
    elapsed_ms: float = 0.0
    cached: bool = False
    # The token endpoint apart from the manifest: its HTTP status (None: no token was asked for) and whether
    # the pod's credentials were presented to it. 200 with credentials means the registry accepted them.
    token_status: int | None = None
    token_with_credentials: bool = False
    auth_error: str = ""  # the `error` of the refusal's Bearer challenge ("insufficient_scope"), or ""
    nearest_repositories: tuple[str, ...] = ()  # existing repositories near the wanted one (catalog or probes)
    repositories_checked: bool = False  # the registry was asked for near repository names


# ---- Incidents and Slack writes (produced by bot.incidents, persisted by bot.store) ----


class IncidentStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class IncidentScope(StrEnum):
    WORKLOAD = "workload"  # one workload, container, image and cause
    REGISTRY = "registry"  # a registry-level cause shared by many workloads (a storm)
    FINDINGS = "findings"  # the latent-failure scan's "at risk" thread of one channel (bot.prevention.threads)
    REPORT = "report"  # a weekly report posted to one channel (bot.reporting); stored resolved, once per week


@dataclass(frozen=True, slots=True)
class Incident:
    """One Slack thread for its whole life. `key` is the grouping fingerprint (unique)."""

    key: str
    cluster: str
    namespace: str
    workload: WorkloadRef
    container: str
    image: str
    registry: str
    cause: Cause
    scope: IncidentScope = IncidentScope.WORKLOAD
    status: IncidentStatus = IncidentStatus.OPEN
    id: int | None = None
    pods: tuple[str, ...] = ()  # pods failing now
    pods_seen: int = 0  # distinct pods seen over the incident's life
    affected: tuple[str, ...] = ()  # registry incidents: "ns/workload" entries
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    resolved_at: datetime | None = None
    diagnosis: Diagnosis | None = None
    channel: str = ""
    thread_ts: str | None = None
    posted_facts: tuple[str, ...] = ()  # facts already told in the thread, so none is told twice
    snoozed_until: datetime | None = None
    muted: bool = False
    parent_key: str | None = None  # the registry incident this one is folded into
    reopened: int = 0


class OutboxKind(StrEnum):
    POST_PARENT = "post_parent"  # chat.postMessage, starts the thread; its ts becomes thread_ts
    REPLY = "reply"  # chat.postMessage with thread_ts
    UPDATE_PARENT = "update_parent"  # chat.update of the parent
    EPHEMERAL = "ephemeral"  # chat.postEphemeral to one user


SLACK_TEXT_MAX = 40_000  # https://api.slack.com/methods/chat.postMessage#truncating


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A Slack write recorded in SQL before it is sent. `dedup_key` is unique: enqueueing twice is a no-op."""

    kind: OutboxKind
    incident_key: str
    channel: str
    text: str
    blocks: tuple[dict[str, object], ...] = ()
    dedup_key: str = ""
    user: str | None = None  # EPHEMERAL only
    id: int | None = None

    def __post_init__(self) -> None:
        # Slack's message text limit (40,000 characters); the text is already escaped mrkdwn, cut at a character.
        if len(self.text) > SLACK_TEXT_MAX:
            object.__setattr__(self, "text", self.text[: SLACK_TEXT_MAX - 1] + "…")


# ---- Proposals and the audit log (written by flows, persisted by bot.store) ----


class ProposalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"  # approved, about to run (claimed by exactly one executor)
    REJECTED = "rejected"
    EXPIRED = "expired"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Proposal:
    """A fix waiting for approval. `params` never holds a secret value (a modal's credentials are
    written to Kubernetes at approval time from a short-lived in-memory vault, or the action copies a secret)."""

    action: ActionKind
    cluster: str
    namespace: str
    target: str  # pod, secret or serviceaccount name
    params: dict[str, str]
    requested_by: str  # Slack user id
    requested_by_name: str
    created_at: datetime
    expires_at: datetime
    incident_key: str | None = None
    status: ProposalStatus = ProposalStatus.PENDING
    decided_by: str | None = None
    decided_at: datetime | None = None
    result: str | None = None
    id: int | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One append-only audit row before it is chained. `params` must hold no secret value."""

    actor_id: str  # Slack user id, or "bot"
    actor_name: str
    action: str  # "proposal.created", "proposal.approved", "proposal.refused", "action.executed", ...
    target: str  # "cluster/namespace/kind/name"
    params: dict[str, str]
    result: str  # "ok", "refused: ...", "error: ..."
    at: datetime
    proposal_id: int | None = None
    incident_key: str | None = None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    entry: AuditEntry
    id: int
    prev_hash: str
    hash: str
