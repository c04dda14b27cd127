"""A fake Socket Mode server (aiohttp websocket on 127.0.0.1, port 0) for slack_sdk's SocketModeClient.

Pair it with `FakeSlackApi(socket_url=fake_socket.url)`: `apps.connections.open` hands the client this URL, the
server greets with `hello`, then tests push envelopes (`slash_commands`, `interactive`) and wait for their acks.

As Slack does, it holds at most 10 connections per app (api.slack.com/apis/connections/socket-implement: "up to 10
simultaneous connections"): a further connection is closed at once without `hello` (counted in `refused`), and
each envelope goes to one open connection picked at random, not to a chosen one.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from typing import Any, Self

from aiohttp import WSMsgType, web

from testkit.loopback import serve_on_loopback


class FakeSocketMode:
    """Sends Socket Mode envelopes to connected clients and records their acks by envelope id."""

    def __init__(self, max_connections: int = 10) -> None:
        self.max_connections = max_connections
        self.refused = 0
        self.peak = 0
        self.acks: dict[str, dict[str, Any]] = {}
        self.sent: list[dict[str, Any]] = []
        self.connected = asyncio.Event()
        self._sockets: list[web.WebSocketResponse] = []
        self._ack_events: dict[str, asyncio.Event] = {}
        self._runner: web.AppRunner | None = None
        self._url = ""

    async def start(self) -> str:
        """Bind to 127.0.0.1 on a free port and return the ws:// URL."""
        app = web.Application()
        app.router.add_get("/link", self._ws)
        self._runner, port = await serve_on_loopback(app)
        self._url = f"ws://127.0.0.1:{port}/link"
        return self._url

    async def close(self) -> None:
        """Close every socket and stop the server."""
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connections(self) -> int:
        """Open connections now."""
        return len(self._sockets)

    @property
    def url(self) -> str:
        """The websocket URL that `apps.connections.open` should return."""
        if not self._url:
            raise RuntimeError("FakeSocketMode is not started")
        return self._url

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        if len(self._sockets) >= self.max_connections:
            self.refused += 1
            await ws.close(code=1008, message=b"too many websocket connections for this app")
            return ws
        self._sockets.append(ws)
        self.peak = max(self.peak, len(self._sockets))
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": len(self._sockets),
                "debug_info": {"host": "fake", "approximate_connection_time": 3600},
                "connection_info": {"app_id": "AFAKE001"},
            }
        )
        self.connected.set()
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_text(msg.data)
        finally:
            self._sockets.remove(ws)
            if not self._sockets:
                self.connected.clear()
        return ws

    def _on_text(self, data: str) -> None:
        try:
            message = json.loads(data)
        except json.JSONDecodeError:
            return
        envelope_id = message.get("envelope_id") if isinstance(message, dict) else None
        if isinstance(envelope_id, str):
            self.acks[envelope_id] = message
            self._ack_events.setdefault(envelope_id, asyncio.Event()).set()

    async def send(self, envelope_type: str, payload: dict[str, Any], *, accepts_response_payload: bool) -> str:
        """Send one envelope to one connected client (any of them, as Slack does) and return its envelope id."""
        await asyncio.wait_for(self.connected.wait(), 5)
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": envelope_type,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
            "retry_attempt": 0,
            "retry_reason": "",
        }
        self._ack_events.setdefault(envelope_id, asyncio.Event())
        self.sent.append(envelope)
        await random.choice(self._sockets).send_json(envelope)
        return envelope_id

    async def redeliver(self, envelope_id: str) -> None:
        """Send an envelope again with the same envelope id, as Slack does when an ack did not reach it in time."""
        envelope = next(e for e in self.sent if e["envelope_id"] == envelope_id)
        again = {**envelope, "retry_attempt": int(envelope.get("retry_attempt") or 0) + 1, "retry_reason": "timeout"}
        await asyncio.wait_for(self.connected.wait(), 5)
        await self._sockets[0].send_json(again)

    async def send_slash_command(
        self,
        command: str,
        text: str = "",
        *,
        user_id: str = "U0000001",
        user_name: str = "alice",
        channel_id: str = "C0000001",
        team_id: str = "TFAKE001",
    ) -> str:
        """Send a `slash_commands` envelope like Slack does when a user runs a command."""
        payload = {
            "token": "unused-in-socket-mode",
            "team_id": team_id,
            "team_domain": "fake",
            "channel_id": channel_id,
            "channel_name": "imagepull-alerts",
            "user_id": user_id,
            "user_name": user_name,
            "command": command,
            "text": text,
            "api_app_id": "AFAKE001",
            "is_enterprise_install": "false",
            "response_url": "https://hooks.slack.invalid/commands/fake",
            "trigger_id": f"{int(time.time())}.fake.trigger",
        }
        return await self.send("slash_commands", payload, accepts_response_payload=True)

    async def send_interactive(self, payload: dict[str, Any]) -> str:
        """Send an `interactive` envelope (block_actions, view_submission, ...)."""
        return await self.send("interactive", payload, accepts_response_payload=payload.get("type") != "block_actions")

    async def wait_ack(self, envelope_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """Wait for the client's ack of an envelope and return it (`{"envelope_id", "payload"?}`)."""
        event = self._ack_events.setdefault(envelope_id, asyncio.Event())
        await asyncio.wait_for(event.wait(), timeout)
        return self.acks[envelope_id]
