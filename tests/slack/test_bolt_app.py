"""The Bolt app: signed HTTP requests through the aiohttp route, the error handler, Socket Mode end to end."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from pydantic import SecretStr
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.settings import Settings, SlackSettings
from bot.slack.bolt_app import UserError, build_app, http_routes, run_socket_mode
from bot.slack.signing import signed_headers
from testkit.loopback import serve_on_loopback
from testkit.slack.socket_mode import FakeSocketMode
from testkit.slack.web_api import FakeSlackApi
from tests.slack.conftest import TOKEN

SIGNING_SECRET = "test-signing-secret"


def settings() -> Settings:
    """Settings for HTTP mode with a test token and signing secret."""
    return Settings(
        slack=SlackSettings(bot_token=SecretStr(TOKEN), signing_secret=SecretStr(SIGNING_SECRET), mode="http"),
    )


def register(app: AsyncApp) -> None:
    """A trivial /imagepull command: acks with the text, then posts an ephemeral through the Web API."""

    @app.command("/imagepull")
    async def imagepull(ack: Any, command: dict[str, Any], client: AsyncWebClient) -> None:
        text = command["text"]
        if text == "explode":
            raise RuntimeError("boom with internals")
        if text == "refuse":
            raise UserError("you may not delete pods in <namespace> prod")
        await ack(f"got {text}")
        await client.chat_postEphemeral(channel=command["channel_id"], user=command["user_id"], text="done")


def signed(body: str, secret: str = SIGNING_SECRET, ts: int | None = None) -> dict[str, str]:
    """Slack's v0 signature headers for `body`."""
    return signed_headers(body, secret, ts)


def command_body(text: str) -> str:
    """A slash command request body as Slack sends it."""
    return urlencode(
        {
            "token": "legacy",
            "team_id": "TFAKE001",
            "channel_id": "C1",
            "user_id": "U0000042",
            "user_name": "alice",
            "command": "/imagepull",
            "text": text,
            "response_url": "https://hooks.slack.invalid/x",
            "trigger_id": "1.2.3",
            "api_app_id": "AFAKE001",
        }
    )


@pytest.fixture
async def http_url(fake: FakeSlackApi, client: AsyncWebClient) -> AsyncIterator[str]:
    """The HTTP route of a Bolt app (talking to the fake Web API), served on 127.0.0.1, port 0."""
    app = build_app(settings(), client=client, register=register)
    runner, port = await serve_on_loopback(http_routes(app))
    yield f"http://127.0.0.1:{port}/slack/events"
    await runner.cleanup()


async def post(url: str, body: str, headers: dict[str, str]) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as response:
        return response.status, await response.text()


async def wait_for(predicate: Any, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_signed_command_is_acked_and_runs(http_url: str, fake: FakeSlackApi) -> None:
    """A correctly signed slash command gets the ack text, and the listener's Web API call reaches the fake."""
    body = command_body("status")
    status, text = await post(http_url, body, signed(body))
    assert status == 200
    assert "got status" in text
    await wait_for(lambda: fake.ephemerals)
    assert fake.ephemerals[0].text == "done"
    assert fake.calls_to("auth.test")  # Bolt authorises with auth.test on its first request


async def test_forged_signature_is_refused(http_url: str, fake: FakeSlackApi) -> None:
    """A request signed with another secret gets 401 and runs nothing."""
    body = command_body("status")
    status, _ = await post(http_url, body, signed(body, secret="not-the-secret"))
    assert status == 401
    await asyncio.sleep(0.1)
    assert fake.ephemerals == []


async def test_stale_timestamp_is_refused(http_url: str, fake: FakeSlackApi) -> None:
    """A correctly signed request older than five minutes (a replay) is refused."""
    body = command_body("status")
    status, _ = await post(http_url, body, signed(body, ts=int(time.time()) - 6 * 60))
    assert status == 401
    await asyncio.sleep(0.1)
    assert fake.ephemerals == []


async def test_user_error_becomes_an_ephemeral(http_url: str, fake: FakeSlackApi) -> None:
    """A UserError's message reaches the user, escaped, as an ephemeral."""
    body = command_body("refuse")
    await post(http_url, body, signed(body))
    await wait_for(lambda: fake.ephemerals)
    (message,) = fake.ephemerals
    assert message.user == "U0000042"
    assert "you may not delete pods in &lt;namespace&gt; prod" in message.text


async def test_unknown_error_is_logged_with_an_id(
    http_url: str, fake: FakeSlackApi, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected exception is logged with an id; the user sees the id, not the exception text."""
    caplog.set_level(logging.ERROR, logger="bot.slack.bolt_app")
    body = command_body("explode")
    await post(http_url, body, signed(body))
    await wait_for(lambda: fake.ephemerals)
    (message,) = fake.ephemerals
    assert "boom with internals" not in message.text
    error_id = message.text.split("`")[1]
    assert any(error_id in r.getMessage() for r in caplog.records)


async def test_socket_mode_end_to_end() -> None:
    """A slash command envelope over the fake websocket reaches the listener, is acked, and the listener runs."""
    async with FakeSocketMode() as socket, FakeSlackApi(token=TOKEN) as fake:
        fake.add_channel("alerts", id="C0000001")
        fake.socket_url = socket.url
        client = AsyncWebClient(token=TOKEN, base_url=fake.url)
        app = build_app(Settings(slack=SlackSettings(bot_token=SecretStr(TOKEN))), client=client, register=register)
        task = asyncio.create_task(run_socket_mode(app, "xapp-test-app-token"))
        try:
            envelope_id = await socket.send_slash_command("/imagepull", "status", user_id="U0000042")
            ack = await socket.wait_ack(envelope_id)
            assert ack["envelope_id"] == envelope_id
            assert ack["payload"]["text"] == "got status"
            await wait_for(lambda: fake.ephemerals)
            assert fake.ephemerals[0].user == "U0000042"
            assert fake.calls_to("apps.connections.open")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
