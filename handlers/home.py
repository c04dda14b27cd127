"""The App Home tab: published for a user when they open it (`app_home_opened`, tab "home")."""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.chatops.port import Actor, FlowsPort

log = logging.getLogger(__name__)


def register(app: Any, flows: FlowsPort) -> None:
    """Attach the `app_home_opened` listener."""

    async def home_opened(event: dict[str, Any], client: AsyncWebClient) -> None:
        user = str(event.get("user") or "")
        if not user or event.get("tab", "home") != "home":
            return
        view = await flows.home(Actor(user))
        try:
            await client.views_publish(user_id=user, view=view)
        except SlackApiError as exc:
            log.warning("App Home for %s not published: %s", user, exc.response.get("error"))

    app.event("app_home_opened")(home_opened)
