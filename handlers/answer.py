"""What every listener needs: who clicked or typed, where, and how to answer them privately.

Answers go through the request's `response_url` (Bolt's `respond`): Slack accepts it in direct messages and in
channels the bot is not in, where `chat.postEphemeral` fails (channel_not_found / not_in_channel), for 30 minutes
and 5 uses. `chat.postEphemeral` is the fallback when a request carries no usable response_url.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.chatops.port import Actor, Reply, Where

log = logging.getLogger(__name__)


def actor_of(body: Mapping[str, Any]) -> Actor:
    """The Slack user of a slash command, block action or view submission (name resolved later by the flows)."""
    user = body.get("user_id")
    if user is None and isinstance(body.get("user"), Mapping):
        user = body["user"].get("id")
    return Actor(str(user or ""))


def where_of(body: Mapping[str, Any]) -> Where:
    """The channel (and thread, for a click on a threaded message) of a request."""
    channel = body.get("channel_id")
    if channel is None and isinstance(body.get("channel"), Mapping):
        channel = body["channel"].get("id")
    thread_ts = None
    message = body.get("message")
    if isinstance(message, Mapping):
        thread_ts = message.get("thread_ts") or message.get("ts")
    return Where(str(channel or ""), str(thread_ts) if thread_ts else None)


def response_url_of(body: Mapping[str, Any]) -> str | None:
    """The response_url of a slash command or block action (None when Slack sent none)."""
    url = body.get("response_url")
    if not url:
        urls = body.get("response_urls")
        if isinstance(urls, list) and urls and isinstance(urls[0], Mapping):
            url = urls[0].get("response_url")
    return str(url) if url else None


async def _via_response_url(respond: Any, reply: Reply) -> bool:
    try:
        result = await respond(
            text=reply.text, blocks=list(reply.blocks) or None, response_type="ephemeral", replace_original=False
        )
    except ValueError:  # Bolt's respond without a response_url in the request
        return False
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        log.warning("answer through response_url failed: %s", type(exc).__name__)
        return False
    status = int(getattr(result, "status_code", 0) or 0)
    if status == 200:
        return True
    log.warning("answer through response_url refused: HTTP %s %s", status, str(getattr(result, "body", ""))[:40])
    return False


async def answer(
    client: AsyncWebClient,
    where: Where,
    actor: Actor,
    reply: Reply,
    respond: Any = None,
    *,
    response_url: str | None = None,
) -> None:
    """Answer the user privately: through `respond` / `response_url` when the request has one, else with
    chat.postEphemeral (best effort: a failure is logged, never raised)."""
    if respond is None and response_url:
        respond = AsyncWebhookClient(response_url).send
    if respond is not None and await _via_response_url(respond, reply):
        return
    if not where.channel or not actor.id:
        log.info("no channel to answer in; reply dropped")
        return
    try:
        await client.chat_postEphemeral(
            channel=where.channel,
            user=actor.id,
            text=reply.text,
            blocks=list(reply.blocks) or None,
            thread_ts=where.thread_ts,
        )
    except SlackApiError as exc:
        log.warning("ephemeral answer failed: %s", exc.response.get("error"))
    except (OSError, TimeoutError) as exc:
        log.warning("ephemeral answer failed: %s", type(exc).__name__)
