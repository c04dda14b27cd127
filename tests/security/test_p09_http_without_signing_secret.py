"""Point 9 (Low): HTTP mode without a signing secret.

Before: the bot started, Bolt skipped verification, answered 500 and posted the error to whatever channel the
unverified body named. Now `imagepull-doctor run` refuses to start (one line, exit 2), the app cannot be built
that way, and an unverified request gets a bare 401 with nothing posted anywhere.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.settings import Settings, SlackSettings
from bot.slack.bolt_app import build_app
from tests.handlers.conftest import SlackEndpoint, World, command_body, signed_headers


async def test_run_refuses_to_start_in_http_mode_without_a_signing_secret(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEPULL_")}
    env.update(
        IMAGEPULL_SLACK__MODE="http",
        IMAGEPULL_SLACK__BOT_TOKEN="xoxb-test-not-a-real-token",
        IMAGEPULL_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
        IMAGEPULL_METRICS_PORT="0",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        "run",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail("the bot started in http mode without a signing secret")
    assert proc.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "signing_secret" in lines[0], lines


def test_the_app_cannot_be_built_without_a_signing_secret_in_http_mode() -> None:
    settings = Settings(slack=SlackSettings(bot_token=SecretStr("xoxb-x"), mode="http"))
    with pytest.raises(ValueError, match="signing_secret"):
        build_app(settings)


async def test_an_unverified_request_gets_401_and_nothing_is_posted(world: World, endpoint: SlackEndpoint) -> None:
    body = command_body("delete-pod shop/web --cluster prod", channel="C0VICTIM")
    status, _ = await endpoint.post(body, signed_headers(body, secret="forged"))
    assert status == 401
    await asyncio.sleep(0.2)
    assert world.slack.calls_to("chat.postEphemeral") == [] and world.slack.calls_to("chat.postMessage") == []
