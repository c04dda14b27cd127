"""Channel names to IDs, and whether the bot can use each configured channel.

Slack's `conversations.history` and `conversations.replies` take a conversation ID and answer `channel_not_found`
for a `#name`; they also need the bot to be a member (`not_in_channel`), even when `chat:write.public` lets it post
without joining. The outbox reconciles through those two methods before it re-posts, so it must work in IDs and
must be a member of every channel it posts to. `ChannelDirectory` resolves names once (`conversations.list`, or
`conversations.info` for an ID), joins public channels it is not in (`conversations.join`, scope `channels:join`),
and keeps a report of the channels it cannot use, with the one thing an operator has to do about each.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)

_ID_RE = re.compile(r"^[CGD][A-Z0-9]{2,}$")


def is_channel_id(ref: str) -> bool:
    """True for a Slack conversation ID (`C…`, `G…`, `D…`), False for a `#name`."""
    return bool(_ID_RE.match(ref))


@dataclass(frozen=True, slots=True)
class ChannelProblem:
    """A configured channel the bot cannot use, why, and what fixes it."""

    channel: str
    reason: str
    fix: str

    def line(self) -> str:
        return f"{self.channel}: {self.reason} ({self.fix})"


@dataclass(slots=True)
class ChannelReport:
    """What start-up found: configured name or ID -> channel ID, and the unusable ones."""

    ids: dict[str, str] = field(default_factory=dict)
    problems: dict[str, ChannelProblem] = field(default_factory=dict)
    checked: bool = False  # False until a resolution reached Slack

    @property
    def ok(self) -> bool:
        return self.checked and not self.problems


def _error(exc: SlackApiError) -> str:
    data = getattr(exc.response, "data", None)
    return str(data.get("error", "")) if isinstance(data, Mapping) else ""


class ChannelDirectory:
    """Resolves channel names to IDs with the bot's client and remembers them; see the module docstring."""

    def __init__(self, client: AsyncWebClient, *, join: bool = True) -> None:
        self._client = client
        self._join = join
        self._ids: dict[str, str] = {}
        self._listed_at: float | None = None  # when conversations.list last ran (monotonic)
        self.relist_s = 60.0  # an unknown name does not list again sooner (conversations.list is Tier 2)
        # One list at a time: a caller that arrives while a list is under way waits for it rather than taking the
        # name for unresolvable (the outbox paces by channel ID: a name would be a second, unpaced bucket).
        self._listing = asyncio.Lock()
        self.report = ChannelReport()

    def id_of(self, ref: str) -> str:
        """The ID of a channel resolved before (the reference itself when it is an ID or unknown)."""
        return self._ids.get(ref.removeprefix("#"), ref)

    async def resolve(self, ref: str) -> str:
        """The ID of `ref` (`#name`, name or ID), looking it up once; the reference itself when it cannot be found."""
        if not ref or is_channel_id(ref):
            return ref
        bare = ref.removeprefix("#")
        if bare in self._ids:
            return self._ids[bare]
        async with self._listing:
            fresh = self._listed_at is not None and time.monotonic() - self._listed_at < self.relist_s
            if bare not in self._ids and not fresh:
                try:
                    await self._list()
                except SlackApiError as exc:
                    log.warning("cannot resolve channel %s: conversations.list said %s", ref, _error(exc))
        return self._ids.get(bare, ref)

    async def _list(self) -> list[dict[str, Any]]:
        channels: list[dict[str, Any]] = []
        cursor: str | None = None
        self._listed_at = time.monotonic()
        for _ in range(50):
            page = await self._client.conversations_list(
                types="public_channel,private_channel", exclude_archived=False, limit=1000, cursor=cursor
            )
            for c in page.get("channels") or []:
                if isinstance(c, dict) and c.get("name") and c.get("id"):
                    channels.append(c)
                    self._ids[str(c["name"])] = str(c["id"])
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        return channels

    async def check(self, configured: Iterable[str]) -> ChannelReport:
        """Resolve every configured channel to an ID, join public ones the bot is not in, report the rest."""
        report = ChannelReport()
        wanted = list(dict.fromkeys(c for c in configured if c))
        try:
            listed = {str(c["id"]): c for c in await self._list()}
        except SlackApiError as exc:
            error = _error(exc)
            fix = "add the channels:read and groups:read scopes" if error == "missing_scope" else "check the token"
            for ref in wanted:
                if not is_channel_id(ref):
                    report.problems[ref] = ChannelProblem(ref, f"cannot list channels ({error})", fix)
            listed = {}
        for ref in wanted:
            if ref in report.problems:
                continue
            info = await self._info(ref, listed, report)
            if info is None:
                continue
            cid = str(info["id"])
            report.ids[ref] = cid
            problem = await self._usable(ref, info)
            if problem is not None:
                report.problems[ref] = problem
        report.checked = True
        self.report = report
        for problem in report.problems.values():
            log.error("Slack channel unusable: %s", problem.line())
        if wanted and not report.problems:
            log.info("Slack channels: %s", ", ".join(f"{k} = {v}" for k, v in report.ids.items()))
        return report

    async def _info(
        self, ref: str, listed: Mapping[str, dict[str, Any]], report: ChannelReport
    ) -> dict[str, Any] | None:
        if is_channel_id(ref):
            if ref in listed:
                return listed[ref]
            try:
                answer = await self._client.conversations_info(channel=ref)
            except SlackApiError as exc:
                error = _error(exc)
                report.problems[ref] = ChannelProblem(
                    ref, f"conversations.info said {error}", "check the ID; a private channel must invite the bot"
                )
                return None
            channel = answer.get("channel")
            return channel if isinstance(channel, dict) else None
        bare = ref.removeprefix("#")
        cid = self._ids.get(bare)
        if cid is None or cid not in listed:
            report.problems[ref] = ChannelProblem(
                ref,
                "no such channel the bot can see",
                f"create #{bare}, or invite the bot if it is private: /invite @imagepull-doctor in #{bare}",
            )
            return None
        return listed[cid]

    async def _usable(self, ref: str, info: Mapping[str, Any]) -> ChannelProblem | None:
        name = f"#{info.get('name') or ref.removeprefix('#')}"
        if info.get("is_archived"):
            return ChannelProblem(ref, "archived", f"unarchive {name} or route to another channel")
        if info.get("is_member"):
            return None
        invite = f"invite the bot: /invite @imagepull-doctor in {name}"
        if info.get("is_private") or not self._join:
            return ChannelProblem(ref, "the bot is not a member", invite)
        try:
            await self._client.conversations_join(channel=str(info["id"]))
        except SlackApiError as exc:
            error = _error(exc)
            return ChannelProblem(ref, f"the bot is not a member and could not join ({error})", invite)
        log.info("joined %s (%s) to read its history before re-posting", name, info["id"])
        return None
