"""The "at risk" thread's life, pure: opened, edited with what is new and fixed, quiet when muted, closed."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bot.model import Cause, Incident, IncidentScope, IncidentStatus, OutboxKind, WorkloadRef
from bot.prevention.findings import Finding, Risk
from bot.prevention.threads import plan_threads

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
ROUTES = {"prod/payments": "#pay"}


def finding(ns: str, workload: str, risk: Risk = Risk.TAG_GONE) -> Finding:
    return Finding(risk, ns, f"deployment/{workload}", workload, f"r.example/{workload}:1", "detail", "kubectl fix")


def run(findings: list[Finding], incidents: list[Incident], at: datetime = NOW) -> list[tuple[Incident, tuple]]:  # type: ignore[type-arg]
    return plan_threads(
        cluster="prod", findings=findings, open_incidents=incidents, routes=ROUTES, default_channel="#alerts", now=at
    )


def test_one_thread_per_channel_then_edits_then_close() -> None:
    first = run([finding("payments", "api"), finding("shop", "web"), finding("shop", "cart")], [])
    assert sorted(i.channel for i, _ in first) == ["#alerts", "#pay"]
    threads = {i.channel: i for i, _ in first}
    alerts, writes = next((i, w) for i, w in first if i.channel == "#alerts")
    assert alerts.scope is IncidentScope.FINDINGS and len(alerts.posted_facts) == 2
    assert [w.kind for w in writes] == [OutboxKind.POST_PARENT]
    assert "2 workload(s) at risk" in str(writes[0].blocks)
    buttons = [e["action_id"] for b in writes[0].blocks if b["type"] == "actions" for e in b["elements"]]  # type: ignore[index,union-attr]
    assert buttons == ["imagepull:snooze", "imagepull:mute"]
    # the same findings again: nothing to say
    assert (
        run([finding("payments", "api"), finding("shop", "web"), finding("shop", "cart")], list(threads.values())) == []
    )
    # cart fixed, db new: the parent is edited and a reply names both
    second = run([finding("payments", "api"), finding("shop", "web"), finding("shop", "db")], list(threads.values()))
    ((updated, writes),) = second
    assert updated.key == alerts.key and [w.kind for w in writes] == [OutboxKind.UPDATE_PARENT, OutboxKind.REPLY]
    assert "1 new" in writes[1].text and "shop/deployment/db" in writes[1].text and "1 fixed" in writes[1].text
    # everything fixed in #alerts: closed; #pay untouched
    ((closed, writes),) = run([finding("payments", "api")], [updated, threads["#pay"]])
    assert closed.status is IncidentStatus.RESOLVED and closed.channel == "#alerts"
    assert "2 finding(s) fixed before a pod failed." in writes[1].text
    assert closed.pods_seen == 3, "cart fixed at the update, web and db at the close: three failures prevented"


def test_a_workload_that_already_fails_is_not_a_forecast() -> None:
    incident = Incident(
        key="k",
        cluster="prod",
        namespace="shop",
        workload=WorkloadRef("Deployment", "web"),
        container="web",
        image="r.example/web:1",
        registry="r.example",
        cause=Cause.TAG_NOT_FOUND,
        channel="#alerts",
    )
    assert run([finding("shop", "web")], [incident]) == []


def test_could_not_check_never_opens_a_thread_and_muted_threads_stay_quiet() -> None:
    assert run([finding("shop", "web", Risk.UNCHECKED)], []) == []
    ((thread, _),) = run([finding("shop", "web")], [])
    muted = replace(thread, muted=True)
    ((_, writes),) = run([finding("shop", "web"), finding("shop", "db")], [muted])
    assert [w.kind for w in writes] == [OutboxKind.UPDATE_PARENT]
    snoozed = replace(thread, snoozed_until=NOW + timedelta(hours=1))
    ((_, writes),) = run([finding("shop", "db")], [snoozed])
    assert [w.kind for w in writes] == [OutboxKind.UPDATE_PARENT]


def test_a_finding_that_became_an_incident_was_not_prevented() -> None:
    ((thread, _),) = run([finding("shop", "web")], [])
    incident = Incident(
        key="k",
        cluster="prod",
        namespace="shop",
        workload=WorkloadRef("Deployment", "web"),
        container="web",
        image="r.example/web:1",
        registry="r.example",
        cause=Cause.TAG_NOT_FOUND,
        channel="#alerts",
    )
    ((closed, writes),) = run([finding("shop", "web")], [thread, incident])
    assert closed.status is IncidentStatus.RESOLVED and closed.pods_seen == 0
    assert "0 finding(s) fixed before a pod failed; 1 became incident(s)" in writes[1].text
