"""Prometheus metrics and the /metrics, /healthz, /readyz endpoints (aiohttp)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


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
        self.watch_restarts = Counter(
            "imagepull_watch_restarts_total", "Watch streams restarted", ["resource"], registry=self.registry
        )
        self.leader = Gauge("imagepull_leader", "1 when this replica leads (watches and posts)", registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)


Check = Callable[[], Awaitable[bool]]


def health_app(metrics: Metrics, checks: dict[str, Check]) -> web.Application:
    """`/metrics`; `/healthz` (the process answers); `/readyz` (every check true, e.g. watch synced, database up)."""

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
        return web.json_response({"ok": ok, "checks": results}, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
