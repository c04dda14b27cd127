"""`/imagepull scan --deep [namespace]`: the latent-failure scan (`bot.prevention`) answered in Slack."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from bot.chatops.port import Reply, notice
from bot.flows.context import FlowContext
from bot.prevention.findings import Finding, Risk
from bot.prevention.scanner import LatentScanner, Prober
from bot.slack.render import code, escape, truncate

MAX_LINES = 40
MAX_TEXT = 35_000  # below Slack's 40,000 characters for a message text

WORDS = {
    Risk.TAG_GONE: "tag or digest gone from the registry",
    Risk.REPO_GONE_OR_DENIED: "repository gone, or these credentials may not read it",
    Risk.CREDENTIALS_REJECTED: "pull secret rejected by the registry",
    Risk.NO_CREDENTIALS: "registry wants credentials; a new pod would send none",
    Risk.SECRET_MISSING: "referenced pull secret missing",
    Risk.SECRET_UNPARSABLE: "pull secret unreadable",
    Risk.CREDENTIAL_EXPIRED: "registry credentials expired",
    Risk.CREDENTIAL_EXPIRING: "registry credentials expire soon",
    Risk.PLATFORM_MISSING: "image lacks a platform of nodes it may land on",
    Risk.QUOTA_LOW: "registry pull quota nearly spent",
    Risk.DIGEST_CHANGED: "mutable tag moved since the running pods pulled it",
    Risk.UNCHECKED: "could not check",
}


class PreventionCommands:
    """Runs the scan for a Slack user and renders what it found, grouped by risk."""

    def __init__(self, ctx: FlowContext, *, api: Any, prober: Prober) -> None:
        self.ctx = ctx
        self._scanner = LatentScanner(api, prober, exclude_namespaces=ctx.settings.kube.exclude_namespaces)

    async def deep_scan(self, namespace: str | None) -> Reply:
        report = await self._scanner.scan(namespace)
        scope = f"namespace {code(namespace)}" if namespace else "all namespaces"
        head = (
            f"{report.workloads} workloads, {report.images} images and {report.checks} registry checks in {scope} "
            f"on {code(self.ctx.cluster)}"
        )
        unread = "".join(f"\n:grey_question: {escape(line)}" for line in report.could_not_read)
        if not report.findings:
            return notice(f":white_check_mark: No latent pull failure: {head}.{unread}")
        return notice(truncate(render_findings(report.findings, head) + unread, MAX_TEXT))


def render_findings(findings: list[Finding], head: str) -> str:
    """Findings grouped by risk, one line per workload and container, at most MAX_LINES lines."""
    by_risk: dict[Risk, list[Finding]] = defaultdict(list)
    for f in findings:
        by_risk[f.risk].append(f)
    at_risk = len({(f.namespace, f.workload) for f in findings if f.risk is not Risk.UNCHECKED})
    lines = [f":rotating_light: *{at_risk} workload(s) at risk* of a pull failure on their next pod ({head}):"]
    shown = 0
    for risk in Risk:
        group = by_risk.get(risk, [])
        if not group:
            continue
        lines.append(f"*{WORDS[risk]}* ({len(group)})")
        for f in group:
            if shown >= MAX_LINES:
                break
            where = f"{code(f.namespace)} {code(f.workload)} {code(f.container)}"
            lines.append(f"• {where}: {escape(f.detail)}")
            if f.fix:
                lines.append(f"   `{escape(f.fix)}`")
            shown += 1
    if shown < len(findings):
        lines.append(f"_…and {len(findings) - shown} more: run `imagepull-doctor scan --deep` for all of them._")
    return "\n".join(lines)
