"""Observability: /metrics after a small scenario, /healthz and /readyz (503 when the database is unreachable), and
JSON log lines carrying the incident id, all from the real Bot on the simulated world."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from bot.composition import Bot
from bot.logging_setup import JsonFormatter, RedactingFilter, configure_logging, incident_id
from bot.model import IncidentStatus
from tests.e2e_world import (
    World,
    bot_settings,
    incident_of,
    not_found,
    running,
    settled,
    until,
    world_for,
)


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """The bot's JSON log handler (configure_logging), writing to a buffer; removed afterwards."""
    root = logging.getLogger()
    level = root.level
    configure_logging("INFO", json_lines=True)
    buffer = io.StringIO()
    for h in root.handlers:
        if getattr(h, "_imagepull", False) and isinstance(h, logging.StreamHandler):
            h.setStream(buffer)
    try:
        yield buffer
    finally:
        for h in list(root.handlers):
            if getattr(h, "_imagepull", False):
                root.removeHandler(h)
        root.setLevel(level)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    """One simulated world per test."""
    async with world_for(tmp_path / "world") as w:
        yield w


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, keyed by name and sorted labels."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def _get(bot: Bot, path: str) -> tuple[int, str]:
    async with TestClient(TestServer(bot.health())) as client:
        response = await client.get(path)
        return response.status, await response.text()


async def test_metrics_after_a_small_scenario(world: World, tmp_path: Path, json_logs: io.StringIO) -> None:
    api = f"{world.host}/shop/api:v1.5.0"
    world.kubelet.workload("shop", "api", api, not_found(api), replicas=2)
    world.slack.rate_limit("chat.postMessage", times=1, retry_after=1)
    async with running(bot_settings(world, f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")) as bot:

        async def posted() -> bool:
            inc = await incident_of(bot, "api")
            return inc is not None and inc.thread_ts is not None and await settled(bot)

        await until(posted, what="api incident posted")
        restarts_before = bot.watcher.restarts if bot.watcher else 0
        world.cluster.faults.drop_watches()
        await until(lambda: _restarted(bot, restarts_before), what="watch restarted")

        status, text = await _get(bot, "/metrics")
        assert status == 200
        m = samples(text)
        assert m[("imagepull_incidents_open", (("cause", "tag_not_found"),))] == 1.0
        assert m[("imagepull_incidents_total", (("cause", "tag_not_found"),))] == 1.0
        assert m[("imagepull_diagnosis_seconds_count", ())] >= 1.0
        assert m[("imagepull_registry_probe_total", (("outcome", "manifest_unknown"),))] >= 1.0
        post = "chat.postMessage"
        assert m[("imagepull_slack_calls_total", (("method", post), ("result", "ratelimited")))] == 1.0
        assert m[("imagepull_slack_calls_total", (("method", post), ("result", "ok")))] == 2.0
        assert m[("imagepull_slack_retries_total", ())] >= 1.0
        assert m[("imagepull_watch_restarts_total", (("resource", "pods_and_events"),))] >= 1.0
        assert m[("imagepull_leader", ())] == 1.0

        world.kubelet.start("shop", "api")

        async def resolved() -> bool:
            inc = await incident_of(bot, "api")
            return inc is not None and inc.status is IncidentStatus.RESOLVED

        await until(resolved, what="api resolved")
        _, text = await _get(bot, "/metrics")
        m = samples(text)
        assert m[("imagepull_incidents_open", (("cause", "tag_not_found"),))] == 0.0
        assert m[("imagepull_incidents_total", (("cause", "tag_not_found"),))] == 1.0
        final = await incident_of(bot, "api")
        assert final is not None
        key = final.key

    records = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    tagged = {r["logger"] for r in records if r.get("incident") == key}
    assert {"bot.pipeline", "bot.slack.outbox"} <= tagged, tagged  # stored changes, and the rate-limited send
    assert all(TOKENISH not in json.dumps(r) for r in records)


TOKENISH = "xoxb-test-not-a-real-token"


async def _restarted(bot: Bot, before: int) -> bool:
    return bot.watcher is not None and bot.watcher.restarts > before


async def test_healthz_and_readyz_follow_the_database(world: World, tmp_path: Path) -> None:
    db = tmp_path / "ready.db"
    async with running(bot_settings(world, f"sqlite+aiosqlite:///{db}")) as bot:
        await until(lambda: _synced(bot), what="watch synced")
        assert (await _get(bot, "/healthz"))[0] == 200
        status, body = await _get(bot, "/readyz")
        checks = {
            "database": True,
            "watch_synced": True,
            "watch_streams": True,
            "slack_channels": True,
            "kube_credentials": True,
        }
        assert status == 200 and json.loads(body)["checks"] == checks

        # the database goes away: no pooled connection, and the file is replaced by a directory
        await bot.store.engine.dispose()
        aside = tmp_path / "aside.db"
        await asyncio.to_thread(shutil.move, db, aside)
        await asyncio.to_thread(db.mkdir)
        status, body = await _get(bot, "/readyz")
        assert status == 503 and json.loads(body)["checks"]["database"] is False
        assert (await _get(bot, "/healthz"))[0] == 200  # alive, just not ready

        await asyncio.to_thread(db.rmdir)
        await asyncio.to_thread(shutil.move, aside, db)
        await bot.store.engine.dispose()
        assert (await _get(bot, "/readyz"))[0] == 200


async def test_readyz_fails_while_a_watch_stream_is_stuck(world: World, tmp_path: Path) -> None:
    """A leader whose watch streams are silent past the deadline and cannot reconnect is not ready (issue 13
    point 5); it is ready again once the API server answers."""
    settings = bot_settings(world, f"sqlite+aiosqlite:///{tmp_path / 'stuck.db'}")
    settings.kube.watch_silence_s = 1.0
    settings.kube.api_timeout_s = 0.5
    async with running(settings) as bot:
        await until(lambda: _synced(bot), what="watch synced")
        assert (await _get(bot, "/readyz"))[0] == 200
        world.cluster.faults.latency_s = 30.0  # the API server accepts connections and answers nothing
        world.cluster.faults.drop_watches()

        async def stuck() -> bool:
            status, body = await _get(bot, "/readyz")
            return status == 503 and json.loads(body)["checks"]["watch_streams"] is False

        await until(stuck, timeout=10, what="readyz 503 with watch_streams false")
        world.cluster.faults.latency_s = 0.0

        async def ready() -> bool:
            return (await _get(bot, "/readyz"))[0] == 200

        await until(ready, timeout=10, what="ready again")


async def _synced(bot: Bot) -> bool:
    return bot.watcher is not None and bot.watcher.synced.is_set()


def test_json_lines_carry_the_incident_id_and_mask_secrets() -> None:
    formatter, redactor = JsonFormatter(), RedactingFilter()

    def line(message: str) -> dict[str, object]:
        record = logging.LogRecord("bot.pipeline", logging.INFO, __file__, 1, message, None, None)
        assert redactor.filter(record)
        parsed: dict[str, object] = json.loads(formatter.format(record))
        return parsed

    assert "incident" not in line("no incident here")
    token = incident_id.set("abc123-1700000000000")
    try:
        out = line("posting with token xoxb-1234567890-secret")
    finally:
        incident_id.reset(token)
    assert out["incident"] == "abc123-1700000000000" and out["level"] == "INFO"
    assert "xoxb-1234567890" not in str(out["message"]) and "<redacted>" in str(out["message"])
