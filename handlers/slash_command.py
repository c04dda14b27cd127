"""The `/imagepull` slash command: parse strictly, answer parse errors at once, run the flow, answer privately."""

from __future__ import annotations

from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.chatops.grammar import ParseError, Verb, parse
from bot.chatops.port import FlowsPort
from bot.slack.render import escape
from handlers.answer import actor_of, answer, response_url_of, where_of
from handlers.modals import RECREATE_TITLE, open_form, recreate_secret_view

COMMAND = "/imagepull"


def register(app: Any, flows: FlowsPort) -> None:
    """Attach the `/imagepull` listener."""

    async def imagepull(ack: Any, command: dict[str, Any], client: AsyncWebClient, respond: Any) -> None:
        actor, where = actor_of(command), where_of(command)
        try:
            cmd = parse(str(command.get("text") or ""))
        except ParseError as exc:
            await ack(text=f":warning: {escape(exc.message)}\nUsage: `{escape(exc.usage)}`")
            await flows.refuse_command(actor, exc.message)
            return
        if cmd.verb is Verb.RECREATE_SECRET and cmd.source_name is None:
            await ack()
            response_url = response_url_of(command)

            async def build() -> dict[str, Any]:
                defaults = await flows.secret_defaults(None, cmd)
                return recreate_secret_view(defaults, where.channel, response_url)

            await open_form(client, command.get("trigger_id"), RECREATE_TITLE, build)
            return
        await ack()
        await answer(client, where, actor, await flows.command(cmd, actor, where), respond)

    app.command(COMMAND)(imagepull)
