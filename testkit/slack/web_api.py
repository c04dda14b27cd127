"""A fake Slack Web API (aiohttp, 127.0.0.1, port 0) for the real slack_sdk clients: tests, benches and the demo.

It reads JSON, form and query bodies like Slack does, stores messages with their metadata, answers
conversations.history / conversations.replies from what it stored, records every call (without the token) and has
fault knobs: 429 with Retry-After, HTTP 5xx, delays, `ok: false` errors and "crash after send" (the message is
stored but the HTTP answer fails, as if the bot died between Slack's answer and its own commit).

It refuses what real Slack refuses (docs/SLACK.md lists each rule with its source):
- channels are objects with an ID (`add_channel`); `chat.postMessage` and `chat.postEphemeral` accept a `#name` and
  answer with the ID, `conversations.history` / `.replies` / `chat.update` take only the ID (`channel_not_found`
  for a name) and need the bot to be a member (`not_in_channel`), archived channels answer `is_archived`, and every
  method checks the bot scopes it needs (`missing_scope`);
- Block Kit is validated (`testkit.slack.blockkit`: unique block ids, per-field limits), text up to 40,000;
- `response_url`s (`response_url(...)`) work 5 times within 30 minutes, trigger ids (`trigger_id()`) once within
  3 seconds;
- Tier rate limits per method (`tier_limits`, calls per minute) answer 429 with Retry-After when exceeded;
- messages can be deleted (`delete_message`), after which their thread is gone.

    async with FakeSlackApi() as fake:
        client = AsyncWebClient(token="xoxb-test", base_url=fake.url)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Self

from aiohttp import web

from testkit.loopback import serve_on_loopback
from testkit.slack.blockkit import MAX_MESSAGE_TEXT, block_errors, view_errors

Payload = dict[str, Any]
Handler = Callable[[Payload], Awaitable[Payload]]

_JSON_FIELDS = ("blocks", "attachments", "metadata", "view")

# The bot scopes the manifest asks for (slack/manifest.yaml): a fake built without `scopes` has them all.
ALL_SCOPES = frozenset(
    {
        "chat:write",
        "chat:write.public",
        "commands",
        "users:read",
        "users:read.email",
        "usergroups:read",
        "channels:read",
        "groups:read",
        "channels:history",
        "groups:history",
        "channels:join",
    }
)

# Calls per minute before Slack answers 429 (docs.slack.dev/apis/web-api/rate-limits: Tier 2 20+, Tier 3 50+,
# Tier 4 100+ per minute, per method and workspace).
TIER_LIMITS: dict[str, int] = {
    "chat.update": 50,  # Tier 3
    "conversations.history": 50,  # Tier 3
    "conversations.replies": 50,  # Tier 3
    "conversations.list": 20,  # Tier 2
    "conversations.info": 50,  # Tier 3
    "users.info": 100,  # Tier 4
    "usergroups.users.list": 20,  # Tier 2
    "views.open": 100,  # Tier 4
    "views.update": 100,  # Tier 4
}

RESPONSE_URL_TTL_S = 30 * 60.0  # a response_url works for 30 minutes ...
RESPONSE_URL_USES = 5  # ... and at most 5 times
TRIGGER_TTL_S = 3.0  # a trigger_id must be exchanged within 3 seconds, once

_ID_RE = re.compile(r"^[CGD][A-Z0-9]{2,}$")


@dataclass(slots=True)
class Channel:
    """A conversation the fake knows: ID, name, kind, and whether the bot (and which users) are members."""

    id: str
    name: str
    private: bool = False
    archived: bool = False
    bot_member: bool = True
    users: set[str] | None = None  # None: every user is a member


@dataclass(slots=True)
class ResponseUrl:
    """A response_url handed out with a command or an interaction."""

    channel: str
    user: str
    created: float
    uses: int = 0


@dataclass(frozen=True, slots=True)
class Call:
    """One Web API call as the fake received it (the token is never recorded)."""

    method: str
    payload: Payload
    at: float = 0.0


@dataclass(slots=True)
class Message:
    """A message the fake stores; `thread_ts` is None for a top-level message."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    thread_ts: str | None = None
    metadata: dict[str, Any] | None = None
    user: str = ""
    edits: int = 0


@dataclass(slots=True)
class Thread:
    """A top-level message and its replies, oldest first."""

    channel: str
    parent: Message
    replies: list[Message] = field(default_factory=list)


@dataclass(slots=True)
class _Fault:
    kind: Literal["ratelimit", "status", "delay", "crash", "error"]
    times: int
    retry_after: float = 1.0
    status: int = 500
    seconds: float = 0.0
    error: str = ""
    crash_mode: Literal["500", "close"] = "500"


class FakeSlackApi:
    """An aiohttp server speaking enough of the Slack Web API for the bot; see the module docstring."""

    def __init__(
        self,
        *,
        token: str | None = None,
        bot_user_id: str = "UBOT0001",
        bot_id: str = "BBOT0001",
        team_id: str = "TFAKE001",
        socket_url: str | None = None,
        scopes: frozenset[str] | set[str] = ALL_SCOPES,
        tier_limits: dict[str, int] | None = None,
        trigger_ttl_s: float = TRIGGER_TTL_S,
    ) -> None:
        self.token = token  # when set, other tokens get invalid_auth
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.team_id = team_id
        self.socket_url = socket_url  # answered by apps.connections.open
        self.calls: list[Call] = []
        self.messages: list[Message] = []
        self.ephemerals: list[Message] = []
        self.views: list[Payload] = []
        self.home_views: list[Payload] = []  # views.publish
        self.users: dict[str, Payload] = {}
        self.groups: dict[str, list[str]] = {}  # user group id -> member user ids (usergroups.users.list)
        self.missing_channels: set[str] = set()  # chat.postMessage to these answers channel_not_found
        self.channels: dict[str, Channel] = {}  # by ID
        self.scopes = set(scopes)
        self.tier_limits = dict(TIER_LIMITS if tier_limits is None else tier_limits)
        self.tier_window_s = 60.0
        self.trigger_ttl_s = trigger_ttl_s
        self.response_url_ttl_s = RESPONSE_URL_TTL_S
        self.responses: list[Message] = []  # what reached a response_url (ephemeral ones are also in `ephemerals`)
        self.view_calls: list[Payload] = []  # every views.open / views.update, in order
        self._response_urls: dict[str, ResponseUrl] = {}
        self._triggers: dict[str, float] = {}  # trigger id -> issued at (monotonic); removed once exchanged
        self._tier_calls: dict[str, list[float]] = {}
        self.throttled: dict[str, int] = {}  # method -> calls answered 429 because its Tier limit was exceeded
        self._faults: dict[str, list[_Fault]] = {}
        self._seq = 0
        self._base = int(time.time())
        self._runner: web.AppRunner | None = None
        self._url = ""
        self._handlers: dict[str, Handler] = {
            "api.test": self._api_test,
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.postEphemeral": self._post_ephemeral,
            "conversations.history": self._history,
            "conversations.replies": self._replies,
            "views.open": self._views_open,
            "views.update": self._views_update,
            "conversations.list": self._conv_list,
            "conversations.info": self._conv_info,
            "conversations.join": self._conv_join,
            "chat.delete": self._chat_delete,
            "views.publish": self._views_publish,
            "users.info": self._users_info,
            "usergroups.users.list": self._usergroup_users,
            "apps.connections.open": self._connections_open,
        }

    # ---- lifecycle ----

    async def start(self) -> str:
        """Bind to 127.0.0.1 on a free port and return the base URL (ending with "/")."""
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/respond/{token}", self._respond)
        app.router.add_route("*", "/api/{method}", self._dispatch)
        app.router.add_route("*", "/{method}", self._dispatch)
        self._runner, port = await serve_on_loopback(app)
        self._url = f"http://127.0.0.1:{port}/api/"
        return self._url

    async def close(self) -> None:
        """Stop the server."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def url(self) -> str:
        """Base URL for `AsyncWebClient(base_url=...)`."""
        if not self._url:
            raise RuntimeError("FakeSlackApi is not started")
        return self._url

    # ---- fault knobs ----

    def rate_limit(self, method: str, *, times: int = 1, retry_after: float = 1.0) -> None:
        """Answer the next `times` calls of `method` with HTTP 429, Retry-After and `ratelimited`."""
        self._faults.setdefault(method, []).append(_Fault("ratelimit", times, retry_after=retry_after))

    def server_error(self, method: str, *, times: int = 1, status: int = 500) -> None:
        """Answer the next `times` calls of `method` with an HTTP 5xx and a non-JSON body."""
        self._faults.setdefault(method, []).append(_Fault("status", times, status=status))

    def delay(self, method: str, seconds: float, *, times: int = 1) -> None:
        """Hold the next `times` answers of `method` for `seconds` (the call still takes effect)."""
        self._faults.setdefault(method, []).append(_Fault("delay", times, seconds=seconds))

    def fail(self, method: str, error: str, *, times: int = 1) -> None:
        """Answer the next `times` calls of `method` with HTTP 200 `{"ok": false, "error": error}`."""
        self._faults.setdefault(method, []).append(_Fault("error", times, error=error))

    def crash_after_send(
        self, method: str = "chat.postMessage", *, times: int = 1, mode: Literal["500", "close"] = "500"
    ) -> None:
        """Perform the next `times` calls of `method` but fail their HTTP answer (500, or close the connection)."""
        self._faults.setdefault(method, []).append(_Fault("crash", times, crash_mode=mode))

    def _take_fault(self, method: str) -> _Fault | None:
        queue = self._faults.get(method)
        if not queue:
            return None
        fault = queue[0]
        fault.times -= 1
        if fault.times <= 0:
            queue.pop(0)
        return fault

    # ---- the workspace: channels, response URLs, trigger ids ----

    def add_channel(
        self,
        name: str,
        *,
        id: str | None = None,
        private: bool = False,
        archived: bool = False,
        member: bool = True,
        users: set[str] | None = None,
    ) -> str:
        """Create a channel (`#name` or `name`) and return its ID (`C…` public, `G…` private)."""
        bare = name.removeprefix("#")
        cid = id or f"{'G' if private else 'C'}{len(self.channels) + 1:08d}"
        self.channels[cid] = Channel(cid, bare, private, archived, member, users)
        return cid

    def channel(self, ref: str) -> Channel | None:
        """The channel with this ID, `#name` or name."""
        if ref in self.channels:
            return self.channels[ref]
        bare = ref.removeprefix("#")
        return next((c for c in self.channels.values() if c.name == bare), None)

    def channel_id(self, ref: str) -> str:
        """The ID of a channel given by ID or name (the ref itself when unknown)."""
        found = self.channel(ref)
        return found.id if found is not None else ref

    def response_url(self, channel: str, user: str) -> str:
        """A new response_url for an interaction of `user` in `channel`, as Slack puts in a request."""
        token = secrets.token_urlsafe(12)
        self._response_urls[token] = ResponseUrl(channel, user, time.monotonic())
        return f"{self.url.removesuffix('api/')}respond/{token}"

    def age_response_urls(self, seconds: float) -> None:
        """Make every response_url handed out so far `seconds` older."""
        for r in self._response_urls.values():
            r.created -= seconds

    def trigger_id(self) -> str:
        """A new trigger_id, as Slack puts in a slash command or an interaction; valid for 3 seconds, once."""
        tid = f"{int(time.time())}.{secrets.randbelow(10**9)}.{secrets.token_hex(8)}"
        self._triggers[tid] = time.monotonic()
        return tid

    def delete_message(self, channel: str, ts: str) -> None:
        """Delete a message as a user would; a parent takes its thread with it."""
        cid = self.channel_id(channel)
        self.messages = [m for m in self.messages if not (m.channel == cid and (m.ts == ts or m.thread_ts == ts))]

    def _reachable(self, ref: str, *, by_name: bool, write: bool) -> tuple[Channel | None, str]:
        """The channel of a call and the error Slack would give ("" when the bot may use it)."""
        if ref in self.missing_channels:
            return None, "channel_not_found"
        found = self.channels.get(ref) or (self.channel(ref) if by_name and not _ID_RE.match(ref) else None)
        if found is None:
            return None, "channel_not_found"
        if not write:
            scope = "groups:history" if found.private else "channels:history"
            if scope not in self.scopes:
                return found, "missing_scope"
        if found.archived:
            return found, "is_archived"
        if not found.bot_member:
            public_write = write and not found.private and "chat:write.public" in self.scopes
            if not public_write:
                return found, "not_in_channel"
        return found, ""

    def _tier_exceeded(self, method: str) -> float | None:
        """Seconds to wait when this call exceeds the method's Tier limit (None: within it)."""
        limit = self.tier_limits.get(method)
        if not limit:
            return None
        now = time.monotonic()
        recent = [t for t in self._tier_calls.get(method, []) if now - t < self.tier_window_s]
        if len(recent) >= limit:
            self._tier_calls[method] = recent
            return max(1.0, self.tier_window_s - (now - recent[0]))
        recent.append(now)
        self._tier_calls[method] = recent
        return None

    # ---- inspection ----

    def calls_to(self, method: str) -> list[Call]:
        """The recorded calls of one method, in order."""
        return [c for c in self.calls if c.method == method]

    def threads(self, channel: str | None = None) -> list[Thread]:
        """Top-level messages (optionally of one channel) with their replies, in posting order."""
        out: dict[tuple[str, str], Thread] = {}
        cid = None if channel is None else self.channel_id(channel)
        for m in self.messages:
            if m.thread_ts is None and (cid is None or m.channel == cid):
                out[(m.channel, m.ts)] = Thread(m.channel, m)
        for m in self.messages:
            if m.thread_ts is not None and (m.channel, m.thread_ts) in out:
                out[(m.channel, m.thread_ts)].replies.append(m)
        return list(out.values())

    def find(self, channel: str, ts: str) -> Message | None:
        """The stored message with this channel (ID or name) and ts."""
        cid = self.channel_id(channel)
        return next((m for m in self.messages if m.channel == cid and m.ts == ts), None)

    # ---- HTTP plumbing ----

    async def _read(self, request: web.Request) -> Payload:
        payload: Payload = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                body = await request.json()
                if isinstance(body, dict):
                    payload.update(body)
            else:
                payload.update(dict(await request.post()))
        for key in _JSON_FIELDS:
            value = payload.get(key)
            if isinstance(value, str) and value[:1] in "[{":
                with contextlib.suppress(json.JSONDecodeError):
                    payload[key] = json.loads(value)
        payload.pop("token", None)
        return payload

    def _token_ok(self, request: web.Request, payload: Payload) -> bool:
        if self.token is None:
            return True
        auth = request.headers.get("Authorization", "")
        return auth == f"Bearer {self.token}"

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        payload = await self._read(request)
        self.calls.append(Call(method, payload, time.monotonic()))
        if method != "apps.connections.open" and not self._token_ok(request, payload):
            return web.json_response({"ok": False, "error": "invalid_auth"})
        fault = self._take_fault(method)
        wait = self._tier_exceeded(method) if fault is None else None
        if wait is not None:
            self.throttled[method] = self.throttled.get(method, 0) + 1
            return web.json_response(
                {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": str(int(wait + 0.999))}
            )
        if fault is not None:
            if fault.kind == "ratelimit":
                return web.json_response(
                    {"ok": False, "error": "ratelimited"},
                    status=429,
                    headers={"Retry-After": str(int(fault.retry_after) if fault.retry_after >= 1 else 1)},
                )
            if fault.kind == "status":
                return web.Response(status=fault.status, text="upstream failure", content_type="text/html")
            if fault.kind == "error":
                return web.json_response({"ok": False, "error": fault.error})
            if fault.kind == "delay":
                await asyncio.sleep(fault.seconds)
        handler = self._handlers.get(method)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"}, status=404)
        answer = await handler(payload)
        if fault is not None and fault.kind == "crash":
            if fault.crash_mode == "close" and request.transport is not None:
                request.transport.close()
                return web.Response(status=500)
            return web.Response(status=500, text="crashed after send", content_type="text/html")
        return web.json_response(answer)

    def _next_ts(self) -> str:
        self._seq += 1
        return f"{self._base + self._seq // 1_000_000}.{self._seq % 1_000_000:06d}"

    def _public(self, m: Message, with_metadata: bool) -> Payload:
        out: Payload = {
            "type": "message",
            "user": m.user,
            "bot_id": self.bot_id,
            "text": m.text,
            "ts": m.ts,
            "blocks": m.blocks,
        }
        if m.thread_ts is not None:
            out["thread_ts"] = m.thread_ts
        else:
            n = sum(1 for r in self.messages if r.thread_ts == m.ts and r.channel == m.channel)
            if n:
                out["thread_ts"] = m.ts
                out["reply_count"] = n
        if m.edits:
            out["edited"] = {"user": m.user, "ts": m.ts}
        if with_metadata and m.metadata is not None:
            out["metadata"] = m.metadata
        return out

    # ---- methods ----

    async def _api_test(self, p: Payload) -> Payload:
        return {"ok": True, "args": {k: v for k, v in p.items() if isinstance(v, str)}}

    async def _auth_test(self, p: Payload) -> Payload:
        return {
            "ok": True,
            "url": "https://fake.slack.com/",
            "team": "Fake Team",
            "user": "imagepull-doctor",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _content_error(self, p: Payload) -> Payload | None:
        text, blocks = str(p.get("text") or ""), p.get("blocks")
        if not text and not blocks:
            return {"ok": False, "error": "no_text"}
        if len(text) > MAX_MESSAGE_TEXT:
            return {"ok": False, "error": "msg_too_long"}
        if blocks:
            problems = block_errors(blocks)
            if problems:
                return {"ok": False, "error": "invalid_blocks", "response_metadata": {"messages": problems}}
        return None

    async def _post_message(self, p: Payload) -> Payload:
        if "chat:write" not in self.scopes:
            return {"ok": False, "error": "missing_scope", "needed": "chat:write"}
        found, error = self._reachable(str(p.get("channel", "")), by_name=True, write=True)
        if error or found is None:
            return {"ok": False, "error": error or "channel_not_found"}
        channel = found.id
        bad = self._content_error(p)
        if bad is not None:
            return bad
        text, blocks = str(p.get("text") or ""), p.get("blocks") or []
        thread_ts = p.get("thread_ts") or None
        if thread_ts is not None and self.find(channel, str(thread_ts)) is None:
            return {"ok": False, "error": "thread_not_found"}
        metadata = p.get("metadata") if isinstance(p.get("metadata"), dict) else None
        m = Message(channel, self._next_ts(), text, blocks, thread_ts and str(thread_ts), metadata, self.bot_user_id)
        self.messages.append(m)
        return {"ok": True, "channel": channel, "ts": m.ts, "message": self._public(m, True)}

    async def _update(self, p: Payload) -> Payload:
        found, error = self._reachable(str(p.get("channel", "")), by_name=False, write=True)
        if error or found is None:
            return {"ok": False, "error": error or "channel_not_found"}
        m = self.find(found.id, str(p.get("ts", "")))
        if m is None:
            return {"ok": False, "error": "message_not_found"}
        if "text" in p or "blocks" in p:
            bad = self._content_error({"text": p.get("text") or m.text, "blocks": p.get("blocks")})
            if bad is not None:
                return bad
        if "text" in p:
            m.text = str(p["text"] or "")
        if "blocks" in p and isinstance(p["blocks"], list):
            m.blocks = p["blocks"]
        if isinstance(p.get("metadata"), dict):
            m.metadata = p["metadata"]
        m.edits += 1
        return {"ok": True, "channel": m.channel, "ts": m.ts, "text": m.text}

    async def _chat_delete(self, p: Payload) -> Payload:
        found, error = self._reachable(str(p.get("channel", "")), by_name=False, write=True)
        if error or found is None:
            return {"ok": False, "error": error or "channel_not_found"}
        if self.find(found.id, str(p.get("ts", ""))) is None:
            return {"ok": False, "error": "message_not_found"}
        self.delete_message(found.id, str(p.get("ts", "")))
        return {"ok": True, "channel": found.id, "ts": str(p.get("ts", ""))}

    async def _post_ephemeral(self, p: Payload) -> Payload:
        found, error = self._reachable(str(p.get("channel", "")), by_name=True, write=True)
        if error or found is None:
            return {"ok": False, "error": error or "channel_not_found"}
        user = str(p.get("user", ""))
        if not user or (found.users is not None and user not in found.users):
            return {"ok": False, "error": "user_not_in_channel"}
        bad = self._content_error(p)
        if bad is not None:
            return bad
        m = Message(found.id, self._next_ts(), str(p.get("text") or ""), p.get("blocks") or [], None, None, user)
        m.thread_ts = str(p["thread_ts"]) if p.get("thread_ts") else None
        self.ephemerals.append(m)
        return {"ok": True, "message_ts": m.ts}

    async def _respond(self, request: web.Request) -> web.StreamResponse:
        """A response_url: JSON with text/blocks, response_type, replace_original, delete_original."""
        entry = self._response_urls.get(request.match_info["token"])
        try:
            body = await request.json()
        except (json.JSONDecodeError, ValueError):
            body = None
        self.calls.append(Call("response_url", body if isinstance(body, dict) else {}, time.monotonic()))
        if entry is None:
            return web.Response(status=404, text="invalid_token")
        if time.monotonic() - entry.created > self.response_url_ttl_s:
            return web.Response(status=404, text="expired_url")
        if entry.uses >= RESPONSE_URL_USES:
            return web.Response(status=404, text="used_url")
        if not isinstance(body, dict):
            return web.Response(status=400, text="invalid_payload")
        bad = self._content_error(body)
        if bad is not None:
            return web.Response(status=400, text=str(bad["error"]))
        entry.uses += 1
        m = Message(entry.channel, self._next_ts(), str(body.get("text") or ""), body.get("blocks") or [])
        m.user = entry.user
        self.responses.append(m)
        if body.get("response_type") != "in_channel":
            self.ephemerals.append(m)
        return web.Response(status=200, text="ok")

    def _page(self, items: list[Message], p: Payload, with_metadata: bool) -> Payload:
        limit = max(1, min(int(p.get("limit") or 100), 1000))
        start = int(p.get("cursor") or 0)
        page = items[start : start + limit]
        more = start + limit < len(items)
        out: Payload = {
            "ok": True,
            "messages": [self._public(m, with_metadata) for m in page],
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }
        return out

    async def _history(self, p: Payload) -> Payload:
        found, error = self._reachable(str(p.get("channel", "")), by_name=False, write=False)
        if error == "is_archived":
            error = ""  # an archived channel's history stays readable
        if error or found is None:
            return {"ok": False, "error": error or "channel_not_found"}
        oldest, latest = float(p.get("oldest") or 0), float(p.get("latest") or 1e12)
        items = [
            m
            for m in reversed(self.messages)
            if m.channel == found.id and m.thread_ts is None and oldest <= float(m.ts) <= latest
        ]
        return self._page(items, p, _truthy(p.get("include_all_metadata")))

    async def _replies(self, p: Payload) -> Payload:
        found, error = self._reachable(str(p.get("channel", "")), by_name=False, write=False)
        if error == "is_archived":
            error = ""
        if error or found is None:
            return {"ok": False, "error": error or "channel_not_found"}
        ts = str(p.get("ts", ""))
        parent = self.find(found.id, ts)
        if parent is None:
            return {"ok": False, "error": "thread_not_found"}
        items = [parent, *(m for m in self.messages if m.channel == found.id and m.thread_ts == ts)]
        return self._page(items, p, _truthy(p.get("include_all_metadata")))

    def _channel_info(self, c: Channel) -> Payload:
        return {
            "id": c.id,
            "name": c.name,
            "is_channel": not c.private,
            "is_group": c.private,
            "is_private": c.private,
            "is_archived": c.archived,
            "is_member": c.bot_member,
        }

    async def _conv_list(self, p: Payload) -> Payload:
        types = set(str(p.get("types") or "public_channel").split(","))
        needed = {"public_channel": "channels:read", "private_channel": "groups:read"}
        for kind, scope in needed.items():
            if kind in types and scope not in self.scopes:
                return {"ok": False, "error": "missing_scope", "needed": scope}
        listed = [
            c
            for c in self.channels.values()
            if ("private_channel" if c.private else "public_channel") in types
            and (c.bot_member or not c.private)
            and not (_truthy(p.get("exclude_archived")) and c.archived)
        ]
        limit = max(1, min(int(p.get("limit") or 100), 1000))
        start = int(p.get("cursor") or 0)
        more = start + limit < len(listed)
        return {
            "ok": True,
            "channels": [self._channel_info(c) for c in listed[start : start + limit]],
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    async def _conv_info(self, p: Payload) -> Payload:
        found = self.channels.get(str(p.get("channel", "")))
        if found is None or (found.private and not found.bot_member):
            return {"ok": False, "error": "channel_not_found"}
        scope = "groups:read" if found.private else "channels:read"
        if scope not in self.scopes:
            return {"ok": False, "error": "missing_scope", "needed": scope}
        return {"ok": True, "channel": self._channel_info(found)}

    async def _conv_join(self, p: Payload) -> Payload:
        found = self.channels.get(str(p.get("channel", "")))
        if found is None:
            return {"ok": False, "error": "channel_not_found"}
        if "channels:join" not in self.scopes:
            return {"ok": False, "error": "missing_scope", "needed": "channels:join"}
        if found.private:
            return {"ok": False, "error": "method_not_supported_for_channel_type"}
        if found.archived:
            return {"ok": False, "error": "is_archived"}
        found.bot_member = True
        return {"ok": True, "channel": self._channel_info(found)}

    def _exchange_trigger(self, trigger_id: str) -> str:
        issued = self._triggers.pop(trigger_id, None)
        if issued is None:
            return "invalid_trigger_id"
        if time.monotonic() - issued > self.trigger_ttl_s:
            return "expired_trigger_id"
        return ""

    async def _views_open(self, p: Payload) -> Payload:
        self.view_calls.append(p)
        view = p.get("view")
        if not isinstance(view, dict):
            return {"ok": False, "error": "invalid_arguments"}
        error = self._exchange_trigger(str(p.get("trigger_id") or ""))
        if error:
            return {"ok": False, "error": error}
        problems = view_errors(view)
        if problems:
            return {"ok": False, "error": "invalid_arguments", "response_metadata": {"messages": problems}}
        self._seq += 1
        stored = {**view, "id": f"VFAKE{self._seq:05d}", "hash": f"h{self._seq}"}
        self.views.append(stored)
        return {"ok": True, "view": stored}

    async def _views_publish(self, p: Payload) -> Payload:
        """A Home tab view for one user: Slack wants `user_id` and a view of type "home" with at most 100 blocks."""
        view = p.get("view")
        if isinstance(view, str):
            try:
                view = json.loads(view)
            except ValueError:
                return {"ok": False, "error": "invalid_arguments"}
        if not p.get("user_id") or not isinstance(view, dict) or view.get("type") != "home":
            return {"ok": False, "error": "invalid_arguments"}
        if len(view.get("blocks") or []) > 100:
            return {"ok": False, "error": "invalid_blocks"}
        self._seq += 1
        stored = {**view, "id": f"VHOME{self._seq:05d}", "user_id": str(p["user_id"])}
        self.home_views.append(stored)
        return {"ok": True, "view": stored}

    async def _views_update(self, p: Payload) -> Payload:
        self.view_calls.append(p)
        view = p.get("view")
        if not isinstance(view, dict):
            return {"ok": False, "error": "invalid_arguments"}
        index = next((i for i, v in enumerate(self.views) if v["id"] == p.get("view_id")), None)
        if index is None:
            return {"ok": False, "error": "not_found"}
        if p.get("hash") and p.get("hash") != self.views[index]["hash"]:
            return {"ok": False, "error": "hash_conflict"}
        problems = view_errors(view)
        if problems:
            return {"ok": False, "error": "invalid_arguments", "response_metadata": {"messages": problems}}
        self._seq += 1
        stored = {**view, "id": self.views[index]["id"], "hash": f"h{self._seq}"}
        self.views[index] = stored
        return {"ok": True, "view": stored}

    async def _users_info(self, p: Payload) -> Payload:
        user = str(p.get("user", ""))
        if not user:
            return {"ok": False, "error": "user_not_found"}
        info = self.users.get(user) or {
            "id": user,
            "name": user.lower(),
            "real_name": f"User {user}",
            "profile": {"display_name": user.lower(), "real_name": f"User {user}"},
        }
        if "users:read.email" not in self.scopes and "email" in (info.get("profile") or {}):
            # Without users:read.email Slack leaves the email out of the profile (docs.slack.dev users.info).
            info = {**info, "profile": {k: v for k, v in info["profile"].items() if k != "email"}}
        return {"ok": True, "user": info}

    async def _usergroup_users(self, p: Payload) -> Payload:
        group = str(p.get("usergroup", ""))
        if group not in self.groups:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": self.groups[group]}

    async def _connections_open(self, p: Payload) -> Payload:
        if self.socket_url is None:
            return {"ok": False, "error": "not_allowed_token_type"}
        return {"ok": True, "url": self.socket_url}


def _truthy(value: object) -> bool:
    return str(value).lower() in {"1", "true", "yes"}
