"""`/imagepull scan --deep [namespace]`: the latent-failure scan (`bot.prevention`) answered in Slack."""

from __future__ import annotations

from typing import Any

from bot.chatops.port import Reply, notice
from bot.flows.context import FlowContext
from bot.prevention.render import render_findings
from bot.prevention.scanner import LatentScanner, Prober
from bot.slack.render import code, escape, truncate

MAX_TEXT = 35_000  # below Slack's 40,000 characters for a message text


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
