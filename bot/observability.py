"""Prometheus metrics and the /metrics, /healthz, /readyz endpoints (aiohttp).

Metric names (documented in docs/OPERATIONS.md): `imagepull_incidents_open{cause}`, `imagepull_incidents_total{cause}`,
`imagepull_diagnosis_seconds`, `imagepull_registry_probe_total{outcome}`, `imagepull_slack_calls_total{method,result}`,
`imagepull_slack_retries_total`, `imagepull_slack_permanent_failures_total{error}`,
`imagepull_watch_restarts_total{resource}`, `imagepull_leader`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.imageref import ImageRef
from bot.model import Credentials, Incident, IncidentStatus, OutboxKind, OutboxMessage, ProbeResult

log = logging.getLogger(__name__)


class Metrics:
    """The bot's metrics, on a registry of their own (several bots in one test process stay apart)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.incidents_open = Gauge(
            "imagepull_incidents_open", "Open incidents by cause", ["cause"], registry=self.registry
        )
        self.incidents_total = Counter(
            "imagepull_incidents_total", "Incidents opened, by cause", ["cause"], registry=self.registry
        )
        self.diagnosis_seconds = Histogram(
            "imagepull_diagnosis_seconds",
            "Time from a pull failure to its verified diagnosis",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
            registry=self.registry,
        )
        self.time_to_resolve = Histogram(
            "imagepull_time_to_resolve_seconds",
            "From an incident's first failing pod to its resolution, by cause",
            ["cause"],
            buckets=(60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600, 72 * 3600),
            registry=self.registry,
        )
        self.probe_outcomes = Counter(
            "imagepull_registry_probe_total", "Registry probes by outcome", ["outcome"], registry=self.registry
        )
        self.slack_calls = Counter(
            "imagepull_slack_calls_total",
            "Slack Web API calls by method and result",
            ["method", "result"],
            registry=self.registry,
        )
        self.slack_retries = Counter("imagepull_slack_retries_total", "Slack writes retried", registry=self.registry)
        self.slack_permanent = Counter(
            "imagepull_slack_permanent_failures_total",
            "Slack writes failed at once because Slack refused them for good, by error code",
            ["error"],
            registry=self.registry,
        )
        self.watch_restarts = Counter(
            "imagepull_watch_restarts_total", "Watch streams restarted", ["resource"], registry=self.registry
        )
        self._findings: set[str] = set()
        self.latent_findings = Gauge(
            "imagepull_latent_findings",
            "Latent pull failures found by the last scan, by risk",
            ["risk"],
            registry=self.registry,
        )
        self.leader = Gauge("imagepull_leader", "1 when this replica leads (watches and posts)", registry=self.registry)
        self._before_render: list[Callable[[], None]] = []
        self._totals: dict[tuple[int, str], float] = {}
        self._open: dict[str, str] = {}  # incident key -> cause, of open incidents
        self._causes_seen: set[str] = set()

    def before_render(self, hook: Callable[[], None]) -> None:
        """Run `hook` before each render (copies counters kept elsewhere, e.g. by the outbox worker)."""
        self._before_render.append(hook)

    def sync_total(self, counter: Any, source: str, total: float) -> None:
        """Advance `counter` (a metric or labelled child) to follow a monotonic `total` kept by `source`.

        A new source (e.g. the watcher of a new leadership term) starts from zero again: name it differently."""
        key = (id(counter), source)
        last = self._totals.get(key, 0.0)
        if total > last:
            counter.inc(total - last)
        self._totals[key] = max(last, total)

    # ---- incidents ----

    def incident_saved(self, incident: Incident, outbox: Sequence[OutboxMessage]) -> None:
        """Count a stored incident change: a new thread counts as opened; open incidents are gauged by cause."""
        cause = incident.cause.value
        if any(m.kind is OutboxKind.POST_PARENT for m in outbox):
            self.incidents_total.labels(cause=cause).inc()
        if incident.status is IncidentStatus.OPEN:
            self._open[incident.key] = cause
        else:
            was_open = self._open.pop(incident.key, None) is not None
            if was_open and incident.resolved_at is not None and incident.first_seen is not None:
                seconds = (incident.resolved_at - incident.first_seen).total_seconds()
                self.time_to_resolve.labels(cause=cause).observe(max(0.0, seconds))
        self._set_open()

    def set_findings(self, by_risk: Mapping[str, int]) -> None:
        """Gauge the last scan's findings by risk (risks that disappeared drop to 0)."""
        for labels in list(self._findings):
            if labels not in by_risk:
                self.latent_findings.labels(risk=labels).set(0)
        for risk, n in by_risk.items():
            self.latent_findings.labels(risk=risk).set(n)
        self._findings = set(by_risk)

    def reset_open(self, incidents: Iterable[Incident]) -> None:
        """Gauge exactly these open incidents (when the book is reloaded; empty when not leading)."""
        self._open = {i.key: i.cause.value for i in incidents if i.status is IncidentStatus.OPEN}
        self._set_open()

    def _set_open(self) -> None:
        counts: dict[str, int] = {}
        for cause in self._open.values():
            counts[cause] = counts.get(cause, 0) + 1
        self._causes_seen.update(counts)
        for cause in self._causes_seen:
            self.incidents_open.labels(cause=cause).set(counts.get(cause, 0))

    def render(self) -> bytes:
        """The text exposition of every metric."""
        for hook in self._before_render:
            try:
                hook()
            except Exception:
                log.exception("metrics hook failed")
        return generate_latest(self.registry)


class MeteredProber:
    """A registry prober that counts each probe's outcome (`imagepull_registry_probe_total`)."""

    def __init__(self, prober: Any, metrics: Metrics) -> None:
        self._prober = prober
        self._metrics = metrics

    async def probe(
        self,
        ref: ImageRef,
        credentials: Credentials | None,
        node_platform: str | None,
        *,
        fresh: bool = False,
        near_names: bool = True,
    ) -> ProbeResult:
        """Probe through the wrapped prober and count the outcome ("exception" when it raised)."""
        try:
            result: ProbeResult = await self._prober.probe(
                ref, credentials, node_platform, fresh=fresh, near_names=near_names
            )
        except Exception:
            self._metrics.probe_outcomes.labels(outcome="exception").inc()
            raise
        self._metrics.probe_outcomes.labels(outcome=result.outcome.value).inc()
        return result


class MeteredWebClient(AsyncWebClient):
    """An AsyncWebClient that counts each Web API call by method and result (`ok`, Slack's error code, ...)."""

    metrics: Metrics | None = None

    @classmethod
    def like(cls, client: AsyncWebClient, metrics: Metrics) -> MeteredWebClient:
        """A metered client with the same token, base URL, session, timeouts and retry handlers as `client`."""
        metered = cls(
            token=client.token,
            base_url=client.base_url,
            timeout=client.timeout,
            ssl=client.ssl,
            proxy=client.proxy,
            session=client.session,
            trust_env_in_session=client.trust_env_in_session,
            headers=dict(client.headers or {}),
            team_id=client.default_params.get("team_id"),
            retry_handlers=list(client.retry_handlers),
        )
        metered.metrics = metrics
        return metered

    async def api_call(self, api_method: str, **kwargs: Any) -> AsyncSlackResponse:
        """Call the Web API and count the result (the copy the outbox makes keeps the counting)."""
        try:
            response: AsyncSlackResponse = await super().api_call(api_method, **kwargs)
        except SlackApiError as exc:
            data = getattr(exc.response, "data", None)
            error = data.get("error") if isinstance(data, dict) else None
            status = getattr(exc.response, "status_code", 0)
            self._count(api_method, str(error or f"http_{status}"))
            raise
        except Exception as exc:
            self._count(api_method, type(exc).__name__)
            raise
        self._count(api_method, "ok")
        return response

    def _count(self, method: str, result: str) -> None:
        if self.metrics is not None:
            self.metrics.slack_calls.labels(method=method, result=result).inc()


Check = Callable[[], Awaitable[bool]]


def health_app(
    metrics: Metrics, checks: dict[str, Check], details: Callable[[], dict[str, object]] | None = None
) -> web.Application:
    """`/metrics`; `/healthz` (the process answers); `/readyz` (every check true, e.g. watch synced, database up;
    `details` adds what an operator needs to act on a failed check, e.g. which Slack channels are unusable)."""

    async def metrics_view(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def readyz(_: web.Request) -> web.Response:
        results: dict[str, bool] = {}
        for name, check in checks.items():
            try:
                results[name] = await check()
            except Exception:
                results[name] = False
        ok = all(results.values())
        body: dict[str, object] = {"ok": ok, "checks": results}
        if details is not None:
            body.update(details())
        return web.json_response(body, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
