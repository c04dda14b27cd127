"""Buttons: the diagnosis buttons (`imagepull:<action>`, value {"incident": key}) and Approve / Reject."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.chatops.port import FlowsPort, notice
from bot.model import ActionKind
from bot.slack.render import ACTION_PREFIX
from handlers.answer import actor_of, answer, response_url_of, where_of
from handlers.modals import LINK_TITLE, RECREATE_TITLE, link_secret_view, open_form, recreate_secret_view

log = logging.getLogger(__name__)

_DIRECT = (ActionKind.REDIAGNOSE, ActionKind.DELETE_POD, ActionKind.SNOOZE, ActionKind.MUTE)
_DIRECT_RE = re.compile(re.escape(ACTION_PREFIX) + "(" + "|".join(k.value for k in _DIRECT) + ")$")
_FORMS_RE = re.compile(re.escape(ACTION_PREFIX) + "(recreate_secret|link_secret)$")
_DECIDE_RE = re.compile(re.escape(ACTION_PREFIX) + "(approve|reject)$")


def _value(action: dict[str, Any], key: str) -> object:
    try:
        data = json.loads(str(action.get("value") or ""))
    except json.JSONDecodeError:
        return None
    return data.get(key) if isinstance(data, dict) else None


def register(app: Any, flows: FlowsPort) -> None:
    """Attach the button listeners."""

    async def direct(
        ack: Any, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient, respond: Any
    ) -> None:
        await ack()
        actor, where = actor_of(body), where_of(body)
        key = _value(action, "incident")
        kind = ActionKind(str(action["action_id"]).removeprefix(ACTION_PREFIX))
        if not isinstance(key, str) or not key:
            await flows.refuse_command(actor, "malformed button: no incident")
            await answer(client, where, actor, notice("This button carries no incident.", ok=False), respond)
            return
        await answer(client, where, actor, await flows.button(kind, key, actor, where), respond)

    async def form(
        ack: Any, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient, respond: Any
    ) -> None:
        await ack()
        actor, where = actor_of(body), where_of(body)
        key = _value(action, "incident")
        if not isinstance(key, str) or not key:
            await flows.refuse_command(actor, "malformed button: no incident")
            await answer(client, where, actor, notice("This button carries no incident.", ok=False), respond)
            return
        recreate = str(action["action_id"]).endswith("recreate_secret")
        builder = recreate_secret_view if recreate else link_secret_view
        response_url = response_url_of(body)

        async def build() -> dict[str, Any] | str:
            defaults = await flows.secret_defaults(key)
            if not defaults.namespace:
                await flows.refuse_command(actor, "form button: unknown incident")
                return "This incident is no longer known to the bot."
            return builder(defaults, where.channel, response_url)

        await open_form(client, body.get("trigger_id"), RECREATE_TITLE if recreate else LINK_TITLE, build)

    async def decide(
        ack: Any, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient, respond: Any
    ) -> None:
        await ack()
        actor, where = actor_of(body), where_of(body)
        proposal_id = _value(action, "proposal")
        if not isinstance(proposal_id, int) or isinstance(proposal_id, bool):
            await flows.refuse_command(actor, "malformed button: no proposal")
            await answer(client, where, actor, notice("This button carries no proposal.", ok=False), respond)
            return
        if str(action["action_id"]).endswith("approve"):
            reply = await flows.approve(proposal_id, actor)
        else:
            reply = await flows.reject(proposal_id, actor)
        await answer(client, where, actor, reply, respond)
        message = body.get("message") or {}
        if reply.replace_original and where.channel and message.get("ts"):
            try:  # remove the buttons from the decided proposal's message
                await client.chat_update(
                    channel=where.channel,
                    ts=message["ts"],
                    text=reply.replace_original,
                    blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": reply.replace_original}}],
                )
            except (SlackApiError, OSError, TimeoutError) as exc:
                log.warning("could not update the proposal message: %s", type(exc).__name__)

    app.action(_DIRECT_RE)(direct)
    app.action(_FORMS_RE)(form)
    app.action(_DECIDE_RE)(decide)
