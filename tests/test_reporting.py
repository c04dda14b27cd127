"""The team report (pure): time to resolve by cause and namespace, fixes from Slack, failures prevented."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.model import AuditEntry, AuditRecord, Cause, Incident, IncidentScope, IncidentStatus, WorkloadRef
from bot.reporting import build_report, next_weekly, render_report

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def incident(
    key: str, ns: str, name: str, cause: Cause, opened_h: float, minutes: float | None, **kw: object
) -> Incident:
    first = NOW - timedelta(hours=opened_h)
    resolved = first + timedelta(minutes=minutes) if minutes is not None else None
    return Incident(
        key=key,
        cluster="prod",
        namespace=ns,
        workload=WorkloadRef("Deployment", name),
        container=name,
        image=f"r/{name}:1",
        registry="r",
        cause=cause,
        first_seen=first,
        last_seen=first,
        status=IncidentStatus.RESOLVED if resolved else IncidentStatus.OPEN,
        resolved_at=resolved,
        **kw,  # type: ignore[arg-type]
    )


def executed(key: str) -> AuditRecord:
    entry = AuditEntry("bot", "bot", "action.executed", "t", {}, "ok", NOW, proposal_id=1, incident_key=key)
    return AuditRecord(entry, 1, "0" * 64, "1" * 64)


def test_report_of_a_week() -> None:
    incidents = [
        incident("a", "shop", "api", Cause.TAG_NOT_FOUND, 30, 10),
        incident("b", "shop", "web", Cause.TAG_NOT_FOUND, 20, 30),
        incident("c", "pay", "ledger", Cause.AUTH_FAILED, 10, 240, reopened=2),
        incident("d", "pay", "ledger", Cause.AUTH_FAILED, 5, None),
        incident("old", "shop", "api", Cause.TAG_NOT_FOUND, 24 * 9, 5),  # before the window
        Incident(
            key="findings|prod|#alerts|x",
            cluster="prod",
            namespace="*",
            workload=WorkloadRef("LatentScan", "at-risk"),
            container="",
            image="",
            registry="",
            cause=Cause.OTHER,
            scope=IncidentScope.FINDINGS,
            last_seen=NOW - timedelta(days=1),
            pods_seen=4,
        ),
    ]
    report = build_report(incidents, [executed("c")], now=NOW, days=7)
    assert (report.opened, report.resolved, report.still_open) == (4, 3, 1)
    assert (report.fixed_from_slack, report.fixed_elsewhere, report.prevented) == (1, 2, 4)
    tag = report.by_cause["tag_not_found"]
    assert tag.n == 2 and tag.median_s == 20 * 60 and tag.p90_s is not None and 28 * 60 <= tag.p90_s <= 30 * 60
    assert report.by_namespace["pay"].n == 2 and report.by_namespace["pay"].median_s == 240 * 60
    assert report.slowest[0] == ("pay/deployment/ledger", "auth_failed", 240 * 60.0)
    assert report.most_frequent[0] == ("pay/deployment/ledger", 4)
    text = render_report(report, "prod")
    assert "4 incident(s): 3 resolved, 1 still open" in text and "fixed from Slack 1, elsewhere 2" in text
    assert "fixed before a pod failed: 4" in text and "`tag_not_found`: 2, 20m / " in text


def test_an_empty_window() -> None:
    report = build_report([], [], now=NOW, days=30)
    assert report.opened == 0 and report.by_cause == {}
    assert "0 incident(s)" in render_report(report, "prod")


def test_the_next_weekly_time() -> None:
    monday_9 = datetime(2026, 11, 30, 9, tzinfo=UTC)  # 2026-11-30 is a Monday
    assert next_weekly(datetime(2026, 11, 30, 8, tzinfo=UTC), 0, 9) == monday_9
    assert next_weekly(monday_9, 0, 9) == monday_9 + timedelta(days=7)
    assert next_weekly(datetime(2026, 12, 2, 23, tzinfo=UTC), 4, 6) == datetime(2026, 12, 4, 6, tzinfo=UTC)
