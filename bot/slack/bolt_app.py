"""The Bolt AsyncApp: built once from Settings, served over Socket Mode or HTTP (`POST /slack/events`).

Handlers are attached by the composition root through `register(app)`. One `@app.error` handler answers known
errors (`UserError`) with an ephemeral message and logs unknown ones under a short id that the user also sees.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.settings import Settings
from bot.slack.render import escape

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"


class UserError(Exception):
    """An error whose message is safe and useful to show the user as is (bad command text, missing rights)."""


def _secret(value: Any) -> str:
    return "" if value is None else str(value.get_secret_value())


def build_app(
    settings: Settings,
    *,
    client: AsyncWebClient | None = None,
    register: Callable[[AsyncApp], None] | None = None,
) -> AsyncApp:
    """A Bolt AsyncApp with the bot token (or `client`) and signing secret from `settings`; `register` adds handlers."""
    slack = settings.slack
    if slack.mode == "http" and not _secret(slack.signing_secret):
        # Bolt skips verification without a secret: every forged request would be acted on.
        raise ValueError("HTTP mode needs slack.signing_secret (IMAGEPULL_SLACK__SIGNING_SECRET)")
    if client is None:
        client = AsyncWebClient(token=_secret(slack.bot_token) or None, base_url=slack.base_url)
    app = AsyncApp(
        client=client,
        signing_secret=_secret(slack.signing_secret),  # "" in Socket Mode: never read from the environment
        name="imagepull-doctor",
        logger=logging.getLogger("bot.slack.bolt"),
    )
    app.error(handle_error)
    if register is not None:
        register(app)
    return app


def _where(body: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(channel, user, thread_ts) of a slash command, block action or view submission body."""
    channel = body.get("channel_id")
    if channel is None and isinstance(body.get("channel"), Mapping):
        channel = body["channel"].get("id")
    user = body.get("user_id")
    if user is None and isinstance(body.get("user"), Mapping):
        user = body["user"].get("id")
    thread_ts = None
    message = body.get("message")
    if isinstance(message, Mapping):
        thread_ts = message.get("thread_ts") or message.get("ts")
    return channel, user, thread_ts


async def handle_error(error: Exception, body: dict[str, Any], client: AsyncWebClient, respond: Any = None) -> None:
    """Bolt's global error handler: an ephemeral answer for the user, a log line with an id for unknown errors."""
    if isinstance(error, UserError):
        text = f":warning: {escape(str(error))}"
        log.info("user error: %s", error)
    else:
        error_id = secrets.token_hex(4)
        log.error("unhandled error %s in a Slack listener", error_id, exc_info=error)
        text = f":boom: Something went wrong (error id `{error_id}`); the details are in the bot's log."
    if respond is not None:  # the request's response_url works where the bot cannot post (DMs, other channels)
        try:
            result = await respond(text=text, response_type="ephemeral", replace_original=False)
            if getattr(result, "status_code", 0) == 200:
                return
            log.warning("error answer through response_url refused: HTTP %s", getattr(result, "status_code", 0))
        except Exception as exc:  # best effort, like the fallback below
            log.warning("error answer through response_url failed: %s", type(exc).__name__)
    channel, user, thread_ts = _where(body)
    if channel is None or user is None:
        return
    try:
        await client.chat_postEphemeral(channel=channel, user=user, text=text, thread_ts=thread_ts)
    except Exception as exc:  # the answer is best effort: the error itself is logged above
        log.warning("could not post the error answer: %s", type(exc).__name__)


FirstDelivery = Callable[[str, float], Awaitable[bool]]
ENVELOPE_TTL_S = 3600.0  # Slack redelivers an unacknowledged envelope within minutes


class DedupSocketModeHandler(AsyncSocketModeHandler):
    """Bolt's Socket Mode handler that runs each envelope once: a redelivery (same envelope_id, to this replica or
    another) is acknowledged and dropped."""

    def __init__(self, app: AsyncApp, app_token: str, first_delivery: FirstDelivery | None) -> None:
        super().__init__(app, app_token)
        self._first_delivery = first_delivery

    async def handle(self, client: Any, req: Any) -> None:
        """Ack and drop a redelivered envelope; hand any other to Bolt."""
        envelope_id = str(getattr(req, "envelope_id", "") or "")
        if envelope_id and self._first_delivery is not None:
            try:
                first = await self._first_delivery(f"envelope:{envelope_id}", ENVELOPE_TTL_S)
            except Exception as exc:  # the dedup store is down: handle it rather than drop a user's command
                log.warning("envelope deduplication failed: %s", type(exc).__name__)
                first = True
            if not first:
                log.info("dropped a redelivered Socket Mode envelope")
                await client.send_socket_mode_response(SocketModeResponse(envelope_id=envelope_id))
                return
        await super().handle(client, req)


async def run_socket_mode(app: AsyncApp, app_token: str, first_delivery: FirstDelivery | None = None) -> None:
    """Serve `app` over Socket Mode until cancelled (connects with `apps.connections.open`); envelopes already
    handled (by `first_delivery`, shared through SQL) are acknowledged and dropped."""
    handler = DedupSocketModeHandler(app, app_token, first_delivery)
    await handler.connect_async()  # type: ignore[no-untyped-call]  # unannotated in slack_bolt
    try:
        await asyncio.Event().wait()
    finally:
        await handler.close_async()  # type: ignore[no-untyped-call]  # unannotated in slack_bolt


def http_routes(app: AsyncApp, path: str = EVENTS_PATH) -> web.Application:
    """An aiohttp application serving Slack's signed HTTP requests at `path` (events, commands, interactivity)."""

    async def events(request: web.Request) -> web.Response:
        bolt_response = await app.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(bolt_response)

    web_app = web.Application()
    web_app.router.add_post(path, events)
    return web_app
