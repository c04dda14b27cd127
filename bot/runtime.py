"""The one way to run the bot: `run_bot` builds every task of a bot process and runs them until `stop` is set.

The CLI's `run`, the demo, the benchmarks and every test harness call it, so what they run is what production runs:
- the outbox worker (every replica; claims keep each row to one sender);
- the leader-elected duties (watcher, incident book and its ticker; `bot.composition.Bot.run_leader_elected`);
- the approval executor (every replica; it claims approved proposals of its own cluster);
- the Slack app, in HTTP mode (`slack.mode=http`) or Socket Mode (when an app token is set): a Socket Mode
  connection is held only while this replica leads its cluster (Slack allows 10 per app), and only on the
  clusters named in `slack.socket_clusters` when that is set;
- `/metrics`, `/healthz`, `/readyz` on `metrics_port` (0: not served).
Timings are settings (`outbox`, `executor`, `incidents`, `ha`), not arguments of a harness.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient

from bot.aio import cancel_and_wait
from bot.composition import Bot
from bot.flows import Flows
from bot.settings import Settings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Running:
    """What a caller of `run_bot` may look at once every task has started; `ended` lists the tasks that ended by
    themselves (name and exception), filled in when `run_bot` returns."""

    bot: Bot
    flows: Flows
    ended: list[tuple[str, BaseException | None]] = field(default_factory=list)


def build_flows(bot: Bot) -> Flows:
    """The Slack-initiated flows of a built bot (its store, API client, prober, inspector, book, Slack client)."""
    return Flows(
        settings=bot.settings,
        store=bot.store,
        api=bot.api,
        prober=bot.prober,
        slack=bot.slack,
        identity=bot.identity,
        inspector=bot.inspector,
        book=bot.book,
        wake_outbox=bot.outbox_wake,
    )


async def serve(app: web.Application, port: int, host: str = "0.0.0.0") -> Callable[[], Awaitable[None]]:  # noqa: S104
    """Start an aiohttp app on host:port (the pod IP for probes and Prometheus); return its cleanup."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner.cleanup


async def run_bot(
    settings: Settings,
    *,
    stop: asyncio.Event,
    slack: AsyncWebClient | None = None,
    bot: Bot | None = None,
    on_ready: Callable[[Running], None] | None = None,
) -> int:
    """Build the bot (unless given), start every task, call `on_ready`, run until `stop` or a task fails.

    Returns 0 after a requested stop, 1 when a task ended by itself (its error is logged)."""
    bot = bot or await Bot.create(settings, slack=slack)
    flows = build_flows(bot)
    running = Running(bot, flows)
    cleanups: list[Callable[[], Awaitable[None]]] = []
    tasks = [
        asyncio.create_task(bot.outbox.run(), name="outbox"),
        asyncio.create_task(bot.run_leader_elected(), name="leader"),
        # Approved fixes and requests forwarded from other clusters' bots run here, each exactly once.
        asyncio.create_task(flows.run_executor(), name="executor"),
    ]
    try:
        if settings.metrics_port:
            cleanups.append(await serve(bot.health(), settings.metrics_port))
        tasks.extend(await _start_slack_app(settings, bot, flows, cleanups))
        if on_ready is not None:
            on_ready(running)
        waiter = asyncio.create_task(stop.wait(), name="stop")
        done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancel_and_wait(*tasks, swallow_errors=True)
        for cleanup in cleanups:
            await cleanup()
        await bot.close()
    for t in done:
        if t is not waiter:
            error = None if t.cancelled() else t.exception()
            running.ended.append((t.get_name(), error))
            log.error("%s stopped: %r", t.get_name(), error)
    return 1 if running.ended else 0


async def _start_slack_app(
    settings: Settings, bot: Bot, flows: Flows, cleanups: list[Callable[[], Awaitable[None]]]
) -> list[asyncio.Task[None]]:
    """Serve the Bolt app over HTTP or Socket Mode; without either, slash commands cannot reach this bot."""
    slack = settings.slack
    if slack.mode != "http" and slack.app_token is None:
        log.warning("no Slack app token: Socket Mode off, slash commands and buttons will not reach this bot")
        return []
    from bot.slack.bolt_app import build_app, http_routes, run_socket_mode
    from handlers import register_all

    app = build_app(settings, client=bot.slack, register=lambda a: register_all(a, flows))
    if slack.mode == "http":
        cleanups.append(await serve(http_routes(app), slack.http_port, slack.http_host))
        return []
    assert slack.app_token is not None
    token = slack.app_token.get_secret_value()
    if slack.socket_clusters and settings.kube.cluster_name not in slack.socket_clusters:
        log.info("Socket Mode held by the leaders of %s, not this cluster", ", ".join(slack.socket_clusters))
        return []

    def run(a: Any, t: str) -> Coroutine[Any, Any, None]:
        return run_socket_mode(a, t, flows.first_delivery)  # Socket Mode redeliveries are seen once (envelope_id)

    return [asyncio.create_task(_socket_while_leading(bot, app, token, run), name="socket-mode")]


async def _socket_while_leading(
    bot: Bot, app: object, token: str, run: Callable[[Any, str], Coroutine[Any, Any, None]]
) -> None:
    """Hold the Socket Mode connection while this replica leads; close it when leadership is lost."""
    while True:
        await bot.is_leader.wait()
        log.info("Socket Mode: connecting (this replica leads %s)", bot.cluster)
        socket: asyncio.Task[None] = asyncio.create_task(run(app, token), name="socket-connection")
        lost = asyncio.create_task(_cleared(bot.is_leader))
        try:
            done, _ = await asyncio.wait({socket, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(socket, lost)
        if socket in done and not socket.cancelled() and socket.exception() is not None:
            raise socket.exception()  # type: ignore[misc]
        log.info("Socket Mode: disconnected (leadership lost)")


async def _cleared(event: asyncio.Event) -> None:
    while event.is_set():  # noqa: ASYNC110 - asyncio.Event has no "wait until cleared"
        await asyncio.sleep(0.1)
