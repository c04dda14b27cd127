"""What every listener needs: who clicked or typed, where, and how to answer them privately."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

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


async def answer(client: AsyncWebClient, where: Where, actor: Actor, reply: Reply) -> None:
    """Post `reply` as an ephemeral message to the user (best effort: a failure is logged, never raised)."""
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
    except (SlackApiError, OSError, TimeoutError) as exc:
        log.warning("ephemeral answer failed: %s", type(exc).__name__)
