"""Settings: built once in the entry point (bot.cli) and passed down. Nothing reads the environment elsewhere."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SlackSettings(BaseModel):
    bot_token: SecretStr | None = None  # xoxb-...
    app_token: SecretStr | None = None  # xapp-... (Socket Mode)
    signing_secret: SecretStr | None = None  # HTTP mode
    mode: str = Field(default="socket", pattern="^(socket|http)$")
    http_port: int = 3000
    http_host: str = "0.0.0.0"  # noqa: S104 (HTTP mode: Slack reaches the pod through its Service or Ingress)
    default_channel: str = "#imagepull-alerts"
    # "cluster/namespace" or "cluster/*" or "*/namespace" -> channel
    routes: dict[str, str] = Field(default_factory=dict)
    base_url: str = "https://slack.com/api/"
    # Socket Mode: Slack allows 10 connections per app. Only the leader of a cluster holds one, so connections
    # grow with clusters, not replicas; with many clusters, name the few whose leader holds it (empty: every
    # cluster's), the others are reached through the shared database (cross-cluster forwarding), or use HTTP mode.
    socket_clusters: list[str] = Field(default_factory=list)

    @property
    def configured(self) -> bool:
        return self.bot_token is not None and bool(self.bot_token.get_secret_value())


class KubeSettings(BaseModel):
    kubeconfig: Path | None = None  # None: in-cluster if available, else ~/.kube/config
    context: str | None = None
    cluster_name: str = "default"
    include_namespaces: list[str] = Field(default_factory=list)  # empty: all
    exclude_namespaces: list[str] = Field(default_factory=lambda: ["kube-system"])
    # Namespaces whose Secrets the bot may read for verification (empty: all it has RBAC for).
    secret_namespaces: list[str] = Field(default_factory=list)
    # Never stall: diagnoses run in this many workers; every list/read has this timeout; a watch silent (no change,
    # no bookmark) for watch_silence_s is restarted, and /readyz fails while a stream stays silent past it.
    diagnosis_workers: int = Field(default=4, ge=1, le=64)
    api_timeout_s: float = Field(default=30.0, gt=0)
    watch_silence_s: float = Field(default=120.0, gt=0)
    # List the namespace's dockerconfig-type Secrets (names and registry keys are all that leave the process), so a
    # valid secret nobody refers to is offered as a link. Needs `list` on secrets; off: the thread says so.
    list_pull_secrets: bool = True


class RegistrySettings(BaseModel):
    probe_enabled: bool = True
    probe_budget_s: float = 5.0
    cache_ttl_s: float = 60.0
    no_probe_registries: list[str] = Field(default_factory=list)
    insecure_registries: list[str] = Field(default_factory=list)  # plain HTTP hosts
    ca_file: Path | None = None
    # SSRF guard (bot.registry.netguard): probes, redirects and token realms reach public addresses only, plus these
    # CIDR ranges (e.g. "10.0.0.0/8" for an in-cluster registry) and these hosts (host or host:port), whatever
    # their address. Default: loopback, link-local (metadata endpoints) and private ranges are denied.
    allow_networks: list[str] = Field(default_factory=list)
    allow_registries: list[str] = Field(default_factory=list)

    @field_validator("allow_networks")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for network in v:
            ipaddress.ip_network(network, strict=False)  # ValueError names the bad range
        return v


class HASettings(BaseModel):
    """Leader election over a coordination.k8s.io Lease: only the leader watches and posts."""

    enabled: bool = True
    lease_namespace: str = "default"
    lease_name: str = "imagepull-doctor"  # the cluster name is appended, so clusters never share a lease
    identity: str = ""  # empty: host name and process id
    lease_duration_s: float = 15.0
    renew_s: float = 5.0


class IncidentSettings(BaseModel):
    relapse_window_s: float = 3600.0
    storm_threshold: int = 3  # workloads with one registry-level cause before a registry incident
    storm_window_s: float = 2.0  # registry-level failures wait this long to be grouped
    resolve_grace_s: float = 30.0  # a pod deleted without starting resolves only after this long
    update_interval_s: float = 15.0  # the parent message is edited at most this often
    tick_interval_s: float = 1.0  # how often held storms, throttled edits and grace periods are released


class OutboxSettings(BaseModel):
    """How the outbox worker sends: Slack's per-channel pace, how long a claim lasts, how often it looks for rows."""

    rate_per_channel: float | None = 1.0  # messages per second per channel (Slack: about 1); None: unpaced (tests)
    lease_s: float = 60.0  # a claimed row is claimable again after this long if its worker vanished
    poll_interval_s: float = 0.2


class ExecutorSettings(BaseModel):
    """How approved fixes run: how often the executor polls, and its waits."""

    interval_s: float = 2.0
    stale_run_s: float = 600.0  # a claimed run that never finished is marked failed ("outcome unknown") after this
    settle_s: float = 5.0  # wait after a fix before the follow-up diagnosis
    holder_grace_s: float = 120.0  # other replicas leave a typed-credentials proposal to its holder this long


class PreventionSettings(BaseModel):
    """The latent-failure scan (bot.prevention): run by the leader on a schedule, findings posted per channel."""

    enabled: bool = True
    interval_s: float = Field(default=21600.0, gt=0)  # every 6 h
    jitter_s: float = Field(default=1800.0, ge=0)  # +- this much, so that clusters do not scan in step
    first_after_s: float = Field(default=300.0, ge=0)  # after taking the lead (the watcher syncs first)
    max_per_registry_per_minute: int = Field(default=60, gt=0)
    warn_before_s: float = Field(default=7200.0, ge=0)  # credentials expiring within this are findings


class ReportSettings(BaseModel):
    """The weekly report (`/imagepull report 7d`) posted by the leader to every route channel."""

    weekly: bool = True
    weekday: int = Field(default=0, ge=0, le=6)  # 0 is Monday
    hour_utc: int = Field(default=9, ge=0, le=23)


class MappedIdentity(BaseModel):
    """An explicit Kubernetes identity for one Slack user."""

    model_config = {"extra": "forbid"}

    user: str
    groups: list[str] = Field(default_factory=list)


class IdentitySettings(BaseModel):
    """How a Slack user becomes a Kubernetes identity (bot.identity): an explicit table, else the confirmed email."""

    model_config = {"extra": "forbid"}

    # "{email}", "oidc:{email}", "{local}"...: the API server's user name for the Slack profile's confirmed email;
    # "" turns email mapping off (only `users` map).
    email_template: str = "{email}"
    users: dict[str, MappedIdentity] = Field(default_factory=dict)  # Slack user id -> identity (wins over email)
    groups: dict[str, list[str]] = Field(default_factory=dict)  # Slack user-group id -> Kubernetes groups
    ttl_s: float = Field(default=60.0, ge=0)  # how long a mapping (profile and groups) is reused
    review_timeout_s: float = Field(default=5.0, gt=0)  # a SubjectAccessReview not answered in time refuses

    @field_validator("email_template")
    @classmethod
    def _template(cls, v: str) -> str:
        from bot.identity import check_template  # pure

        return check_template(v)

    @field_validator("users")
    @classmethod
    def _users(cls, v: dict[str, MappedIdentity]) -> dict[str, MappedIdentity]:
        from bot.identity import check_group_name, check_slack_user, check_user_name

        for slack_id, mapped in v.items():
            check_slack_user(slack_id)
            check_user_name(mapped.user)
            for group in mapped.groups:
                check_group_name(group)
        return v

    @field_validator("groups")
    @classmethod
    def _groups(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        from bot.identity import check_group_name, check_slack_group

        for slack_id, groups in v.items():
            check_slack_group(slack_id)
            for group in groups:
                check_group_name(group)
        return v


class AccessSettings(BaseModel):
    """Who may do what: Slack user or user-group id -> list of "namespace:action" grants ("*" wildcards).

    `mode`: "grants" (these grants decide, fixes run as the bot), "kubernetes" (the cluster decides by
    SubjectAccessReview for the mapped identity, fixes run impersonating it), "both" (both must allow)."""

    mode: str = Field(default="grants", pattern="^(grants|kubernetes|both)$")
    identity: IdentitySettings = Field(default_factory=IdentitySettings)
    grants: dict[str, list[str]] = Field(default_factory=dict)
    two_person_rule: bool = False

    @field_validator("grants")
    @classmethod
    def _grants_parse(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        from bot.access import parse_grant  # pure; imported here so that a bad grant stops the settings loading

        for entries in v.values():
            for entry in entries:
                parse_grant(entry)
        return v

    proposal_ttl_s: float = 1800.0
    # An approved fix (or a forwarded request) that no executor claimed within this time expires instead of running
    # later against a world that changed since (docs/SECURITY.md).
    approved_ttl_s: float = 900.0


class AuditSettings(BaseModel):
    """The audit chain's HMAC key (docs/SECURITY.md): from a Kubernetes Secret, never stored in the database.

    Without a key the chain is plain SHA-256, which anyone who can write to the database can recompute."""

    hmac_key: SecretStr | None = None

    @property
    def key(self) -> bytes | None:
        """The key as bytes, or None when unset."""
        if self.hmac_key is None or not self.hmac_key.get_secret_value():
            return None
        return self.hmac_key.get_secret_value().encode("utf-8")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="IMAGEPULL_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
    )

    database_url: str = "sqlite+aiosqlite:///imagepull-doctor.db"
    log_level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    log_json: bool = False
    metrics_port: int = Field(default=9090, ge=0, le=65535)  # /metrics, /healthz, /readyz; 0: not served
    slack: SlackSettings = Field(default_factory=SlackSettings)
    kube: KubeSettings = Field(default_factory=KubeSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    incidents: IncidentSettings = Field(default_factory=IncidentSettings)
    ha: HASettings = Field(default_factory=HASettings)
    access: AccessSettings = Field(default_factory=AccessSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)
    prevention: PreventionSettings = Field(default_factory=PreventionSettings)
    report: ReportSettings = Field(default_factory=ReportSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, v: str) -> str:
        if not v.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return v
