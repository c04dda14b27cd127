"""Incident grouping and lifecycle (pure): one thread per incident, no message per event."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from bot.incidents import BookSettings, Change, IncidentBook, SlackText, route_channel
from bot.model import (
    Cause,
    Diagnosis,
    Evidence,
    Facts,
    Incident,
    IncidentScope,
    IncidentStatus,
    OutboxKind,
    PullFailure,
    Recovery,
    WorkloadRef,
)

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


class PlainRenderer:
    """A renderer that writes what it was asked, so tests can read it."""

    def parent(self, incident: Incident) -> SlackText:
        return SlackText(f"parent {incident.status} pods={len(incident.pods)} seen={incident.pods_seen}")

    def diagnosis(self, incident: Incident, diagnosis: Diagnosis) -> SlackText:
        return SlackText(f"diagnosis {diagnosis.cause}")

    def new_fact(self, incident: Incident, lines: Sequence[str]) -> SlackText:
        return SlackText("fact " + "; ".join(lines))

    def resolved(self, incident: Incident, reason: str) -> SlackText:
        return SlackText(f"resolved: {reason}")

    def reopened(self, incident: Incident, diagnosis: Diagnosis) -> SlackText:
        return SlackText("reopened")


def book(**kw: object) -> IncidentBook:
    settings = BookSettings(cluster="prod", default_channel="#alerts", **kw)  # type: ignore[arg-type]
    return IncidentBook(settings, PlainRenderer())


def failure(pod: str, workload: str = "api", image: str = "ghcr.io/acme/api:v1", ns: str = "shop") -> PullFailure:
    return PullFailure(
        cluster="prod",
        namespace=ns,
        pod=pod,
        pod_uid=f"uid-{pod}",
        container="app",
        container_kind="container",
        image=image,
        waiting_reason="ErrImagePull",
        message="not found",
        workload=WorkloadRef("Deployment", workload),
    )


def diag(cause: Cause = Cause.TAG_NOT_FOUND, *evidence: str) -> Diagnosis:
    return Diagnosis(
        cause=cause,
        summary="s",
        confidence=0.9,
        facts=Facts(),
        evidence=tuple(Evidence(e, "registry") for e in evidence),
    )


def recovery(pod: str, reason: str = "started", ns: str = "shop") -> Recovery:
    return Recovery(
        "prod", ns, pod, f"uid-{pod}", "app", "ghcr.io/acme/api:v1", WorkloadRef("Deployment", "api"), reason
    )


def kinds(changes: list[Change]) -> list[OutboxKind]:
    return [m.kind for c in changes for m in c.outbox]


def test_first_failure_opens_parent_and_diagnosis_reply() -> None:
    """A new incident posts a parent and its diagnosis in the thread, keyed for idempotent enqueue."""
    b = book()
    changes = b.observe(failure("api-1"), diag(), T0)
    assert kinds(changes) == [OutboxKind.POST_PARENT, OutboxKind.REPLY]
    inc = changes[0].incident
    assert inc.channel == "#alerts" and inc.pods == ("api-1",) and inc.status is IncidentStatus.OPEN
    assert len({m.dedup_key for m in changes[0].outbox}) == 2


def test_repeated_events_post_nothing() -> None:
    """The same pod failing again with the same evidence changes nothing."""
    b = book()
    b.observe(failure("api-1"), diag(Cause.TAG_NOT_FOUND, "tag missing"), T0)
    assert b.observe(failure("api-1"), diag(Cause.TAG_NOT_FOUND, "tag missing"), T0 + timedelta(seconds=5)) == []


def test_more_pods_update_parent_once_per_interval() -> None:
    """Fifty more pods give one throttled parent update, not fifty messages."""
    b = book(update_interval=timedelta(seconds=10))
    b.observe(failure("api-0"), diag(), T0)
    for i in range(1, 51):
        changes = b.observe(failure(f"api-{i}"), diag(), T0 + timedelta(milliseconds=10 * i))
        assert kinds(changes) == []
    assert kinds(b.tick(T0 + timedelta(seconds=5))) == []
    later = b.tick(T0 + timedelta(seconds=11))
    assert kinds(later) == [OutboxKind.UPDATE_PARENT]
    assert later[0].incident.pods_seen == 51
    assert kinds(b.tick(T0 + timedelta(seconds=30))) == []


def test_new_evidence_adds_one_reply() -> None:
    """A new fact gets one reply; the same fact again gets none."""
    b = book()
    b.observe(failure("api-1"), diag(Cause.TAG_NOT_FOUND, "a"), T0)
    changes = b.observe(failure("api-2"), diag(Cause.TAG_NOT_FOUND, "a", "b"), T0)
    assert kinds(changes) == [OutboxKind.REPLY]
    assert "b" in changes[0].outbox[0].text and "a" not in changes[0].outbox[0].text.replace("fact", "")
    assert kinds(b.observe(failure("api-3"), diag(Cause.TAG_NOT_FOUND, "a", "b"), T0)) == []


def test_recovery_of_last_pod_resolves_and_relapse_reopens_same_thread() -> None:
    """Recovery closes the thread; a relapse inside the window reopens the same incident."""
    b = book()
    key = b.observe(failure("api-1"), diag(), T0)[0].incident.key
    resolved = b.recover(recovery("api-1"), T0 + timedelta(minutes=4))
    assert kinds(resolved) == [OutboxKind.UPDATE_PARENT, OutboxKind.REPLY]
    assert resolved[0].incident.status is IncidentStatus.RESOLVED
    assert "container started" in resolved[0].outbox[1].text
    again = b.observe(failure("api-7"), diag(), T0 + timedelta(minutes=10))
    assert again[0].incident.key == key and again[0].incident.reopened == 1
    assert kinds(again) == [OutboxKind.UPDATE_PARENT, OutboxKind.REPLY]


def test_relapse_after_window_opens_new_thread() -> None:
    """After the relapse window a failure is a new incident with a new key."""
    b = book(relapse_window=timedelta(minutes=5))
    key = b.observe(failure("api-1"), diag(), T0)[0].incident.key
    b.recover(recovery("api-1"), T0 + timedelta(minutes=1))
    again = b.observe(failure("api-2"), diag(), T0 + timedelta(minutes=30))
    assert again[0].incident.key != key and kinds(again)[0] is OutboxKind.POST_PARENT


def test_deleted_pod_waits_grace_before_resolving() -> None:
    """A rollout replacing pods does not flap resolved/reopened."""
    b = book(resolve_grace=timedelta(seconds=30))
    b.observe(failure("api-1"), diag(), T0)
    assert kinds(b.recover(recovery("api-1", "pod_deleted"), T0 + timedelta(seconds=1))) == []
    assert kinds(b.observe(failure("api-2"), diag(), T0 + timedelta(seconds=5))) == []
    assert all(c.incident.status is IncidentStatus.OPEN for c in b.tick(T0 + timedelta(seconds=60)))
    b.recover(recovery("api-2", "pod_deleted"), T0 + timedelta(seconds=61))
    assert kinds(b.tick(T0 + timedelta(seconds=95))) == [OutboxKind.UPDATE_PARENT, OutboxKind.REPLY]


def test_registry_storm_is_one_registry_incident() -> None:
    """Many workloads rate-limited by one registry give one registry thread listing them."""
    b = book(storm_threshold=3)
    for i in range(5):
        for p in range(3):
            img = f"docker.io/library/app{i}:1"
            assert b.observe(failure(f"w{i}-{p}", workload=f"w{i}", image=img), diag(Cause.RATE_LIMITED), T0) == []
    changes = b.tick(T0 + timedelta(seconds=3))
    assert kinds(changes) == [OutboxKind.POST_PARENT, OutboxKind.REPLY]
    inc = changes[0].incident
    assert inc.scope is IncidentScope.REGISTRY and inc.registry == "docker.io" and len(inc.affected) == 5
    assert len(inc.pods) == 15
    late = b.observe(failure("w9-0", workload="w9", image="docker.io/library/x:1"), diag(Cause.RATE_LIMITED), T0)
    assert kinds(late) == [] and "shop/deployment/w9" in late[0].incident.affected
    for i in range(5):
        for p in range(3):
            b.recover(recovery(f"w{i}-{p}"), T0 + timedelta(seconds=9))
    final = b.recover(recovery("w9-0"), T0 + timedelta(seconds=10))
    assert final[-1].incident.status is IncidentStatus.RESOLVED


def test_pods_stay_sorted_as_they_come_and_go_out_of_order() -> None:
    """An incident lists its failing pods sorted whatever the order they failed and recovered in, for workload and
    registry incidents alike; a restored incident keeps that order too."""
    b = book()
    order = ["api-7", "api-2", "api-9", "api-0", "api-5"]
    inc = None
    for pod in order:
        changes = b.observe(failure(pod), diag(), T0)
        inc = changes[-1].incident if changes else inc
    assert inc is not None and inc.pods == tuple(sorted(order))
    left = b.recover(recovery("api-5"), T0 + timedelta(seconds=1))[-1].incident
    left = b.recover(recovery("api-0"), T0 + timedelta(seconds=1))[-1].incident
    assert left.pods == ("api-2", "api-7", "api-9")
    again = b.observe(failure("api-1"), diag(), T0 + timedelta(seconds=2))[-1].incident
    assert again.pods == ("api-1", "api-2", "api-7", "api-9")
    restored = book()
    restored.load([again])
    assert restored.recover(recovery("api-7"), T0 + timedelta(seconds=3))[-1].incident.pods == (
        "api-1",
        "api-2",
        "api-9",
    )
    reg = book(storm_threshold=2)
    pods = [("w1", "z-1"), ("w0", "b-0"), ("w1", "a-1"), ("w0", "c-0")]
    for workload, pod in pods:
        reg.observe(
            failure(pod, workload=workload, image=f"docker.io/library/{workload}:1"), diag(Cause.RATE_LIMITED), T0
        )
    registry = reg.tick(T0 + timedelta(seconds=3))[0].incident
    assert registry.scope is IncidentScope.REGISTRY
    assert registry.pods == tuple(sorted(f"shop/{pod}" for _, pod in pods))


def test_few_registry_failures_stay_workload_incidents() -> None:
    """Below the storm threshold, registry-level causes get their own threads after the window."""
    b = book(storm_threshold=3)
    b.observe(failure("a-1", workload="a"), diag(Cause.DNS_FAILURE), T0)
    changes = b.tick(T0 + timedelta(seconds=3))
    assert kinds(changes) == [OutboxKind.POST_PARENT, OutboxKind.REPLY]
    assert changes[0].incident.scope is IncidentScope.WORKLOAD


def test_snoozed_incident_stays_quiet_but_resolves() -> None:
    """Snooze silences updates and new facts, not the resolution."""
    b = book(update_interval=timedelta(seconds=1))
    inc = b.observe(failure("api-1"), diag(Cause.TAG_NOT_FOUND, "a"), T0)[0].incident
    from dataclasses import replace

    b.adopt(replace(inc, snoozed_until=T0 + timedelta(hours=1), thread_ts="1.0"))
    assert kinds(b.observe(failure("api-2"), diag(Cause.TAG_NOT_FOUND, "a", "new"), T0)) == []
    assert kinds(b.tick(T0 + timedelta(seconds=5))) == []
    b.recover(recovery("api-2"), T0 + timedelta(seconds=6))
    assert kinds(b.recover(recovery("api-1"), T0 + timedelta(seconds=7))) == [
        OutboxKind.UPDATE_PARENT,
        OutboxKind.REPLY,
    ]


def test_restart_continues_the_same_incident() -> None:
    """A book loaded from stored incidents extends them instead of opening new threads."""
    b = book()
    inc = b.observe(failure("api-1"), diag(), T0)[0].incident
    fresh = book()
    fresh.load([inc])
    changes = fresh.observe(failure("api-1"), diag(), T0 + timedelta(seconds=1))
    assert changes == []
    resolved = fresh.recover(recovery("api-1"), T0 + timedelta(seconds=2))
    assert resolved[0].incident.key == inc.key and resolved[0].incident.status is IncidentStatus.RESOLVED


def test_route_channel_precedence() -> None:
    """Routes go from the most specific to the default."""
    routes = {"prod/shop": "#shop", "prod/*": "#prod", "*/pay": "#pay"}
    assert route_channel(routes, "#d", "prod", "shop") == "#shop"
    assert route_channel(routes, "#d", "prod", "x") == "#prod"
    assert route_channel(routes, "#d", "stage", "pay") == "#pay"
    assert route_channel(routes, "#d", "stage", "x") == "#d"


def test_reconcile_resolves_pods_that_recovered_while_down() -> None:
    """After a restart's relist, stored pods no longer failing are resolved once; failing ones stay."""
    b = book()
    b.observe(failure("api-1"), diag(), T0)
    other = b.observe(failure("web-1", workload="web", image="ghcr.io/acme/web:1"), diag(), T0)[0].incident
    fresh = book()
    fresh.load(b.open_incidents())
    changes = fresh.reconcile({("shop", "web-1")}, T0 + timedelta(minutes=1))
    assert kinds(changes) == [OutboxKind.UPDATE_PARENT, OutboxKind.REPLY]
    assert changes[0].incident.workload.name == "api" and changes[0].incident.status is IncidentStatus.RESOLVED
    assert fresh.get(fresh.incident_fingerprint(other)).status is IncidentStatus.OPEN  # type: ignore[union-attr]
    assert fresh.reconcile({("shop", "web-1")}, T0 + timedelta(minutes=2)) == []
