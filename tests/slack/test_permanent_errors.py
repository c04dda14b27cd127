"""Slack's permanent errors fail at once, with a log line and a metric; temporary ones are retried (issue 17,
point 7)."""

from __future__ import annotations

import logging

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.observability import Metrics
from bot.slack.outbox import RETRYABLE_ERRORS, permanent_hint
from bot.store.store import Store
from testkit.slack.web_api import FakeSlackApi
from tests.slack.conftest import open_incident
from tests.slack.test_outbox import worker
from tests.store import queries

PERMANENT = [
    "is_inactive",
    "is_archived",
    "restricted_action",
    "restricted_action_read_only_channel",
    "restricted_action_thread_only_channel",
    "restricted_action_non_threadable_channel",
    "not_allowed_token_type",
    "invalid_auth",
    "account_inactive",
    "team_access_not_granted",
]


@pytest.mark.parametrize("error", PERMANENT)
async def test_permanent_error_fails_at_once(
    error: str, store: Store, client: AsyncWebClient, fake: FakeSlackApi, caplog: pytest.LogCaptureFixture
) -> None:
    """One call, the row failed with the code, an error log naming it and what to do."""
    fake.fail("chat.postMessage", error, times=20)
    await open_incident(store, "k1", ("parent",))
    w = worker(store, client)
    with caplog.at_level(logging.ERROR, logger="bot.slack.outbox"):
        await w.drain(5)
    assert len(fake.calls_to("chat.postMessage")) == 1
    assert await queries.outbox_status(store, 1) == "failed"
    assert w.permanent == {error: 1} and w.retries == 0
    assert any(error in r.getMessage() and permanent_hint(error) in r.getMessage() for r in caplog.records)


async def test_temporary_errors_are_retried(store: Store, client: AsyncWebClient, fake: FakeSlackApi) -> None:
    """internal_error and service_unavailable can succeed later: retried, then sent."""
    assert {"internal_error", "service_unavailable"} <= RETRYABLE_ERRORS
    fake.fail("chat.postMessage", "internal_error")
    fake.fail("chat.postMessage", "service_unavailable")
    await open_incident(store, "k1", ("parent",))
    w = worker(store, client)
    await w.drain(10)
    assert len(fake.threads()) == 1 and w.retries == 2 and w.permanent == {}


def test_the_metric_counts_permanent_failures_by_error() -> None:
    metrics = Metrics()
    metrics.sync_total(metrics.slack_permanent.labels(error="is_archived"), "outbox", 2)
    text = metrics.render().decode()
    assert 'imagepull_slack_permanent_failures_total{error="is_archived"} 2.0' in text
