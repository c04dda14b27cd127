"""A fake Slack Web API (aiohttp, 127.0.0.1, port 0) for the real slack_sdk clients: tests, benches and the demo.

It reads JSON, form and query bodies like Slack does, stores messages with their metadata, answers
conversations.history / conversations.replies from what it stored, records every call (without the token) and has
fault knobs: 429 with Retry-After, HTTP 5xx, delays, `ok: false` errors and "crash after send" (the message is
stored but the HTTP answer fails, as if the bot died between Slack's answer and its own commit).

    async with FakeSlackApi() as fake:
        client = AsyncWebClient(token="xoxb-test", base_url=fake.url)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Self

from aiohttp import web

from testkit.loopback import serve_on_loopback

Payload = dict[str, Any]
Handler = Callable[[Payload], Awaitable[Payload]]

_JSON_FIELDS = ("blocks", "attachments", "metadata", "view")


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
            "views.update": self._views_open,
            "views.publish": self._views_publish,
            "users.info": self._users_info,
            "usergroups.users.list": self._usergroup_users,
            "apps.connections.open": self._connections_open,
        }

    # ---- lifecycle ----

    async def start(self) -> str:
        """Bind to 127.0.0.1 on a free port and return the base URL (ending with "/")."""
        app = web.Application(client_max_size=4 * 1024 * 1024)
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

    # ---- inspection ----

    def calls_to(self, method: str) -> list[Call]:
        """The recorded calls of one method, in order."""
        return [c for c in self.calls if c.method == method]

    def threads(self, channel: str | None = None) -> list[Thread]:
        """Top-level messages (optionally of one channel) with their replies, in posting order."""
        out: dict[tuple[str, str], Thread] = {}
        for m in self.messages:
            if m.thread_ts is None and (channel is None or m.channel == channel):
                out[(m.channel, m.ts)] = Thread(m.channel, m)
        for m in self.messages:
            if m.thread_ts is not None and (m.channel, m.thread_ts) in out:
                out[(m.channel, m.thread_ts)].replies.append(m)
        return list(out.values())

    def find(self, channel: str, ts: str) -> Message | None:
        """The stored message with this channel and ts."""
        return next((m for m in self.messages if m.channel == channel and m.ts == ts), None)

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

    async def _post_message(self, p: Payload) -> Payload:
        channel = str(p.get("channel", ""))
        if not channel or channel in self.missing_channels:
            return {"ok": False, "error": "channel_not_found"}
        text, blocks = str(p.get("text") or ""), p.get("blocks") or []
        if not text and not blocks:
            return {"ok": False, "error": "no_text"}
        if not isinstance(blocks, list) or len(blocks) > 50:
            return {"ok": False, "error": "invalid_blocks"}
        thread_ts = p.get("thread_ts") or None
        if thread_ts is not None and self.find(channel, str(thread_ts)) is None:
            return {"ok": False, "error": "thread_not_found"}
        metadata = p.get("metadata") if isinstance(p.get("metadata"), dict) else None
        m = Message(channel, self._next_ts(), text, blocks, thread_ts and str(thread_ts), metadata, self.bot_user_id)
        self.messages.append(m)
        return {"ok": True, "channel": channel, "ts": m.ts, "message": self._public(m, True)}

    async def _update(self, p: Payload) -> Payload:
        m = self.find(str(p.get("channel", "")), str(p.get("ts", "")))
        if m is None:
            return {"ok": False, "error": "message_not_found"}
        if "text" in p:
            m.text = str(p["text"] or "")
        if "blocks" in p and isinstance(p["blocks"], list):
            m.blocks = p["blocks"]
        if isinstance(p.get("metadata"), dict):
            m.metadata = p["metadata"]
        m.edits += 1
        return {"ok": True, "channel": m.channel, "ts": m.ts, "text": m.text}

    async def _post_ephemeral(self, p: Payload) -> Payload:
        channel, user = str(p.get("channel", "")), str(p.get("user", ""))
        if not channel or channel in self.missing_channels:
            return {"ok": False, "error": "channel_not_found"}
        if not user:
            return {"ok": False, "error": "user_not_in_channel"}
        m = Message(channel, self._next_ts(), str(p.get("text") or ""), p.get("blocks") or [], None, None, user)
        m.thread_ts = str(p["thread_ts"]) if p.get("thread_ts") else None
        self.ephemerals.append(m)
        return {"ok": True, "message_ts": m.ts}

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
        channel = str(p.get("channel", ""))
        if channel in self.missing_channels:
            return {"ok": False, "error": "channel_not_found"}
        oldest, latest = float(p.get("oldest") or 0), float(p.get("latest") or 1e12)
        items = [
            m
            for m in reversed(self.messages)
            if m.channel == channel and m.thread_ts is None and oldest <= float(m.ts) <= latest
        ]
        return self._page(items, p, _truthy(p.get("include_all_metadata")))

    async def _replies(self, p: Payload) -> Payload:
        channel, ts = str(p.get("channel", "")), str(p.get("ts", ""))
        parent = self.find(channel, ts)
        if parent is None:
            return {"ok": False, "error": "thread_not_found"}
        items = [parent, *(m for m in self.messages if m.channel == channel and m.thread_ts == ts)]
        return self._page(items, p, _truthy(p.get("include_all_metadata")))

    async def _views_open(self, p: Payload) -> Payload:
        view = p.get("view")
        if not isinstance(view, dict):
            return {"ok": False, "error": "invalid_arguments"}
        self._seq += 1
        stored = {**view, "id": f"VFAKE{self._seq:05d}"}
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
