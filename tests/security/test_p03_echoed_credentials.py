"""Point 3 (Medium): a registry that echoes the credential in its errors.

The real bot (run_bot) reads a pull secret and probes a hostile loopback registry with it; the registry answers
with the credential echoed in every encoding: raw, base64 of `user:password`, URL-encoded, upper case, and (in a
plain-text body) placed so that the 120-character cut of a plain body falls inside the password. None of them may
reach a Slack call, any SQL row (incidents, outbox, audit...) or a log line at DEBUG.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from aiohttp import web
from sqlalchemy import MetaData, select

from bot.logging_setup import configure_logging
from bot.store.store import Store
from testkit.kube import objects as k8s
from tests.e2e_world import bot_settings, running, settled, until, world_for
from tests.logcapture import LogCapture
from tests.security.conftest import loopback_server

USER = "echo-robot"
PASSWORD = f"EchoPw-{secrets.token_hex(10)}/+=!x"


def _needles() -> dict[str, str]:
    return {
        "raw": PASSWORD,
        "base64 user:password": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
        "base64 password": base64.b64encode(PASSWORD.encode()).decode(),
        "url-encoded": quote(PASSWORD, safe=""),
        "form-encoded": quote_plus(PASSWORD),
        "upper case": PASSWORD.upper(),
        "lower case": PASSWORD.lower(),
        "cut password (first 14 characters)": PASSWORD[:14],
    }


def _echo(request: web.Request) -> tuple[str, str]:
    header = request.headers.get("Authorization", "")
    user, _, password = base64.b64decode(header.removeprefix("Basic ")).decode().partition(":")
    return user, password


def _hostile(app: web.Application) -> None:
    async def ping(request: web.Request) -> web.Response:
        if not request.headers.get("Authorization"):
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="echo"'})
        return web.json_response({})

    async def manifest(request: web.Request) -> web.Response:
        user, password = _echo(request)
        if not password:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="echo"'})
        b64 = base64.b64encode(f"{user}:{password}".encode()).decode()
        if request.match_info["repo"] == "cut":  # plain text: the 120-character cut lands inside the password
            pad = "denied: " + "x" * (120 - len("denied: ") - 14)
            return web.Response(status=400, text=f"{pad}{password} basic {b64}", content_type="text/plain")
        message = (
            f"user {user} with password {password} ({password.upper()}, {password.lower()}) auth {b64}"
            f" url {quote(password, safe='')} form {quote_plus(password)} b64 {base64.b64encode(password.encode())!r}"
        )
        return web.json_response({"errors": [{"code": "DENIED", "message": message}]}, status=400)

    app.router.add_get("/v2/", ping)
    app.router.add_route("*", "/v2/team/{repo}/manifests/{ref}", manifest)


@pytest.fixture
def captured() -> Iterator[LogCapture]:
    """Every log record at DEBUG, before any redaction filter, with production's logger levels."""
    root = logging.getLogger()
    handler, level = LogCapture(), root.level
    root.addHandler(handler)
    configure_logging("DEBUG")
    names = ("sqlalchemy.engine", "sqlalchemy.engine.Engine", "aiosqlite", "asyncpg")
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for h in [h for h in root.handlers if getattr(h, "_imagepull", False)]:
            root.removeHandler(h)
        root.setLevel(level)
        for name in names:
            logging.getLogger(name).setLevel(logging.NOTSET)


async def _rows(store: Store) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    async with store.engine.connect() as conn:
        meta = MetaData()
        await conn.run_sync(meta.reflect)
        for table in meta.sorted_tables:
            out += [(table.name, repr(tuple(row))) for row in (await conn.execute(select(table))).all()]
    return out


async def test_echoed_credentials_reach_no_slack_post_row_or_log(tmp_path: Path, captured: LogCapture) -> None:
    async with world_for(tmp_path / "world") as world, loopback_server(_hostile) as (registry, seen):
        for repo in ("cut", "json"):
            image = f"{registry}/team/{repo}:v1"
            message = k8s.pull_error(
                image,
                f'failed to resolve reference "{image}": pulling from host {registry} failed with status code'
                " [manifests v1]: 403 Forbidden",
            )
            world.kubelet.workload(repo, "app", image, message)
            world.cluster.put(
                k8s.docker_config_secret("regcred", repo, {registry: {"username": USER, "password": PASSWORD}})
            )
            world.cluster.put(k8s.service_account("default", repo, image_pull_secrets=["regcred"]))
        settings = bot_settings(world, f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
        settings.log_level = "DEBUG"
        settings.registry.insecure_registries.append(registry)
        async with running(settings) as bot:

            async def posted() -> bool:
                incidents = await bot.store.open_incidents(bot.cluster)
                return len(incidents) == 2 and await settled(bot) and len(world.slack.messages) >= 4

            await until(posted, timeout=20, what="two incidents posted with their diagnosis")
            rows = await _rows(bot.store)
        assert any("manifests" in path for path in seen), "the registry was probed with the credential"
    leaks: list[str] = []
    for call in world.slack.calls:
        text = json.dumps(call.payload, default=str)
        leaks += [f"{name} in Slack {call.method}" for name, needle in _needles().items() if needle in text]
    for table, row in rows:
        leaks += [f"{name} in table {table}" for name, needle in _needles().items() if needle in row]
    for line in captured.lines:
        leaks += [f"{name} in log {line[:100]!r}" for name, needle in _needles().items() if needle in line]
    assert not leaks, "\n".join(sorted(set(leaks)))
