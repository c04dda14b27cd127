"""Slack users and groups as the flows need them: display names and user-group membership, cached."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)


class UserDirectory:
    """Display names (users.info) and user-group membership (usergroups.users.list), cached."""

    def __init__(
        self, client: AsyncWebClient | None, *, name_ttl_s: float = 3600.0, group_ttl_s: float = 300.0
    ) -> None:
        self._client = client
        self._name_ttl_s = name_ttl_s
        self._group_ttl_s = group_ttl_s
        self._names: dict[str, tuple[float, str]] = {}
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def name(self, user_id: str) -> str:
        """The user's display name, or their id when Slack cannot tell."""
        hit = self._names.get(user_id)
        if hit is not None and hit[0] > self._now():
            return hit[1]
        name = user_id
        if self._client is not None:
            try:
                info = (await self._client.users_info(user=user_id)).get("user") or {}
                profile = info.get("profile") or {}
                name = str(profile.get("display_name") or profile.get("real_name") or info.get("name") or user_id)
            except (SlackApiError, OSError, TimeoutError) as exc:
                log.warning("users.info failed: %s", type(exc).__name__)
        self._names[user_id] = (self._now() + self._name_ttl_s, name)
        return name

    async def members(self, group_id: str) -> frozenset[str]:
        """The user ids of a user group (empty when Slack refuses, e.g. a missing usergroups:read scope)."""
        hit = self._groups.get(group_id)
        if hit is not None and hit[0] > self._now():
            return hit[1]
        members: frozenset[str] = frozenset()
        if self._client is not None:
            try:
                answer = await self._client.api_call(
                    "usergroups.users.list", http_verb="GET", params={"usergroup": group_id}
                )
                members = frozenset(str(u) for u in answer.get("users") or [])
            except (SlackApiError, OSError, TimeoutError) as exc:
                log.warning("usergroups.users.list failed for %s: %s", group_id, type(exc).__name__)
        self._groups[group_id] = (self._now() + self._group_ttl_s, members)
        return members

    async def principals(self, user_id: str, groups: Sequence[str]) -> set[str]:
        """The user id plus every group of `groups` the user belongs to."""
        found = {user_id}
        for group in groups:
            if user_id in await self.members(group):
                found.add(group)
        return found
