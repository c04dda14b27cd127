"""Literal values of the shared types for store tests."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from bot.model import (
    ActionKind,
    AuditEntry,
    Cause,
    Diagnosis,
    Evidence,
    Facts,
    FixCommand,
    Incident,
    OutboxKind,
    OutboxMessage,
    Proposal,
    WorkloadRef,
)

T0 = datetime(2026, 11, 23, 9, 0, 0, 123456, tzinfo=UTC)


def diagnosis() -> Diagnosis:
    """A diagnosis using every field, nested types and enums included."""
    return Diagnosis(
        cause=Cause.PULL_SECRET_WRONG_REGISTRY,
        summary="The pull secret regcred has no entry for ghcr.io.",
        confidence=0.9,
        facts=Facts(registry="ghcr.io", repository="acme/api", reference="v1.2.3", http_status=401, host="ghcr.io"),
        evidence=(
            Evidence("registry answered 401 Unauthorized", "registry", ok=False),
            Evidence("secret regcred exists", "cluster", ok=True),
            Evidence("image ghcr.io/acme/api:v1.2.3", "message"),
        ),
        fixes=(
            FixCommand("Show the secret's registries", "kubectl -n shop get secret regcred -o yaml"),
            FixCommand("Link the secret", "kubectl -n shop patch sa default -p '{...}'", mutating=True),
        ),
        actions=(ActionKind.REDIAGNOSE, ActionKind.RECREATE_SECRET),
        raw_message='Failed to pull image "ghcr.io/acme/api:v1.2.3": 401 Unauthorized — “quoted”',
        message_cause=Cause.AUTH_FAILED,
    )


def incident(key: str = "c1/shop/deployment/api/app/ghcr.io/acme/api:v1.2.3/auth", **changes: object) -> Incident:
    """An open workload incident with a full diagnosis."""
    base = Incident(
        key=key,
        cluster="c1",
        namespace="shop",
        workload=WorkloadRef("Deployment", "api"),
        container="app",
        image="ghcr.io/acme/api:v1.2.3",
        registry="ghcr.io",
        cause=Cause.PULL_SECRET_WRONG_REGISTRY,
        pods=("api-7d9f-abcde", "api-7d9f-fghij"),
        pods_seen=3,
        first_seen=T0,
        last_seen=T0 + timedelta(minutes=2),
        diagnosis=diagnosis(),
        channel="C0ALERTS",
        posted_facts=("secret regcred exists",),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def message(incident_key: str, n: int, kind: OutboxKind = OutboxKind.REPLY, channel: str = "C0ALERTS") -> OutboxMessage:
    """The n-th Slack write of an incident, with a stable dedup key."""
    return OutboxMessage(
        kind=kind,
        incident_key=incident_key,
        channel=channel,
        text=f"message {n}",
        blocks=({"type": "section", "text": {"type": "mrkdwn", "text": f"*{n}*"}},),
        dedup_key=f"{incident_key}:{kind.value}:{n}",
    )


def proposal(**changes: object) -> Proposal:
    """A pending delete-pod proposal that expires 30 minutes after T0."""
    base = Proposal(
        action=ActionKind.DELETE_POD,
        cluster="c1",
        namespace="shop",
        target="api-7d9f-abcde",
        params={"reason": "retry the pull"},
        requested_by="U123",
        requested_by_name="alice",
        created_at=T0,
        expires_at=T0 + timedelta(minutes=30),
        incident_key="inc-1",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def audit_entry(n: int = 0, **changes: object) -> AuditEntry:
    """An audit entry, distinct for each n."""
    base = AuditEntry(
        actor_id="U123",
        actor_name="alice",
        action="proposal.created",
        target=f"c1/shop/pod/api-{n}",
        params={"n": str(n)},
        result="ok",
        at=T0 + timedelta(seconds=n),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]
