"""Fixtures of the security tests: the handlers' world (simulated cluster and registry, SQLite, fake Slack, the real
Bolt app over signed HTTP) re-used as is, and helpers to give a test its own grants."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from bot.access import AccessPolicy
from bot.flows import Flows
from bot.kube.client import load_api_client
from bot.registry.probe import RegistryProber
from bot.settings import Settings
from bot.slack.bolt_app import build_app, http_routes
from bot.store.store import Store
from handlers import register_all
from testkit.loopback import serve_on_loopback
from tests.handlers.conftest import SlackEndpoint, World, endpoint, sqlite_template, world

__all__ = ["endpoint", "grant", "loopback_server", "rebuild", "serve_app", "sqlite_template", "submission", "world"]


def grant(w: World, grants: Mapping[str, Sequence[str]], *, two_person: bool = False) -> None:
    """Replace the grants of the world's bot (the policy every flow reads through the shared context)."""
    policy = AccessPolicy(grants, two_person_rule=two_person)
    w.flows.policy = policy
    w.flows.ctx.policy = policy


async def rebuild(w: World, settings: Settings, *, store: Store | None = None) -> Flows:
    """Give the world's bot new settings (a new Flows on the same or the given store, API server and Slack)."""
    api = await load_api_client(settings.kube)
    prober = RegistryProber(settings.registry)
    w._closers += [prober.close, api.close]
    if store is not None:
        w._closers.append(store.close)
        w.store = store
    flows = Flows(settings=settings, store=w.store, api=api, prober=prober, slack=w.client, identity="prod-1")
    w.flows = flows
    return flows


@contextlib.asynccontextmanager
async def serve_app(w: World) -> AsyncIterator[SlackEndpoint]:
    """The real Bolt app of the world's current bot, served over HTTP on loopback."""
    app = build_app(w.flows.settings, client=w.client, register=lambda a: register_all(a, w.flows))
    runner, port = await serve_on_loopback(http_routes(app))
    try:
        yield SlackEndpoint(f"http://127.0.0.1:{port}/slack/events")
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def loopback_server(routes: Callable[[web.Application], None]) -> AsyncIterator[tuple[str, list[str]]]:
    """A hostile or internal HTTP server on 127.0.0.1: yields ("127.0.0.1:PORT", paths it was asked for)."""
    seen: list[str] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        seen.append(request.path_qs)
        response: web.StreamResponse = await handler(request)
        return response

    app = web.Application(middlewares=[record])
    routes(app)
    runner, port = await serve_on_loopback(app)
    try:
        yield f"127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


def submission(view: dict[str, Any], typed: dict[str, str], user: str) -> str:
    """A view_submission body with `typed` values in the view's input blocks."""
    state = {"values": {block: {"value": {"type": "plain_text_input", "value": v}} for block, v in typed.items()}}
    payload = {
        "type": "view_submission",
        "team": {"id": "TFAKE001"},
        "user": {"id": user},
        "api_app_id": "AFAKE001",
        "view": {**view, "id": "V1", "state": state},
    }
    return urlencode({"payload": json.dumps(payload)})
