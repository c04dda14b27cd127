"""The read commands: status, report, diagnose (a pod or a deployment) and scan (every pull failure now)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from kubernetes_asyncio import client as k8s

from bot import imageref
from bot.chatops.grammar import REPORT_WINDOWS, Command
from bot.chatops.port import Block, Reply, notice, section
from bot.diagnoser import Diagnoser
from bot.diagnosis.classify import classify
from bot.flows.context import FlowContext
from bot.flows.reader import PodReader
from bot.kube.podstate import controller_owner, deployment_name_guess, error_text, pull_waits
from bot.model import Diagnosis, Incident, IncidentScope, PullFailure
from bot.reporting import build_report, render_report
from bot.slack.render import code, escape, render_diagnosis, truncate, unique_block_ids


class ReadCommands:
    """Answers to the commands that change nothing, on this bot's cluster."""

    def __init__(self, ctx: FlowContext, *, api: Any, identity: str, reader: PodReader, diagnoser: Diagnoser) -> None:
        self.ctx = ctx
        self.api = api
        self.identity = identity
        self.reader = reader
        self.diagnoser = diagnoser
        self._core: Any = k8s.CoreV1Api(api)

    async def status(self) -> Reply:
        """This bot's cluster, its open incidents and the proposals waiting for a decision."""
        stored = await self.ctx.store.open_incidents(self.ctx.cluster)
        incidents = [i for i in stored if i.scope is not IncidentScope.FINDINGS]
        at_risk = len(stored) - len(incidents)
        pending = await self.ctx.store.pending_proposals()
        by_cluster: dict[str, int] = {}
        for p in pending:
            by_cluster[p.cluster] = by_cluster.get(p.cluster, 0) + 1
        waiting = ", ".join(f"{code(c)}: {n}" for c, n in sorted(by_cluster.items())) or "none"
        rule = "on" if self.ctx.policy.two_person_rule else "off"
        lines = [
            f":satellite: Bot of cluster {code(self.ctx.cluster)} ({code(self.identity)}).",
            f"*Open incidents on this cluster:* {len(incidents)}"
            + (f" · *channels with workloads at risk (latent-failure scan):* {at_risk}" if at_risk else ""),
            f"*Proposals waiting for approval:* {waiting}",
            f"*Two-person rule:* {rule} · *proposals expire after* {int(self.ctx.settings.access.proposal_ttl_s)}s",
            f"*Who decides:* {_DECIDES[self.ctx.authority.mode]}",
        ]
        return notice("\n".join(lines))

    async def report(self, window: str) -> Reply:
        """How the team did over the last 7 or 30 days on this cluster (see `bot.reporting`)."""
        days = REPORT_WINDOWS.get(window, 7)
        now = self.ctx.now()
        incidents = await self.ctx.store.recent_incidents(limit=20_000, cluster=self.ctx.cluster)
        audit = await self.ctx.store.list_audit(since=now - timedelta(days=days), limit=100_000)
        return notice(render_report(build_report(incidents, audit, now=now, days=days), self.ctx.cluster))

    async def diagnose_failures(self, failures: Sequence[PullFailure]) -> list[tuple[PullFailure, Diagnosis]]:
        """Full diagnosis (fresh registry probe) of each failure."""
        return [(f, await self.diagnoser.diagnose(f)) for f in failures]

    async def diagnose(self, cmd: Command) -> Reply:
        """`diagnose ns/pod` or `diagnose deploy/name -n ns`: the verified diagnosis of each failing container."""
        ns, name = cmd.namespace or "", cmd.name or ""
        if cmd.workload_kind == "Deployment":
            pods = await self.reader.deployment_pods(ns, name)
            if pods is None:
                return notice(
                    f"Deployment {code(f'{ns}/{name}')} does not exist on {code(self.ctx.cluster)}.", ok=False
                )
            what = f"deployment {code(f'{ns}/{name}')}"
        else:
            pods, what = [name], f"pod {code(f'{ns}/{name}')}"
            if await self.reader.pod_dict(ns, name) is None:
                return notice(f"Pod {code(f'{ns}/{name}')} does not exist on {code(self.ctx.cluster)}.", ok=False)
        failures: list[PullFailure] = []
        for pod in pods[:20]:
            failures.extend(await self.reader.failures_of_pod(ns, pod))
        if not failures:
            return notice(f":white_check_mark: No container of {what} is waiting on an image pull.")
        unique: dict[tuple[str, str], PullFailure] = {}
        for f in failures:
            unique.setdefault((f.container, f.image), f)
        results = await self.diagnose_failures(list(unique.values())[:3])
        blocks: list[Block] = []
        texts: list[str] = []
        for failure, diagnosis in results:
            incident = await self._incident_for(failure)
            shown = incident or synthetic_incident(failure)
            message = render_diagnosis(shown, diagnosis)
            body = [b for b in message.blocks if incident is not None or b.get("type") != "actions"]
            blocks.append(section(f"*{escape(failure.pod)}* · container {code(failure.container)}"))
            blocks.extend(body)
            texts.append(message.text)
        return Reply(text=truncate(" | ".join(texts), 3000), blocks=tuple(unique_block_ids(blocks[:50])))

    async def _incident_for(self, failure: PullFailure) -> Incident | None:
        for inc in await self.ctx.store.open_incidents(self.ctx.cluster):
            if (
                inc.namespace == failure.namespace
                and inc.workload == failure.workload
                and inc.container == failure.container
                and inc.image == failure.image
            ):
                return inc
        return None

    async def scan(self, namespace: str | None) -> Reply:
        """Every container waiting on an image pull now, grouped by namespace, workload, image and cause."""
        if namespace:
            pods = await self._core.list_namespaced_pod(namespace)
        else:
            pods = await self._core.list_pod_for_all_namespaces()
        kube = self.ctx.settings.kube
        excluded = set(kube.exclude_namespaces) if not namespace else set()
        included = set(kube.include_namespaces) if not namespace else set()
        groups: dict[tuple[str, str, str, str], list[str]] = {}
        for obj in pods.items or ():
            data = self.api.sanitize_for_serialization(obj)
            meta = data.get("metadata") or {}
            ns = str(meta.get("namespace", ""))
            if ns in excluded or (included and ns not in included):
                continue
            owner = controller_owner(data)
            workload = f"pod/{meta.get('name', '')}"
            if owner is not None:
                kind, oname = str(owner.get("kind", "")), str(owner.get("name", ""))
                guess = deployment_name_guess(oname, meta.get("labels") or {}) if kind == "ReplicaSet" else None
                workload = f"deployment/{guess}" if guess else f"{kind.lower()}/{oname}"
            for c in pull_waits(data):
                cause = classify(error_text(c.waiting_message), None, c.waiting_reason).cause.value
                groups.setdefault((ns, workload, c.image, cause), []).append(str(meta.get("name", "")))
        scope = f"namespace {code(namespace)}" if namespace else "all namespaces"
        if not groups:
            return notice(f":white_check_mark: No pull failures in {scope} on {code(self.ctx.cluster)}.")
        lines = [f":mag: *{len(groups)} pull failure group(s)* in {scope} on {code(self.ctx.cluster)}:"]
        for (ns, workload, image, cause), pods_of in sorted(groups.items())[:30]:
            n = len(pods_of)
            lines.append(
                f"• {code(truncate(ns, 63))} {code(truncate(workload, 260))} image {code(truncate(image, 300))}:"
                f" {code(cause)}, {n} pod{'s' if n != 1 else ''}"
            )
        if len(groups) > 30:
            lines.append(f"_…and {len(groups) - 30} more groups._")
        return notice("\n".join(lines))


def synthetic_incident(failure: PullFailure) -> Incident:
    """An unsaved incident for rendering a command's diagnosis (its buttons are left out)."""
    ref = imageref.try_parse(failure.image)
    return Incident(
        key="adhoc",
        cluster=failure.cluster,
        namespace=failure.namespace,
        workload=failure.workload,
        container=failure.container,
        image=failure.image,
        registry=imageref.registry_key(ref.registry) if ref is not None else "unknown",
        cause=classify(failure.message).cause,
    )


_DECIDES = {
    "grants": "the bot's grants; fixes run as the bot",
    "kubernetes": "the cluster's RBAC for your Kubernetes identity (SubjectAccessReview); fixes run as the approver",
    "both": "the bot's grants and the cluster's RBAC; fixes run as the approver",
}
