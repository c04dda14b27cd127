"""How the team is doing: incidents, time to resolve, fixes from Slack, failures prevented (pure).

Read from stored incidents and audit rows of one cluster over a window (7 or 30 days):
- incidents opened in the window, by cause; time to resolve (first failing pod to resolution) median and p90 per
  cause and per namespace; the slowest and the most frequent workloads;
- resolved incidents fixed from Slack (an `action.executed` audit row for the incident) and elsewhere;
- latent failures prevented: findings the scan reported that were fixed before any pod failed (the "at risk"
  threads count them as they are fixed).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bot.model import (
    AuditRecord,
    Cause,
    Incident,
    IncidentScope,
    IncidentStatus,
    OutboxKind,
    OutboxMessage,
    WorkloadRef,
)
from bot.slack.render import code


@dataclass(frozen=True, slots=True)
class Spread:
    n: int
    median_s: float | None
    p90_s: float | None


@dataclass(slots=True)
class TeamReport:
    days: int
    opened: int = 0
    resolved: int = 0
    still_open: int = 0
    by_cause: dict[str, Spread] = field(default_factory=dict)
    by_namespace: dict[str, Spread] = field(default_factory=dict)
    slowest: list[tuple[str, str, float]] = field(default_factory=list)  # (ns/workload, cause, seconds)
    most_frequent: list[tuple[str, int]] = field(default_factory=list)
    fixed_from_slack: int = 0
    fixed_elsewhere: int = 0
    prevented: int = 0


def _quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _spread(values: list[float], opened: int) -> Spread:
    return Spread(opened, _quantile(values, 0.5), _quantile(values, 0.9))


def build_report(
    incidents: Iterable[Incident], audit: Iterable[AuditRecord], *, now: datetime, days: int
) -> TeamReport:
    since = now - timedelta(days=days)
    report = TeamReport(days)
    executed = {r.entry.incident_key for r in audit if r.entry.action == "action.executed" and r.entry.incident_key}
    durations_cause: dict[str, list[float]] = defaultdict(list)
    durations_ns: dict[str, list[float]] = defaultdict(list)
    opened_cause: Counter[str] = Counter()
    opened_ns: Counter[str] = Counter()
    frequent: Counter[str] = Counter()
    slow: list[tuple[str, str, float]] = []
    for inc in incidents:
        if inc.scope is IncidentScope.REPORT:
            continue
        if inc.scope is IncidentScope.FINDINGS:
            if inc.last_seen is not None and inc.last_seen >= since:
                report.prevented += inc.pods_seen
            continue
        first = inc.first_seen
        if first is None or first < since:
            continue
        workload = f"{inc.namespace}/{inc.workload}"
        report.opened += 1
        opened_cause[inc.cause.value] += 1
        opened_ns[inc.namespace] += 1
        frequent[workload] += 1 + inc.reopened
        if inc.status is not IncidentStatus.RESOLVED or inc.resolved_at is None:
            report.still_open += 1
            continue
        report.resolved += 1
        seconds = max(0.0, (inc.resolved_at - first).total_seconds())
        durations_cause[inc.cause.value].append(seconds)
        durations_ns[inc.namespace].append(seconds)
        slow.append((workload, inc.cause.value, seconds))
        if inc.key in executed:
            report.fixed_from_slack += 1
        else:
            report.fixed_elsewhere += 1
    report.by_cause = {c: _spread(durations_cause[c], n) for c, n in opened_cause.most_common()}
    report.by_namespace = {ns: _spread(durations_ns[ns], n) for ns, n in opened_ns.most_common()}
    report.slowest = sorted(slow, key=lambda t: -t[2])[:5]
    report.most_frequent = [(w, n) for w, n in frequent.most_common(5) if n > 1]
    return report


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def render_report(report: TeamReport, cluster: str) -> str:
    """The report as mrkdwn (cluster and workload names are put in code spans)."""
    lines = [
        f":bar_chart: *Image pull report for {code(cluster)}, last {report.days} days*",
        f"{report.opened} incident(s): {report.resolved} resolved, {report.still_open} still open · "
        f"fixed from Slack {report.fixed_from_slack}, elsewhere {report.fixed_elsewhere} · "
        f"latent failures fixed before a pod failed: {report.prevented}",
    ]
    if report.by_cause:
        lines.append("*Time to resolve by cause* (median / p90):")
        lines += [f"• {code(c)}: {s.n}, {_dur(s.median_s)} / {_dur(s.p90_s)}" for c, s in report.by_cause.items()]
    if report.by_namespace:
        lines.append("*By namespace* (median / p90):")
        lines += [
            f"• {code(ns)}: {s.n}, {_dur(s.median_s)} / {_dur(s.p90_s)}"
            for ns, s in list(report.by_namespace.items())[:10]
        ]
    if report.slowest:
        lines.append("*Slowest to resolve:* " + ", ".join(f"{code(w)} ({c}, {_dur(s)})" for w, c, s in report.slowest))
    if report.most_frequent:
        lines.append("*Most frequent:* " + ", ".join(f"{code(w)} ×{n}" for w, n in report.most_frequent))
    return "\n".join(lines)


def next_weekly(now: datetime, weekday: int, hour_utc: int) -> datetime:
    """The next time at `weekday` (0 = Monday) `hour_utc`:00 UTC strictly after `now` (an aware datetime)."""
    at = now.astimezone(UTC).replace(hour=hour_utc, minute=0, second=0, microsecond=0)
    at += timedelta(days=(weekday - at.weekday()) % 7)
    return at if at > now else at + timedelta(days=7)


def weekly_post(cluster: str, channel: str, text: str, now: datetime) -> tuple[Incident, tuple[OutboxMessage, ...]]:
    """The weekly report for one channel, as a stored (already resolved) report row and its parent message; the key
    names the ISO week, so a second leader in the same week adds nothing."""
    year, week, _ = now.isocalendar()
    key = f"report|{cluster}|{channel}|{year}-W{week:02d}"
    row = Incident(
        key=key,
        cluster=cluster,
        namespace="*",
        workload=WorkloadRef("Report", "weekly"),
        container="",
        image="",
        registry="",
        cause=Cause.OTHER,
        scope=IncidentScope.REPORT,
        status=IncidentStatus.RESOLVED,
        first_seen=now,
        last_seen=now,
        resolved_at=now,
        channel=channel,
    )
    block: dict[str, object] = {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}
    parent = OutboxMessage(OutboxKind.POST_PARENT, key, channel, text[:3000], (block,), dedup_key=f"{key}:parent")
    return row, (parent,)
