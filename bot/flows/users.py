"""Slack users and groups as the flows need them: display names and user-group membership, cached.

users.info (Tier 4) and usergroups.users.list (Tier 2) are rate limited per workspace: a 429 is waited out
(Retry-After, bounded) and retried, and a failed lookup is never cached as an answer: a rate-limited membership
lookup must not refuse an approver for the cache's lifetime. A lookup that still fails keeps the last known answer,
or is remembered only briefly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.identity import SlackProfile

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
        # group id -> (answered at, or None for a failed lookup; reused until; members)
        self._groups: dict[str, tuple[float | None, float, frozenset[str]]] = {}
        self._profiles: dict[str, tuple[float, SlackProfile]] = {}  # user id -> (fetched at, profile)
        self.max_wait_s = 10.0  # longest Retry-After waited out inside a request
        self.failure_ttl_s = 15.0  # how long a failed lookup is not repeated

    async def _call(self, method: str, params: dict[str, str]) -> dict[str, object] | None:
        """One Web API read, a 429 waited out once (Retry-After up to `max_wait_s`); None when it failed."""
        assert self._client is not None
        for attempt in range(2):
            try:
                answer = await self._client.api_call(method, http_verb="GET", params=params)
                return dict(answer.data) if isinstance(answer.data, dict) else None
            except SlackApiError as exc:
                status = int(getattr(exc.response, "status_code", 0) or 0)
                if status != 429 or attempt:
                    log.warning("%s failed: %s", method, exc.response.get("error") or f"http_{status}")
                    return None
                try:
                    wait = float((exc.response.headers or {}).get("Retry-After", 1))
                except (TypeError, ValueError):
                    wait = 1.0
                if wait > self.max_wait_s:
                    log.warning("%s rate limited for %.0fs; not waiting", method, wait)
                    return None
                log.info("%s rate limited; retrying in %.1fs", method, wait)
                await asyncio.sleep(wait)
            except (OSError, TimeoutError) as exc:
                log.warning("%s failed: %s", method, type(exc).__name__)
                return None
        return None

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def name(self, user_id: str) -> str:
        """The user's display name, or their id when Slack cannot tell."""
        hit = self._names.get(user_id)
        if hit is not None and hit[0] > self._now():
            return hit[1]
        if self._client is None:
            return user_id
        answer = await self._call("users.info", {"user": user_id})
        if answer is None:
            stale = hit[1] if hit is not None else user_id
            self._names[user_id] = (self._now() + self.failure_ttl_s, stale)
            return stale
        user = answer.get("user")
        info: dict[str, object] = user if isinstance(user, dict) else {}
        return self._remember(user_id, info)

    def _remember(self, user_id: str, info: dict[str, object]) -> str:
        """Keep what one users.info answer says: the display name, and the profile an identity is mapped from (so
        that the name of an approver and their identity cost one call, not two). Returns the name."""
        found = info.get("profile")
        profile: dict[str, object] = found if isinstance(found, dict) else {}
        name = str(profile.get("display_name") or profile.get("real_name") or info.get("name") or user_id)
        self._names[user_id] = (self._now() + self._name_ttl_s, name)
        if info:
            self._profiles[user_id] = (self._now(), SlackProfile.from_user(info))
        return name

    async def profile(self, user_id: str, *, max_age_s: float) -> SlackProfile | None:
        """What users.info says about the user (email, confirmed, deleted, bot), at most `max_age_s` old; None when
        Slack could not be asked. Never a stale answer: an identity decides actions."""
        hit = self._profiles.get(user_id)
        if hit is not None and self._now() - hit[0] <= max_age_s:
            return hit[1]
        if self._client is None:
            return None
        answer = await self._call("users.info", {"user": user_id})
        user = answer.get("user") if answer is not None else None
        if not isinstance(user, dict):
            return None
        self._remember(user_id, user)
        return self._profiles[user_id][1]

    async def members(self, group_id: str, *, max_age_s: float | None = None) -> frozenset[str]:
        """The user ids of a user group (empty when Slack refuses, e.g. a missing usergroups:read scope).

        With `max_age_s` (a membership that decides an action): only an answer Slack gave at most that long ago, and
        when Slack cannot be asked, no members rather than the last known ones."""
        hit = self._groups.get(group_id)
        now = self._now()
        if (
            hit is not None
            and hit[1] > now
            and (max_age_s is None or (hit[0] is not None and now - hit[0] <= max_age_s))
        ):
            return hit[2]
        if self._client is None:
            return frozenset()
        answer = await self._call("usergroups.users.list", {"usergroup": group_id})
        if answer is None:
            stale = hit[2] if hit is not None else frozenset()
            self._groups[group_id] = (None, self._now() + self.failure_ttl_s, stale)
            return frozenset() if max_age_s is not None else stale
        users = answer.get("users")
        members = frozenset(str(u) for u in users) if isinstance(users, list) else frozenset()
        self._groups[group_id] = (self._now(), self._now() + self._group_ttl_s, members)
        return members

    async def principals(self, user_id: str, groups: Sequence[str]) -> set[str]:
        """The user id plus every group of `groups` the user belongs to."""
        found = {user_id}
        for group in groups:
            if user_id in await self.members(group):
                found.add(group)
        return found
